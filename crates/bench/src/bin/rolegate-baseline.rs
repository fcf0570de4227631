//! rolegate-baseline: the empty server, the limit of gRPC on this machine.
//!
//! It serves the same `rolegate.v1.Authorizer` with the same tonic stack as `rolegate serve`
//! (TCP_NODELAY, request timeout, load shedding behind a global concurrency limit, message size
//! limits, health and reflection beside it) and decodes the same requests, but answers every item
//! with one constant decision. rolegate's throughput and latency are compared against it.

use std::process::ExitCode;

use clap::Parser;

/// The same allocator as `rolegate serve`: the limit runs the same stack.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// A binary's root file looks for modules beside itself; this one lives in the folder named after it.
#[path = "rolegate-baseline/empty.rs"]
mod empty;

/// The empty gRPC server of the benchmarks.
#[derive(Parser)]
#[command(name = "rolegate-baseline", about = "Empty rolegate.v1.Authorizer server: the limit of gRPC")]
struct Args {
    /// `host:port` or `unix:PATH`.
    #[arg(long, default_value = "127.0.0.1:50052")]
    listen: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).with_target(false).init();
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match empty::serve(&Args::parse().listen, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
