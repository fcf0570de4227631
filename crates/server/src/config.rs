//! `rolegate serve` configuration: flags, `ROLEGATE_*` environment variables and an optional
//! YAML file, in that order of precedence. Every bad value is reported at once.

mod settings;

use std::path::PathBuf;
use std::time::Duration;

use super::convert::Limits;
use crate::cache::CacheConfig;
use settings::Settings;
pub use settings::duration;

/// A listening address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// `host:port`.
    Tcp(String),
    /// `unix:/path`.
    Unix(PathBuf),
}

/// Resolved server configuration.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Policy directory (empty when `postgres` is set).
    pub policies: PathBuf,
    /// Read policies from PostgreSQL instead of a directory (with `nats`: snapshots only).
    pub postgres: Option<rolegate_source::postgres::Config>,
    /// Follow changes through NATS JetStream, reading snapshots from `postgres`.
    pub nats: Option<rolegate_source::nats::Config>,
    /// gRPC listeners.
    pub listen: Vec<Listen>,
    /// Admin HTTP listener.
    pub admin_listen: Option<String>,
    /// How long a request waits for `min_revision`.
    pub min_revision_wait: Duration,
    /// Decision cache.
    pub cache: CacheConfig,
    /// Request limits.
    pub limits: Limits,
    /// Calls in flight before shedding with `RESOURCE_EXHAUSTED`.
    pub max_concurrency: usize,
    /// Connections open at once on the gRPC and AuthZEN listeners; more are closed on accept.
    pub max_connections: usize,
    /// Deadline of one call.
    pub request_timeout: Duration,
    /// Quiet time before a reload.
    pub reload_debounce: Duration,
    /// Rescan interval.
    pub reload_poll: Duration,
    /// Honour the `rolegate-now` request header.
    pub allow_now_header: bool,
    /// Where decisions are logged; `None` is off.
    pub decision_log: Option<rolegate_telemetry::LogTarget>,
    /// Share of plain allows logged, in [0, 1]; denies and alerts are always logged.
    pub decision_log_allow_rate: f64,
    /// Lines queued for the log writer before new ones are dropped.
    pub decision_log_queue: usize,
    /// The AuthZEN HTTP listener; `None` is off.
    pub authzen: Option<crate::authzen::Config>,
    /// TLS on every TCP gRPC listener, when set.
    pub tls: Option<crate::tls::TlsFiles>,
    /// The callers file: who may ask what; `None` admits every connected caller.
    pub callers: Option<PathBuf>,
    /// Shadow evaluation against a candidate policy; `None` is off.
    pub shadow: Option<crate::shadow::Config>,
    /// With tenants on demand, the memory bound of the resident tenants in bytes; `None` holds
    /// every tenant.
    pub on_demand: Option<u64>,
}

