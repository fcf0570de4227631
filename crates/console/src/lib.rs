//! `rolegate console` (docs/console.md): a read-only web app served by the binary itself. It
//! loads a policy directory or a PostgreSQL source once, at start, and answers the page's
//! questions in-process with the engine (Explain, Permissions, Who) and the policy crate (diff,
//! validation, lints). Its page, script and style sheet are embedded: it needs no network.

mod api;
mod assets;
mod http;
mod json;
mod listen;
mod load;
mod query;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

pub use http::serve;
pub use listen::{ListenError, check_listen};
pub use load::{Origin, State};

/// Arguments of `rolegate console`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show this policy directory.
    #[arg(long, required_unless_present = "source", conflicts_with = "source")]
    pub policies: Option<PathBuf>,
    /// Show the policies held in this PostgreSQL database (read in a read-only transaction).
    #[arg(long)]
    pub source: Option<String>,
    /// Compare with these policies on the diff page: a directory or a `postgres://` DSN, taken as
    /// the old side (what is deployed), the shown policies being the new side.
    #[arg(long)]
    pub base: Option<String>,
    /// The address to serve on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Allow a non-loopback `--listen` address: the console shows every member and grant to
    /// whoever can reach it, without authentication.
    #[arg(long)]
    pub allow_remote: bool,
}

impl Args {
    /// Where the shown policies come from.
    pub fn origin(&self) -> Origin {
        match (&self.policies, &self.source) {
            (Some(dir), _) => Origin::Dir(dir.clone()),
            (None, Some(dsn)) => Origin::Postgres(dsn.clone()),
            (None, None) => Origin::Dir(PathBuf::from(".")),
        }
    }
}

/// Runs `rolegate console` until interrupted.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    check_listen(args.listen, args.allow_remote)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let base = args.base.as_deref().map(Origin::parse);
        let state = State::load(args.origin(), base).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        // The test harness and scripts read this line for the port when `--listen` ends in `:0`.
        println!("console listening on http://{addr}/");
        let guard = http::Guard::new(addr, args.allow_remote);
        serve(listener, Arc::new(state), guard, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
        Ok(ExitCode::SUCCESS)
    })
}
