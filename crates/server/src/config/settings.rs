//! Reading one setting at a time, from a flag (or its environment variable) or else the
//! `--config` file, into its type and range, while collecting every bad value.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Listen;

/// Every key the `--config` file may hold.
const FILE_KEYS: &[&str] = &[
    "policies",
    "source",
    "source_file",
    "tenants",
    "tenant_memory",
    "listen",
    "admin_listen",
    "min_revision_wait",
    "cache_capacity",
    "cache_ttl",
    "max_concurrency",
    "max_connections",
    "request_timeout",
    "reload_debounce",
    "reload_poll",
    "decision_log",
    "decision_log_allow_rate",
    "decision_log_queue",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "callers",
    "shadow_policies",
    "shadow_source",
    "shadow_schema",
    "shadow_queue",
    "shadow_sample",
    "shadow_log_per_second",
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

/// Parses a size in bytes: `1000000`, `64KiB`, `512MiB`, `2GiB`, `1TiB` (also `KB`, `MB`, `GB`,
/// `TB` as powers of 1000); `None` for anything else or an overflow.
pub fn bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num.parse().ok()?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

const TENANT_MEMORY_MIN: u64 = 1 << 20;
const TENANT_MEMORY_MAX: u64 = 1 << 40;

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
    ("max_connections", 1024, 1, 1_000_000),
    ("shadow_queue", 1024, 1, 1_000_000),
    ("shadow_log_per_second", 10, 0, 100_000),
];

/// The range of `key` in `table`; every key looked up is in it.
fn range<T: Copy + Default>(table: &[(&str, T, T, T)], key: &str) -> (T, T, T) {
    table.iter().find(|r| r.0 == key).map_or_else(Default::default, |r| (r.1, r.2, r.3))
}