/// Every setting as raw text: from flags or the environment (clap), then the file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RawServe {
    /// Policy directory.
    #[arg(long, env = "ROLEGATE_POLICIES")]
    pub policies: Option<String>,
    /// Read policies from PostgreSQL instead: a DSN, `postgres://user@host:5432/db`; or follow
    /// changes through NATS JetStream, `nats://host:4222` (with `--snapshot-source`).
    #[arg(long, env = "ROLEGATE_SOURCE")]
    pub source: Option<String>,
    /// With a `nats://` source: the database (or a replica) snapshots are read from.
    #[arg(long, env = "ROLEGATE_SNAPSHOT_SOURCE")]
    pub snapshot_source: Option<String>,
    /// A file holding the `--source` DSN (a mounted secret).
    #[arg(long, env = "ROLEGATE_SOURCE_FILE")]
    pub source_file: Option<PathBuf>,
    /// `all` holds every tenant; `on-demand` loads a tenant from the database when a call first
    /// names it and keeps the tenants in use within `--tenant-memory` [default: all].
    #[arg(long, env = "ROLEGATE_TENANTS")]
    pub tenants: Option<String>,
    /// With `--tenants on-demand`: the estimated bytes of resident tenants, e.g. `512MiB`, `2GiB`,
    /// 1MiB to 1TiB [default: 512MiB].
    #[arg(long, env = "ROLEGATE_TENANT_MEMORY")]
    pub tenant_memory: Option<String>,
    /// Listen address, `host:port` or `unix:PATH`; repeatable [default: 127.0.0.1:50051].
    #[arg(long, env = "ROLEGATE_LISTEN", value_delimiter = ',')]
    pub listen: Vec<String>,
    /// Admin HTTP address (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "ROLEGATE_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// A YAML file with any of these settings (keys with `_`, e.g. `min_revision_wait: 100ms`).
    #[arg(long, env = "ROLEGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Wait for `min_revision` up to this long, at most 10s [default: 100ms].
    #[arg(long, env = "ROLEGATE_MIN_REVISION_WAIT")]
    pub min_revision_wait: Option<String>,
    /// Decision cache entries, at most 10000000; 0 is off [default: 0].
    #[arg(long, env = "ROLEGATE_CACHE_CAPACITY")]
    pub cache_capacity: Option<String>,
    /// Decision cache entry lifetime, at most 24h [default: 10s].
    #[arg(long, env = "ROLEGATE_CACHE_TTL")]
    pub cache_ttl: Option<String>,
    /// Calls in flight before load shedding, 1 to 1000000, shared by every listener [default: 4096].
    #[arg(long, env = "ROLEGATE_MAX_CONCURRENCY")]
    pub max_concurrency: Option<String>,
    /// Connections open at once, 1 to 1000000, shared by the gRPC and AuthZEN listeners; more are
    /// closed on accept [default: 1024].
    #[arg(long, env = "ROLEGATE_MAX_CONNECTIONS")]
    pub max_connections: Option<String>,
    /// Deadline of one call, 1ms to 10m [default: 1s].
    #[arg(long, env = "ROLEGATE_REQUEST_TIMEOUT")]
    pub request_timeout: Option<String>,
    /// Quiet time after a file change before reloading, at most 10s [default: 100ms].
    #[arg(long, env = "ROLEGATE_RELOAD_DEBOUNCE")]
    pub reload_debounce: Option<String>,
    /// Rescan the policy directory (or poll PostgreSQL) at least this often, 100ms to 24h [default: 30s; 5s with `--source`].
    #[arg(long, env = "ROLEGATE_RELOAD_POLL")]
    pub reload_poll: Option<String>,
    /// Let callers set the decision instant with the `rolegate-now` header (simulations and
    /// tests; never in production).
    #[arg(long, env = "ROLEGATE_ALLOW_NOW_HEADER")]
    pub allow_now_header: bool,
    /// Decision log: `stdout`, `off` or a file path [default: stdout].
    #[arg(long, env = "ROLEGATE_DECISION_LOG")]
    pub decision_log: Option<String>,
    /// Share of allows logged, 0 to 1; denies and alerts are always logged [default: 0].
    #[arg(long, env = "ROLEGATE_DECISION_LOG_ALLOW_RATE")]
    pub decision_log_allow_rate: Option<String>,
    /// Decision-log lines queued before new ones are dropped, 1 to 1000000 [default: 8192].
    #[arg(long, env = "ROLEGATE_DECISION_LOG_QUEUE")]
    pub decision_log_queue: Option<String>,
    /// AuthZEN Authorization API listener (HTTP/1.1 and h2c), `host:port` or `unix:PATH` [default: off].
    #[arg(long, env = "ROLEGATE_AUTHZEN_LISTEN")]
    pub authzen_listen: Option<String>,
    /// A file holding the bearer token AuthZEN callers must send (`Authorization: Bearer …`);
    /// read again when it changes [default: no token required].
    #[arg(long, env = "ROLEGATE_AUTHZEN_TOKEN_FILE")]
    pub authzen_token_file: Option<PathBuf>,
    /// TLS on every TCP gRPC listener: the certificate chain (PEM), reloaded when it changes.
    #[arg(long, env = "ROLEGATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM), reloaded when it changes.
    #[arg(long, env = "ROLEGATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates issued by these authorities (PEM): mutual TLS.
    #[arg(long, env = "ROLEGATE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Who may ask about which tenants through which APIs (YAML); everyone else is refused
    /// with PERMISSION_DENIED. Reloaded when it changes.
    #[arg(long, env = "ROLEGATE_CALLERS")]
    pub callers: Option<PathBuf>,
    /// Also decide every sampled call on this candidate policy directory, off the response
    /// path, and count and log the calls it answers differently [default: off].
    #[arg(long, env = "ROLEGATE_SHADOW_POLICIES")]
    pub shadow_policies: Option<String>,
    /// The candidate policy in PostgreSQL instead (a DSN of a candidate database).
    #[arg(long, env = "ROLEGATE_SHADOW_SOURCE")]
    pub shadow_source: Option<String>,
    /// The candidate policy in this schema of the `--source` database instead (made with
    /// `rolegate migrate --schema NAME`).
    #[arg(long, env = "ROLEGATE_SHADOW_SCHEMA")]
    pub shadow_schema: Option<String>,
    /// Calls queued for shadow evaluation before new ones are dropped, 1 to 1000000 [default: 1024].
    #[arg(long, env = "ROLEGATE_SHADOW_QUEUE")]
    pub shadow_queue: Option<String>,
    /// Share of calls also decided on the candidate, 0 to 1 [default: 1].
    #[arg(long, env = "ROLEGATE_SHADOW_SAMPLE")]
    pub shadow_sample: Option<String>,
    /// Shadow mismatches written to the decision log per second, 0 to 100000 [default: 10].
    #[arg(long, env = "ROLEGATE_SHADOW_LOG_PER_SECOND")]
    pub shadow_log_per_second: Option<String>,
}

