//! The PostgreSQL source (docs/operations.md, "PostgreSQL"): one database is the source of truth for every sidecar.
//!
//! A tenant's slow-changing part is its YAML document (a row of `rolegate.tenants`, templates in
//! `rolegate.templates`); units, members and bindings are rows. Triggers append every write to
//! `rolegate.change_log` and notify channel `rolegate` in the writer's transaction (a candidate
//! policy in another schema: [`schema`]). A sidecar loads every tenant, LISTENs, and on each
//! notification reads the tenant's change-log rows after the last id it applied: member and
//! binding changes recompile only those members, anything else the whole tenant. A tenant's revision is the id of its last change, the same on every sidecar.
//!
//! The submodules: `migrate` (the versioned schema), `rows` (SQL), `build` (rows → documents →
//! compiled tenants, pure), `follow` (LISTEN, catch-up, reconnects), `health` (staleness), and
//! `transfer` (`rolegate import` / `rolegate export`).

pub mod build;
pub mod follow;
pub mod health;
pub mod history;
pub mod migrate;
pub mod rows;
pub mod schema;
pub mod tls;
pub mod transfer;
mod yaml_text;

use std::time::Duration;

pub use follow::{Follower, spawn};
pub use health::Health;

/// How the sidecar reaches PostgreSQL and follows it.
#[derive(Clone, Debug)]
pub struct Config {
    /// Connection settings parsed from the DSN. Its `Debug` form hides the password.
    pub pg: tokio_postgres::Config,
    /// Compare every tenant's revision with the database at least this often: the backstop for
    /// a lost notification, and the heartbeat behind the staleness metric. The follower never
    /// checks more often than every [`follow::MIN_POLL`].
    pub poll: Duration,
    /// TLS to the database, from the DSN's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`
    /// ([`tls`]); `None` is plaintext.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// The schema holding the policy: `rolegate`, or a candidate's for shadow evaluation.
    pub schema: schema::Schema,
}

/// The PostgreSQL source: its settings and the health it reports.
#[derive(Debug)]
pub struct PostgresSource {
    /// How to reach and follow the database.
    pub cfg: Config,
    /// Connection and freshness, shared with `/metrics`.
    pub health: std::sync::Arc<Health>,
}

impl crate::Source for PostgresSource {
    fn describe(&self) -> String {
        format!("postgres {}", self.cfg.describe())
    }

    fn health(&self) -> Option<std::sync::Arc<dyn crate::SourceHealth>> {
        Some(self.health.clone())
    }

    fn spawn(
        self: Box<Self>,
        store: std::sync::Arc<crate::store::Store>,
        on_reload: crate::OnReload,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        spawn(self.cfg, store, self.health, on_reload)
    }
}

impl Config {
    /// Parses a DSN (`postgres://user:pass@host:port/db` or `host=… dbname=…`) with the
    /// connection defaults a sidecar wants: short connect timeout, TCP keepalives that notice a
    /// dead peer within seconds, and an application name visible in `pg_stat_activity`.
    pub fn from_dsn(dsn: &str, poll: Duration) -> Result<Config, String> {
        let dsn = dsn.trim();
        if !dsn.starts_with("postgres://") && !dsn.starts_with("postgresql://") && !dsn.contains('=') {
            return Err("expected a PostgreSQL DSN such as `postgres://user@host:5432/db`".to_owned());
        }
        let (rest, tls) = tls::split_dsn(dsn).map_err(|e| format!("invalid PostgreSQL DSN: {e}"))?;
        let mut pg: tokio_postgres::Config = rest.parse().map_err(|e| format!("invalid PostgreSQL DSN: {e}"))?;
        let tls = tls.client_config()?.map(|(config, required)| {
            use tokio_postgres::config::SslMode;
            pg.ssl_mode(if required { SslMode::Require } else { SslMode::Prefer });
            config
        });
        if tls.is_none() {
            pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(5));
        }
        if pg.get_application_name().is_none() {
            pg.application_name("rolegate");
        }
        pg.keepalives_idle(Duration::from_secs(5)).keepalives_interval(Duration::from_secs(2)).keepalives_retries(3);
        pg.tcp_user_timeout(Duration::from_secs(10));
        Ok(Config { pg, poll, tls, schema: schema::Schema::default() })
    }

    /// `host:port/db`, and the schema when it is not `rolegate`, for logs: never the password.
    pub fn describe(&self) -> String {
        match self.schema.is_default() {
            true => describe(&self.pg),
            false => format!("{} schema {}", describe(&self.pg), self.schema),
        }
    }
}

/// `host:port/db` of a connection config, for logs and messages.
pub fn describe(pg: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", pg.get_dbname().unwrap_or_default())
}

/// A connected client and the notifications of its connection.
pub type Connected = (tokio_postgres::Client, tokio::sync::mpsc::UnboundedReceiver<Option<String>>);

/// Connects once, over TLS when configured, and drives the connection on a task; `None` from
/// the receiver means the connection ended. Notifications on the schema's channel (`rolegate`
/// for the live policy) arrive on the receiver as tenant ids.
pub async fn connect(cfg: &Config) -> Result<Connected, tokio_postgres::Error> {
    let channel = cfg.schema.channel().to_owned();
    match &cfg.tls {
        Some(tls) => {
            let (client, connection) = cfg.pg.connect(tls::RustlsConnect(tls.clone())).await?;
            Ok((client, drive(connection, channel)))
        }
        None => {
            let (client, connection) = cfg.pg.connect(tokio_postgres::NoTls).await?;
            Ok((client, drive(connection, channel)))
        }
    }
}

/// Drives a connection on a task, forwarding its notifications on `channel`.
fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    channel: String,
) -> tokio::sync::mpsc::UnboundedReceiver<Option<String>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    if n.channel() == channel && tx.send(Some(n.payload().to_owned())).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "postgres connection ended");
                    let _ = tx.send(None);
                    return;
                }
                None => {
                    let _ = tx.send(None);
                    return;
                }
            }
        }
    });
    rx
}
