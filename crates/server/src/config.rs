//! `rolegate serve` configuration: flags, `ROLEGATE_*` environment variables and an optional
//! YAML file, in that order of precedence. Every bad value is reported at once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::convert::Limits;
use crate::cache::CacheConfig;

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
    /// Read policies from PostgreSQL instead of a directory.
    pub postgres: Option<rolegate_source::postgres::Config>,
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
}

/// Every setting as raw text: from flags or the environment (clap), then the file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RawServe {
    /// Policy directory.
    #[arg(long, env = "ROLEGATE_POLICIES")]
    pub policies: Option<String>,
    /// Read policies from PostgreSQL instead: a DSN, `postgres://user@host:5432/db`.
    #[arg(long, env = "ROLEGATE_SOURCE")]
    pub source: Option<String>,
    /// A file holding the `--source` DSN (a mounted secret).
    #[arg(long, env = "ROLEGATE_SOURCE_FILE")]
    pub source_file: Option<PathBuf>,
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
}

const FILE_KEYS: &[&str] = &[
    "policies",
    "source",
    "source_file",
    "listen",
    "admin_listen",
    "min_revision_wait",
    "cache_capacity",
    "cache_ttl",
    "max_concurrency",
    "request_timeout",
    "reload_debounce",
    "reload_poll",
    "decision_log",
    "decision_log_allow_rate",
    "decision_log_queue",
];

/// Parses `100ms`, `5s`, `2m`, `1h`; `None` for anything else, or a number too large to hold.
pub fn duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The accepted range of each duration setting: its default, least and greatest value.
/// A zero poll interval would be a busy loop; an entry or wait beyond a day has no use and
/// risks overflowing the clock arithmetic.
const DURATIONS: &[(&str, Duration, Duration, Duration)] = &[
    ("min_revision_wait", Duration::from_millis(100), Duration::ZERO, Duration::from_secs(10)),
    ("cache_ttl", Duration::from_secs(10), Duration::ZERO, DAY),
    ("request_timeout", SECOND, MS, Duration::from_secs(600)),
    ("reload_debounce", Duration::from_millis(100), Duration::ZERO, Duration::from_secs(10)),
    ("reload_poll", Duration::from_secs(30), Duration::from_millis(100), DAY),
];

/// The accepted range of each number setting: its default, least and greatest value.
const NUMBERS: &[(&str, u64, u64, u64)] = &[
    ("cache_capacity", 0, 0, 10_000_000),
    ("decision_log_queue", 8192, 1, 1_000_000),
    ("max_concurrency", 4096, 1, 1_000_000),
];

/// The range of `key` in `table`; every key looked up is in it.
fn range<T: Copy + Default>(table: &[(&str, T, T, T)], key: &str) -> (T, T, T) {
    table.iter().find(|r| r.0 == key).map_or_else(Default::default, |r| (r.1, r.2, r.3))
}

fn read_file(path: &PathBuf, errors: &mut Vec<String>) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("--config: cannot read {}: {e}", path.display()));
            return out;
        }
    };
    let node = match marked_yaml::parse_yaml(0, &text) {
        Ok(n) => n,
        Err(e) => {
            errors.push(format!("{}: invalid YAML: {e:?}", path.display()));
            return out;
        }
    };
    let Some(map) = node.as_mapping() else { return out };
    for (k, v) in map.iter() {
        let line = k.span().start().map_or(0, |m| m.line());
        if !FILE_KEYS.contains(&k.as_str()) {
            let hint = rolegate_engine::suggest::hint(k.as_str(), FILE_KEYS.iter().copied());
            errors.push(format!("{}:{line}: unknown key `{}`{hint}", path.display(), k.as_str()));
            continue;
        }
        let values = match v {
            marked_yaml::Node::Scalar(s) => vec![s.as_str().to_owned()],
            marked_yaml::Node::Sequence(seq) => {
                seq.iter().filter_map(|n| n.as_scalar().map(|s| s.as_str().to_owned())).collect()
            }
            marked_yaml::Node::Mapping(_) => {
                errors.push(format!("{}:{line}: `{}` must be a value", path.display(), k.as_str()));
                continue;
            }
        };
        out.insert(k.as_str().to_owned(), values);
    }
    out
}