impl RawServe {
    /// The DSN given with `--source`, or read from `--source-file`. Never echoed in errors: it
    /// may hold a password.
    fn source_dsn(&self, settings: &mut Settings) -> Option<String> {
        let dsn = self.source.clone().or_else(|| settings.in_file("source"));
        let path = self.source_file.clone().or_else(|| settings.in_file("source_file").map(PathBuf::from));
        match (dsn, path) {
            (Some(_), Some(_)) => {
                settings.errors.push("source: give either --source or --source-file, not both".to_owned());
                None
            }
            (Some(dsn), None) => Some(dsn),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(text) => Some(text.trim().to_owned()),
                Err(e) => {
                    settings.errors.push(format!("source_file: cannot read {}: {e}", path.display()));
                    None
                }
            },
            (None, None) => None,
        }
    }

    /// Where policies come from: a directory or PostgreSQL, exactly one. `reload_poll` is the
    /// resolved setting, used for PostgreSQL only when it was given.
    fn policy_source(
        &self,
        settings: &mut Settings,
        reload_poll: Duration,
    ) -> (Option<String>, Option<rolegate_source::postgres::Config>, Option<rolegate_source::nats::Config>) {
        let policies = settings.pick(&self.policies, "policies");
        let mut dsn = self.source_dsn(settings);
        let snapshot = settings.pick(&self.snapshot_source, "snapshot_source");
        let is_nats = dsn.as_deref().is_some_and(|d| d.starts_with("nats://") || d.starts_with("tls://"));
        let nats = match (is_nats, snapshot) {
            (true, Some(snapshot)) => {
                let nats = dsn.as_deref().map(rolegate_source::nats::Config::from_url);
                dsn = Some(snapshot);
                nats.and_then(|n| n.map_err(|e| settings.errors.push(format!("source: {e}"))).ok())
            }
            (true, None) => {
                settings.errors.push("snapshot_source: required with a `nats://` source (the database or a replica to load tenants from)".to_owned());
                dsn = None;
                None
            }
            (false, Some(_)) => {
                settings.errors.push("snapshot_source: only with a `nats://` source".to_owned());
                None
            }
            (false, None) => None,
        };
        match (&policies, &dsn) {
            (None, None) => settings.errors.push(
                "policies: required (--policies DIR or ROLEGATE_POLICIES, or --source postgres://… for PostgreSQL)"
                    .to_owned(),
            ),
            (Some(_), Some(_)) => {
                settings.errors.push("source: give either --policies or --source, not both".to_owned())
            }
            _ => {}
        }
        // Polling a database is cheap and bounds how stale a sidecar can be without noticing.
        let given = settings.pick(&self.reload_poll, "reload_poll").is_some();
        let poll = if given { reload_poll } else { Duration::from_secs(5) };
        let postgres = dsn.and_then(|dsn| {
            let field = if nats.is_some() { "snapshot_source" } else { "source" };
            rolegate_source::postgres::Config::from_dsn(&dsn, poll)
                .map_err(|e| settings.errors.push(format!("{field}: {e}")))
                .ok()
        });
        (policies, postgres, nats)
    }

    /// The shadow evaluation settings, when a candidate policy is given. `live` is the
    /// PostgreSQL source, whose database a `--shadow-schema` candidate shares.
    fn shadow(
        &self,
        s: &mut Settings,
        live: Option<&rolegate_source::postgres::Config>,
        nats: bool,
        poll: Duration,
    ) -> Option<crate::shadow::Config> {
        use crate::shadow::{Config, ShadowSource};
        let dir = s.pick(&self.shadow_policies, "shadow_policies");
        let dsn = s.pick(&self.shadow_source, "shadow_source");
        let schema = s.pick(&self.shadow_schema, "shadow_schema");
        let queue = s.number(&self.shadow_queue, "shadow_queue") as usize;
        let sample = s.rate(&self.shadow_sample, "shadow_sample", 1.0);
        let log = s.number(&self.shadow_log_per_second, "shadow_log_per_second");
        let source = match (dir, dsn, schema) {
            (None, None, None) => return None,
            (Some(dir), None, None) => ShadowSource::Dir(PathBuf::from(dir)),
            (None, Some(dsn), None) => match rolegate_source::postgres::Config::from_dsn(&dsn, poll) {
                Ok(pg) => ShadowSource::Postgres(Box::new(pg)),
                Err(e) => {
                    s.errors.push(format!("shadow_source: {e}"));
                    return None;
                }
            },
            (None, None, Some(name)) => ShadowSource::Postgres(Box::new(candidate_schema(s, live, nats, &name)?)),
            _ => {
                s.errors.push(
                    "shadow_source: give one of --shadow-policies, --shadow-source and --shadow-schema".to_owned(),
                );
                return None;
            }
        };
        Some(Config { source, queue, sample, log_per_second: u32::try_from(log).unwrap_or(u32::MAX) })
    }

    /// Resolves every setting, reporting all bad values together.
    pub fn resolve(&self) -> Result<ServeConfig, Vec<String>> {
        let mut s = Settings::new(self.config.as_deref());
        let min_revision_wait = s.duration(&self.min_revision_wait, "min_revision_wait");
        let cache_ttl = s.duration(&self.cache_ttl, "cache_ttl");
        let request_timeout = s.duration(&self.request_timeout, "request_timeout");
        let reload_debounce = s.duration(&self.reload_debounce, "reload_debounce");
        let reload_poll = s.duration(&self.reload_poll, "reload_poll");
        let cache_capacity = s.number(&self.cache_capacity, "cache_capacity");
        let decision_log_queue = s.number(&self.decision_log_queue, "decision_log_queue") as usize;
        let max_concurrency = s.number(&self.max_concurrency, "max_concurrency") as usize;
        let max_connections = s.number(&self.max_connections, "max_connections") as usize;
        let (policies, postgres, nats) = self.policy_source(&mut s, reload_poll);
        let listen = s.listen(&self.listen);
        let log_target = s.pick(&self.decision_log, "decision_log").unwrap_or_else(|| "stdout".into());
        let decision_log = rolegate_telemetry::LogTarget::parse(&log_target);
        let decision_log_allow_rate = s.allow_rate(&self.decision_log_allow_rate);
        let admin_listen = s.admin_listen(&self.admin_listen);
        let authzen = s.authzen(&self.authzen_listen, &self.authzen_token_file);
        let tls = s.tls(&self.tls_cert, &self.tls_key, &self.tls_client_ca);
        let callers = self.callers.clone().or_else(|| s.in_file("callers").map(PathBuf::from));
        let poll = postgres.as_ref().map_or(reload_poll, |pg| pg.poll);
        let shadow = self.shadow(&mut s, postgres.as_ref(), nats.is_some(), poll);
        let on_demand = s.tenants(&self.tenants, &self.tenant_memory, postgres.is_some());
        if min_revision_wait >= request_timeout {
            s.errors.push(format!(
                "min_revision_wait: {min_revision_wait:?} must be shorter than request_timeout ({request_timeout:?})"
            ));
        }
        if !s.errors.is_empty() {
            return Err(s.errors);
        }
        Ok(ServeConfig {
            policies: PathBuf::from(policies.unwrap_or_default()),
            postgres,
            nats,
            listen,
            admin_listen,
            min_revision_wait,
            cache: CacheConfig { capacity: cache_capacity, ttl: cache_ttl },
            limits: Limits::default(),
            max_concurrency,
            max_connections,
            request_timeout,
            reload_debounce,
            reload_poll,
            allow_now_header: self.allow_now_header,
            decision_log,
            decision_log_allow_rate,
            decision_log_queue,
            authzen,
            tls,
            callers,
            shadow,
            on_demand,
        })
    }
}

