//! The `rolegate` binary: parses the command line and runs it.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than the system allocator: a call allocates and frees dozens of small
/// blocks (decoded strings and maps, the answer), which glibc's malloc serves at about a quarter
/// of the server's CPU under load and with contention between worker threads (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match rolegate::cli::Cli::parse().run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