impl RawServe {
    /// The DSN given with `--source`, or read from `--source-file`. Never echoed in errors: it
    /// may hold a password.
    fn source_dsn(&self, file: &HashMap<String, Vec<String>>, errors: &mut Vec<String>) -> Option<String> {
        let from_file = |key: &str| file.get(key).and_then(|v| v.first().cloned());
        let dsn = self.source.clone().or_else(|| from_file("source"));
        let path = self.source_file.clone().or_else(|| from_file("source_file").map(PathBuf::from));
        match (dsn, path) {
            (Some(_), Some(_)) => {
                errors.push("source: give either --source or --source-file, not both".to_owned());
                None
            }
            (Some(dsn), None) => Some(dsn),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(text) => Some(text.trim().to_owned()),
                Err(e) => {
                    errors.push(format!("source_file: cannot read {}: {e}", path.display()));
                    None
                }
            },
            (None, None) => None,
        }
    }

    /// Resolves every setting, reporting all bad values together.
    pub fn resolve(&self) -> Result<ServeConfig, Vec<String>> {
        let mut errors = Vec::new();
        let file = self.config.as_ref().map(|p| read_file(p, &mut errors)).unwrap_or_default();
        let pick =
            |flag: &Option<String>, key: &str| flag.clone().or_else(|| file.get(key).and_then(|v| v.first().cloned()));
        let mut parse_dur = |flag: &Option<String>, key: &str| {
            let (default, min, max) = range(DURATIONS, key);
            match pick(flag, key) {
                None => default,
                Some(s) => match duration(&s) {
                    Some(d) if (min..=max).contains(&d) => d,
                    Some(_) => {
                        errors.push(format!("{key}: `{s}` is out of range ({min:?} to {max:?})"));
                        default
                    }
                    None => {
                        errors.push(format!("{key}: invalid duration `{s}` (e.g. `100ms`, `5s`, `2m`, `1h`)"));
                        default
                    }
                },
            }
        };
        let min_revision_wait = parse_dur(&self.min_revision_wait, "min_revision_wait");
        let cache_ttl = parse_dur(&self.cache_ttl, "cache_ttl");
        let request_timeout = parse_dur(&self.request_timeout, "request_timeout");
        let reload_debounce = parse_dur(&self.reload_debounce, "reload_debounce");
        let reload_poll = parse_dur(&self.reload_poll, "reload_poll");
        let mut parse_num = |flag: &Option<String>, key: &str| {
            let (default, min, max) = range(NUMBERS, key);
            match pick(flag, key) {
                None => default,
                Some(s) => match s.trim().parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => n,
                    _ => {
                        errors.push(format!("{key}: invalid number `{s}` (from {min} to {max})"));
                        default
                    }
                },
            }
        };
        let cache_capacity = parse_num(&self.cache_capacity, "cache_capacity");
        let decision_log_queue = parse_num(&self.decision_log_queue, "decision_log_queue") as usize;
        let max_concurrency = parse_num(&self.max_concurrency, "max_concurrency") as usize;
        let policies = pick(&self.policies, "policies");
        let dsn = self.source_dsn(&file, &mut errors);
        match (&policies, &dsn) {
            (None, None) => errors.push(
                "policies: required (--policies DIR or ROLEGATE_POLICIES, or --source postgres://… for PostgreSQL)"
                    .to_owned(),
            ),
            (Some(_), Some(_)) => errors.push("source: give either --policies or --source, not both".to_owned()),
            _ => {}
        }
        // Polling a database is cheap and bounds how stale a sidecar can be without noticing.
        let poll = if pick(&self.reload_poll, "reload_poll").is_some() { reload_poll } else { Duration::from_secs(5) };
        let postgres = dsn.and_then(|dsn| {
            rolegate_source::postgres::Config::from_dsn(&dsn, poll)
                .map_err(|e| errors.push(format!("source: {e}")))
                .ok()
        });
        let raw_listen =
            if self.listen.is_empty() { file.get("listen").cloned().unwrap_or_default() } else { self.listen.clone() };
        let raw_listen = if raw_listen.is_empty() { vec!["127.0.0.1:50051".to_owned()] } else { raw_listen };
        let mut listen = Vec::new();
        for l in raw_listen {
            match l.strip_prefix("unix:") {
                Some("") => errors.push("listen: `unix:` needs a path".to_owned()),
                Some(p) => listen.push(Listen::Unix(PathBuf::from(p))),
                None if l.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) => {
                    listen.push(Listen::Tcp(l))
                }
                None => errors.push(format!("listen: invalid address `{l}` (expected `host:port` or `unix:PATH`)")),
            }
        }
        let admin_listen = pick(&self.admin_listen, "admin_listen");
        let log_target = pick(&self.decision_log, "decision_log").unwrap_or_else(|| "stdout".into());
        let decision_log = rolegate_telemetry::LogTarget::parse(&log_target);
        let decision_log_allow_rate = match pick(&self.decision_log_allow_rate, "decision_log_allow_rate") {
            None => 0.0,
            Some(s) => match s.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    errors.push(format!("decision_log_allow_rate: invalid rate `{s}` (a number from 0 to 1)"));
                    0.0
                }
            },
        };
        if let Some(a) =
            admin_listen.as_deref().filter(|a| a.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_err()))
        {
            errors.push(format!("admin_listen: invalid address `{a}` (expected `host:port`)"));
        }
        if min_revision_wait >= request_timeout {
            errors.push(format!(
                "min_revision_wait: {min_revision_wait:?} must be shorter than request_timeout ({request_timeout:?})"
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ServeConfig {
            policies: PathBuf::from(policies.unwrap_or_default()),
            postgres,
            listen,
            admin_listen,
            min_revision_wait,
            cache: CacheConfig { capacity: cache_capacity, ttl: cache_ttl },
            limits: Limits::default(),
            max_concurrency,
            request_timeout,
            reload_debounce,
            reload_poll,
            allow_now_header: self.allow_now_header,
            decision_log,
            decision_log_allow_rate,
            decision_log_queue,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn durations_and_sizes_out_of_range_are_all_reported() {
        let raw = RawServe {
            policies: Some("/etc/p".into()),
            reload_poll: Some("0s".into()),
            reload_debounce: Some("1m".into()),
            cache_ttl: Some("99999999999999999m".into()),
            request_timeout: Some("0ms".into()),
            min_revision_wait: Some("11s".into()),
            max_concurrency: Some("0".into()),
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
            "cache_capacity:",
            "decision_log_queue:",
        ] {
            assert!(errors.iter().any(|e| e.starts_with(key)), "no {key} in {errors:#?}");
        }
        assert!(errors.contains(&"reload_poll: `0s` is out of range (100ms to 86400s)".to_owned()), "{errors:#?}");
        assert_eq!(RawServe { cache_ttl: Some("25h".into()), ..raw.clone() }.resolve().unwrap_err().len(), 8);
        let edge = RawServe {
            policies: Some("/etc/p".into()),
            reload_poll: Some("100ms".into()),
            cache_ttl: Some("24h".into()),
            ..RawServe::default()
        };
        let cfg = edge.resolve().unwrap();
        assert_eq!(cfg.reload_poll, Duration::from_millis(100));
        assert_eq!(cfg.cache.ttl, Duration::from_secs(86400));
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
}
