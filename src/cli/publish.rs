//! `rolegate publish --source DSN --nats URL` (docs/operations.md, "NATS"): follows the
//! PostgreSQL change log and publishes every tenant's changes to NATS JetStream, for sidecars
//! started with `--source nats://…`. Run a few replicas: they publish the same changes under the
//! same message ids, and the stream keeps one of each.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;

use crate::server::config::duration;
use crate::source::nats::publish::{self, PublishConfig};

/// Arguments of `rolegate publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The database to follow (the primary: LISTEN does not work on a replica), `postgres://user@host:5432/db`.
    #[arg(long, env = "ROLEGATE_SOURCE")]
    pub source: String,
    /// The NATS servers, `nats://host:4222` (comma-separated for a cluster).
    #[arg(long, env = "ROLEGATE_NATS")]
    pub nats: String,
    /// Changes stay in the stream this long; a sidecar further behind reloads from the database.
    #[arg(long, env = "ROLEGATE_RETENTION", default_value = "24h")]
    pub retention: String,
    /// At most this many changes stay in the stream; 0 is no limit besides `--retention`.
    #[arg(long, env = "ROLEGATE_MAX_MESSAGES", default_value_t = 0)]
    pub max_messages: u64,
    /// Compare every tenant's revision with the database at least this often, 100ms to 24h.
    #[arg(long, env = "ROLEGATE_RELOAD_POLL", default_value = "5s")]
    pub reload_poll: String,
}

impl PublishArgs {
    /// The publisher's settings, every bad value reported at once.
    pub fn resolve(&self) -> Result<PublishConfig, Vec<String>> {
        let mut errors = Vec::new();
        let mut within = |name: &str, text: &str, min: Duration, max: Duration| match duration(text) {
            Some(d) if d >= min && d <= max => d,
            _ => {
                errors.push(format!("{name}: expected a duration from {min:?} to {max:?} such as `5s`, got `{text}`"));
                min
            }
        };
        let day = Duration::from_secs(86_400);
        let retention = within("retention", &self.retention, Duration::from_secs(1), 365 * day);
        let poll = within("reload_poll", &self.reload_poll, Duration::from_millis(100), day);
        let pg = crate::source::postgres::Config::from_dsn(&self.source, poll)
            .map_err(|e| errors.push(format!("source: {e}")));
        let nats = crate::source::nats::Config::from_url(&self.nats).map_err(|e| errors.push(format!("nats: {e}")));
        let max_messages = i64::try_from(self.max_messages).unwrap_or(i64::MAX);
        match (pg, nats) {
            (Ok(pg), Ok(nats)) if errors.is_empty() => Ok(PublishConfig { pg, nats, retention, max_messages }),
            _ => Err(errors),
        }
    }
}

/// Runs the publisher until SIGTERM or Ctrl-C.
pub fn run(args: &PublishArgs) -> anyhow::Result<ExitCode> {
    let cfg = match args.resolve() {
        Ok(cfg) => cfg,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    super::runtime()?
        .block_on(async move {
            let guard = crate::telemetry::init(std::sync::Arc::default());
            tokio::select! {
                () = publish::run(cfg) => {}
                () = crate::server::shutdown_signal() => {}
            }
            guard.shutdown().await;
            Ok::<_, anyhow::Error>(())
        })
        .map_err(|e| anyhow!("{e}"))?;
    Ok(ExitCode::SUCCESS)
}