/// The `--config` file's settings, by key; a key given once holds one value.
fn read_file(path: &Path, errors: &mut Vec<String>) -> HashMap<String, Vec<String>> {
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

/// The `--config` file's values and every error found so far.
pub(super) struct Settings {
    /// Values from the `--config` file, by key.
    pub(super) file: HashMap<String, Vec<String>>,
    /// Every bad value, in the order found.
    pub(super) errors: Vec<String>,
}

impl Settings {
    /// Reads the `--config` file, if any.
    pub(super) fn new(config: Option<&Path>) -> Settings {
        let mut errors = Vec::new();
        let file = config.map(|p| read_file(p, &mut errors)).unwrap_or_default();
        Settings { file, errors }
    }

    /// The first value of `key` from the file.
    pub(super) fn in_file(&self, key: &str) -> Option<String> {
        self.file.get(key).and_then(|v| v.first().cloned())
    }

    /// The flag's value, or else the file's.
    pub(super) fn pick(&self, flag: &Option<String>, key: &str) -> Option<String> {
        flag.clone().or_else(|| self.in_file(key))
    }

    /// A duration within its range in [`DURATIONS`]; its default when unset or bad.
    pub(super) fn duration(&mut self, flag: &Option<String>, key: &str) -> Duration {
        let (default, min, max) = range(DURATIONS, key);
        let Some(s) = self.pick(flag, key) else { return default };
        match duration(&s) {
            Some(d) if (min..=max).contains(&d) => d,
            Some(_) => {
                self.errors.push(format!("{key}: `{s}` is out of range ({min:?} to {max:?})"));
                default
            }
            None => {
                self.errors.push(format!("{key}: invalid duration `{s}` (e.g. `100ms`, `5s`, `2m`, `1h`)"));
                default
            }
        }
    }

    /// A number within its range in [`NUMBERS`]; its default when unset or bad.
    pub(super) fn number(&mut self, flag: &Option<String>, key: &str) -> u64 {
        let (default, min, max) = range(NUMBERS, key);
        let Some(s) = self.pick(flag, key) else { return default };
        match s.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.errors.push(format!("{key}: invalid number `{s}` (from {min} to {max})"));
                default
            }
        }
    }

    /// `--tenants` and `--tenant-memory`: the bound with tenants on demand, `None` with every
    /// tenant resident. On demand needs a database to load tenants from.
    pub(super) fn tenants(&mut self, mode: &Option<String>, memory: &Option<String>, database: bool) -> Option<u64> {
        let memory_text = self.pick(memory, "tenant_memory");
        let bound = match memory_text.as_deref().map(|m| (m, bytes(m))) {
            None => rolegate_source::ondemand::DEFAULT_TENANT_MEMORY,
            Some((_, Some(b))) if (TENANT_MEMORY_MIN..=TENANT_MEMORY_MAX).contains(&b) => b,
            Some((m, Some(_))) => {
                self.errors.push(format!("tenant_memory: `{m}` is out of range (1MiB to 1TiB)"));
                0
            }
            Some((m, None)) => {
                self.errors.push(format!("tenant_memory: invalid size `{m}` (e.g. `512MiB`, `2GiB`, `1000000`)"));
                0
            }
        };
        match self.pick(mode, "tenants").as_deref().map(str::trim) {
            None | Some("all") => {
                if memory_text.is_some() {
                    self.errors.push("tenant_memory: only with `--tenants on-demand`".to_owned());
                }
                None
            }
            Some("on-demand") if !database => {
                self.errors.push(
                    "tenants: `on-demand` needs a database to load tenants from (`--source postgres://…`, or `nats://…` with `--snapshot-source`); a policy directory is always held whole".to_owned(),
                );
                None
            }
            Some("on-demand") => Some(bound),
            Some(other) => {
                self.errors.push(format!("tenants: expected `all` or `on-demand`, got `{other}`"));
                None
            }
        }
    }

    /// The gRPC listeners: the flags', else the file's, else `127.0.0.1:50051`.
    pub(super) fn listen(&mut self, flags: &[String]) -> Vec<Listen> {
        let raw = if flags.is_empty() { self.file.get("listen").cloned().unwrap_or_default() } else { flags.to_vec() };
        let raw = if raw.is_empty() { vec!["127.0.0.1:50051".to_owned()] } else { raw };
        let mut listen = Vec::new();
        for l in raw {
            match l.strip_prefix("unix:") {
                Some("") => self.errors.push("listen: `unix:` needs a path".to_owned()),
                Some(p) => listen.push(Listen::Unix(PathBuf::from(p))),
                None if is_host_port(&l) => listen.push(Listen::Tcp(l)),
                None => {
                    self.errors.push(format!("listen: invalid address `{l}` (expected `host:port` or `unix:PATH`)"))
                }
            }
        }
        listen
    }

    /// The AuthZEN listener, if set: `host:port` or `unix:PATH`, with its token file.
    pub(super) fn authzen(
        &mut self,
        listen: &Option<String>,
        token_file: &Option<PathBuf>,
    ) -> Option<crate::authzen::Config> {
        let token_file = token_file.clone().or_else(|| self.in_file("authzen_token_file").map(PathBuf::from));
        let Some(l) = self.pick(listen, "authzen_listen") else {
            if token_file.is_some() {
                self.errors.push("authzen_token_file: set only with authzen_listen".to_owned());
            }
            return None;
        };
        let listen = match l.strip_prefix("unix:") {
            Some("") => {
                self.errors.push("authzen_listen: `unix:` needs a path".to_owned());
                return None;
            }
            Some(p) => Listen::Unix(PathBuf::from(p)),
            None if is_host_port(&l) => Listen::Tcp(l),
            None => {
                self.errors
                    .push(format!("authzen_listen: invalid address `{l}` (expected `host:port` or `unix:PATH`)"));
                return None;
            }
        };
        Some(crate::authzen::Config { listen, token_file })
    }

    /// The admin listener, if set: `host:port` only.
    pub(super) fn admin_listen(&mut self, flag: &Option<String>) -> Option<String> {
        let admin_listen = self.pick(flag, "admin_listen");
        if let Some(a) = admin_listen.as_deref().filter(|a| !is_host_port(a)) {
            self.errors.push(format!("admin_listen: invalid address `{a}` (expected `host:port`)"));
        }
        admin_listen
    }

    /// The share of allows logged, from 0 to 1; 0 when unset or bad.
    pub(super) fn allow_rate(&mut self, flag: &Option<String>) -> f64 {
        self.rate(flag, "decision_log_allow_rate", 0.0)
    }

    /// A share from 0 to 1; `default` when unset, 0 when bad.
    pub(super) fn rate(&mut self, flag: &Option<String>, key: &str, default: f64) -> f64 {
        let Some(s) = self.pick(flag, key) else { return default };
        match s.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => r,
            _ => {
                self.errors.push(format!("{key}: invalid rate `{s}` (a number from 0 to 1)"));
                0.0
            }
        }
    }
}

impl Settings {
    /// The TLS files: a certificate and key together, a client CA only with them.
    pub(super) fn tls(
        &mut self,
        cert: &Option<PathBuf>,
        key: &Option<PathBuf>,
        client_ca: &Option<PathBuf>,
    ) -> Option<crate::tls::TlsFiles> {
        let path = |flag: &Option<PathBuf>, key: &str| flag.clone().or_else(|| self.in_file(key).map(PathBuf::from));
        let (cert, key, client_ca) = (path(cert, "tls_cert"), path(key, "tls_key"), path(client_ca, "tls_client_ca"));
        match (cert, key) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert, key, client_ca }),
            (None, None) => {
                if client_ca.is_some() {
                    self.errors
                        .push("tls_client_ca: needs --tls-cert and --tls-key (client certificates need TLS)".into());
                }
                None
            }
            (Some(_), None) => {
                self.errors.push("tls_key: --tls-cert needs --tls-key".to_owned());
                None
            }
            (None, Some(_)) => {
                self.errors.push("tls_cert: --tls-key needs --tls-cert".to_owned());
                None
            }
        }
    }
}

/// True for `host:port` with a valid port number.
fn is_host_port(address: &str) -> bool {
    address.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok())
}