/// The `--shadow-schema` candidate: the live database's connection settings on another schema.
/// Errors (pushed to `s`) when the name is not a schema name, is the live schema, or there is no
/// PostgreSQL `--source` to share.
fn candidate_schema(
    s: &mut Settings,
    live: Option<&rolegate_source::postgres::Config>,
    nats: bool,
    name: &str,
) -> Option<rolegate_source::postgres::Config> {
    let schema = match rolegate_source::postgres::schema::Schema::parse(name) {
        Ok(schema) => schema,
        Err(e) => {
            s.errors.push(format!("shadow_schema: {e}"));
            return None;
        }
    };
    let why = match live {
        _ if nats => Some("needs a `postgres://` --source; with NATS give --shadow-source DSN".to_owned()),
        None => Some("needs a PostgreSQL --source, whose database holds the candidate schema".to_owned()),
        Some(live) if live.schema == schema => Some(format!("`{name}` is the live schema; name the candidate's")),
        Some(_) => None,
    };
    if let Some(why) = why {
        s.errors.push(format!("shadow_schema: {why}"));
        return None;
    }
    live.map(|live| rolegate_source::postgres::Config { schema, ..live.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nats_source_needs_a_snapshot_source_and_only_it_takes_one() {
        let nats = |snapshot: Option<&str>| RawServe {
            source: Some("nats://n1:4222".into()),
            snapshot_source: snapshot.map(Into::into),
            ..RawServe::default()
        };
        let cfg = nats(Some("postgres://replica/crm")).resolve().unwrap();
        assert_eq!(cfg.nats.map(|n| n.url).as_deref(), Some("nats://n1:4222"));
        assert_eq!(cfg.postgres.map(|pg| pg.describe()).as_deref(), Some("replica:5432/crm"));
        let errors = nats(None).resolve().unwrap_err();
        assert!(errors[0].starts_with("snapshot_source: required"), "{errors:?}");
        let errors = nats(Some("/etc/policies")).resolve().unwrap_err();
        assert!(errors[0].starts_with("snapshot_source: expected a PostgreSQL DSN"), "{errors:?}");
        let stray = RawServe {
            source: Some("postgres://db/p".into()),
            snapshot_source: Some("postgres://replica/p".into()),
            ..RawServe::default()
        };
        assert_eq!(stray.resolve().unwrap_err(), ["snapshot_source: only with a `nats://` source"]);
    }

    #[test]
    fn tls_files_come_as_a_pair() {
        let raw = RawServe {
            policies: Some("/etc/p".into()),
            tls_cert: Some("/tls/tls.crt".into()),
            tls_client_ca: Some("/tls/ca.crt".into()),
            ..RawServe::default()
        };
        assert_eq!(raw.resolve().unwrap_err(), ["tls_key: --tls-cert needs --tls-key"]);
        let alone =
            RawServe { policies: Some("/etc/p".into()), tls_client_ca: Some("/ca".into()), ..RawServe::default() };
        assert!(alone.resolve().unwrap_err()[0].starts_with("tls_client_ca: needs --tls-cert"));
        let cfg = RawServe { tls_key: Some("/tls/tls.key".into()), ..raw }.resolve().unwrap();
        let tls = cfg.tls.expect("TLS configured");
        assert_eq!(tls.client_ca, Some(PathBuf::from("/tls/ca.crt")));
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let raw = RawServe {
            listen: vec!["nowhere".into()],
            min_revision_wait: Some("fast".into()),
            max_concurrency: Some("0".into()),
            ..RawServe::default()
        };
        let errors = raw.resolve().unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors.iter().any(|e| e.starts_with("policies:")));
        assert!(errors.iter().any(|e| e.starts_with("listen:")));
        assert!(errors.iter().any(|e| e.starts_with("min_revision_wait:")));
        assert!(errors.iter().any(|e| e.starts_with("max_concurrency:")));
    }

    #[test]
    fn tenants_on_demand_take_a_size_and_need_a_database() {
        let pg = |tenants: Option<&str>, memory: Option<&str>| RawServe {
            source: Some("postgres://db/p".into()),
            tenants: tenants.map(Into::into),
            tenant_memory: memory.map(Into::into),
            ..RawServe::default()
        };
        assert_eq!(pg(None, None).resolve().unwrap().on_demand, None, "every tenant resident by default");
        assert_eq!(pg(Some("on-demand"), None).resolve().unwrap().on_demand, Some(512 << 20));
        assert_eq!(pg(Some("on-demand"), Some("2GiB")).resolve().unwrap().on_demand, Some(2 << 30));
        assert_eq!(pg(Some("on-demand"), Some("300MB")).resolve().unwrap().on_demand, Some(300_000_000));
        assert_eq!(
            pg(Some("on-demand"), Some("lots")).resolve().unwrap_err()[0],
            "tenant_memory: invalid size `lots` (e.g. `512MiB`, `2GiB`, `1000000`)"
        );
        assert_eq!(
            pg(Some("on-demand"), Some("1KiB")).resolve().unwrap_err()[0],
            "tenant_memory: `1KiB` is out of range (1MiB to 1TiB)"
        );
        assert_eq!(
            pg(Some("on-demand"), Some("99999999999TiB")).resolve().unwrap_err().len(),
            1,
            "an overflow is invalid"
        );
        assert_eq!(pg(None, Some("1GiB")).resolve().unwrap_err(), ["tenant_memory: only with `--tenants on-demand`"]);
        assert_eq!(
            pg(Some("some"), None).resolve().unwrap_err(),
            ["tenants: expected `all` or `on-demand`, got `some`"]
        );
        let dir =
            RawServe { policies: Some("examples".into()), tenants: Some("on-demand".into()), ..RawServe::default() };
        assert!(dir.resolve().unwrap_err()[0].starts_with("tenants: `on-demand` needs a database"));
    }

    #[test]
    fn durations_and_sizes_out_of_range_are_all_reported() {
        let raw = RawServe {
            policies: Some("/etc/p".into()),
            reload_poll: Some("0s".into()),
            reload_debounce: Some("1m".into()),
            cache_ttl: Some("99999999999999999m".into()),
            request_timeout: Some("0ms".into()),
            min_revision_wait: Some("11s".into()),
            max_concurrency: Some("0".into()),
            max_connections: Some("1000001".into()),
            cache_capacity: Some("18446744073709551615".into()),
            decision_log_queue: Some("0".into()),
            ..RawServe::default()
        };
        let errors = raw.resolve().unwrap_err();
        for key in [
            "reload_poll:",
            "reload_debounce:",
            "cache_ttl:",
            "request_timeout:",
            "min_revision_wait:",
            "max_concurrency:",
            "max_connections:",
            "cache_capacity:",
            "decision_log_queue:",
        ] {
            assert!(errors.iter().any(|e| e.starts_with(key)), "no {key} in {errors:#?}");
        }
        assert!(errors.contains(&"reload_poll: `0s` is out of range (100ms to 86400s)".to_owned()), "{errors:#?}");
        assert_eq!(RawServe { cache_ttl: Some("25h".into()), ..raw.clone() }.resolve().unwrap_err().len(), 9);
        let edge = RawServe {
            policies: Some("/etc/p".into()),
            reload_poll: Some("100ms".into()),
            cache_ttl: Some("24h".into()),
            ..RawServe::default()
        };
        let cfg = edge.resolve().unwrap();
        assert_eq!(cfg.reload_poll, Duration::from_millis(100));
        assert_eq!(cfg.cache.ttl, Duration::from_secs(86400));
        assert_eq!(cfg.max_connections, 1024, "the documented default");
    }

    #[test]
    fn a_zero_poll_is_refused_for_postgres_too() {
        let raw =
            RawServe { source: Some("postgres://db/p".into()), reload_poll: Some("0ms".into()), ..RawServe::default() };
        let errors = raw.resolve().unwrap_err();
        assert!(errors.iter().any(|e| e.starts_with("reload_poll:")), "{errors:#?}");
    }

    #[test]
    fn flags_beat_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rolegate.yaml");
        std::fs::write(
            &file,
            "policies: /etc/p\nmin_revision_wait: 250ms\nlisten: [unix:/tmp/x.sock, \"127.0.0.1:7000\"]\n",
        )
        .unwrap();
        let raw = RawServe { config: Some(file), min_revision_wait: Some("50ms".into()), ..RawServe::default() };
        let cfg = raw.resolve().unwrap();
        assert_eq!(cfg.min_revision_wait, Duration::from_millis(50));
        assert_eq!(cfg.policies, PathBuf::from("/etc/p"));
        assert_eq!(cfg.listen.len(), 2);
    }

    #[test]
    fn the_postgres_dsn_comes_from_a_flag_or_a_secret_file_and_is_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("dsn");
        std::fs::write(&secret, "postgres://rolegate:s3cret@db:6432/policies\n").unwrap();
        let cfg = RawServe { source_file: Some(secret.clone()), ..RawServe::default() }.resolve().unwrap();
        let pg = cfg.postgres.expect("a postgres source");
        assert_eq!(pg.describe(), "db:6432/policies");
        assert_eq!(pg.poll, Duration::from_secs(5));

        let both = RawServe {
            policies: Some("/etc/p".into()),
            source: Some("postgres://rolegate:s3cret@db/policies".into()),
            ..RawServe::default()
        };
        let errors = both.resolve().unwrap_err();
        assert_eq!(errors, ["source: give either --policies or --source, not both"]);
        let not_a_dsn = RawServe { source: Some("/etc/policies".into()), ..RawServe::default() };
        let errors = not_a_dsn.resolve().unwrap_err();
        assert!(errors[0].starts_with("source: expected a PostgreSQL DSN"), "{errors:?}");
        let twice =
            RawServe { source: Some("postgres://db/p".into()), source_file: Some(secret), ..RawServe::default() };
        assert!(twice.resolve().unwrap_err().iter().all(|e| !e.contains("s3cret")));
    }

    #[test]
    fn a_shadow_schema_is_a_valid_other_schema_of_the_postgres_source() {
        let raw = |source: &str, schema: &str| RawServe {
            source: Some(source.into()),
            shadow_schema: Some(schema.into()),
            ..RawServe::default()
        };
        let cfg = raw("postgres://rolegate:s3cret@db/p", "candidate").resolve().unwrap();
        let Some(crate::shadow::ShadowSource::Postgres(pg)) = cfg.shadow.map(|s| s.source) else {
            panic!("no PostgreSQL shadow")
        };
        assert_eq!((pg.schema.name(), pg.describe().as_str()), ("candidate", "db:5432/p schema candidate"));
        assert_eq!(cfg.postgres.map(|pg| pg.schema.name().to_owned()).as_deref(), Some("rolegate"));

        let errors = raw("postgres://db/p", "Candidate; DROP").resolve().unwrap_err();
        assert!(errors[0].starts_with("shadow_schema: `Candidate; DROP` is not a schema name"), "{errors:?}");
        let errors = raw("postgres://db/p", "rolegate").resolve().unwrap_err();
        assert_eq!(errors, ["shadow_schema: `rolegate` is the live schema; name the candidate's"]);
        let errors = raw("nats://n1:4222", "candidate");
        let errors = RawServe { snapshot_source: Some("postgres://db/p".into()), ..errors }.resolve().unwrap_err();
        assert!(errors[0].starts_with("shadow_schema: needs a `postgres://` --source"), "{errors:?}");
        let dir = RawServe {
            policies: Some("/etc/p".into()),
            shadow_schema: Some("candidate".into()),
            ..RawServe::default()
        };
        assert!(dir.resolve().unwrap_err()[0].starts_with("shadow_schema: needs a PostgreSQL --source"));
        let two = RawServe { shadow_policies: Some("/etc/c".into()), ..raw("postgres://db/p", "candidate") };
        assert_eq!(
            two.resolve().unwrap_err(),
            ["shadow_source: give one of --shadow-policies, --shadow-source and --shadow-schema"]
        );
    }
}
