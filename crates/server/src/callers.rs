//! Who may ask what (docs/operations.md, "Securing rolegate"): with `--callers FILE`, every call
//! is admitted only if the caller's identity ([`Peer`]) is named in the file, the call's API group
//! is among the entry's, and the tenant the call asks about matches one of the entry's patterns.
//! Anything else is `PERMISSION_DENIED` (403 over HTTP), counted by API group and logged with the
//! caller, tenant and method — before any decision is made. Health and reflection stay open to
//! every connected caller: probes and grpcurl need them.
//!
//! The file is read again every [`RELOAD_EVERY`](crate::tls::RELOAD_EVERY); a changed file that
//! does not parse is logged with file and line, counted, and the previous table kept.

mod file;
pub mod layer;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rolegate_telemetry::Metrics;

use crate::peer::Peer;
pub use file::{Entry, MAX_CALLERS, MAX_FILE_BYTES, MAX_PATTERNS, Table, matches, parse};
pub use layer::CallersLayer;

/// What a call asks for, as a callers file grants it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `Check`, `CheckBatch` (and AuthZEN evaluations).
    Check,
    /// `Plan`.
    Plan,
    /// `Explain`, `Permissions`, `Who` (and AuthZEN searches).
    Inspect,
    /// Health and reflection: open to every connected caller.
    Open,
}

impl Api {
    /// The groups a callers file can grant, in the order `*` grants them.
    pub const GRANTED: [Api; 3] = [Api::Check, Api::Plan, Api::Inspect];

    /// The group's name in a callers file and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Api::Check => "check",
            Api::Plan => "plan",
            Api::Inspect => "inspect",
            Api::Open => "open",
        }
    }

    /// The group a gRPC path belongs to; `None` for a path in no group, which a callers file
    /// never admits (a service added later is closed until it is given a group here).
    pub fn from_path(path: &str) -> Option<Api> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        match (service, method) {
            ("rolegate.v1.Authorizer", "Check" | "CheckBatch") => Some(Api::Check),
            ("rolegate.v1.Authorizer", "Plan") => Some(Api::Plan),
            ("rolegate.v1.Inspector", "Explain" | "Permissions" | "Who") => Some(Api::Inspect),
            (
                "grpc.health.v1.Health"
                | "grpc.reflection.v1.ServerReflection"
                | "grpc.reflection.v1alpha.ServerReflection",
                _,
            ) => Some(Api::Open),
            _ => None,
        }
    }
}

/// Why a call was refused: the message a caller sees, which names it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Denied(pub String);

/// A caller admitted to an API group, still to be checked against the tenant it asks about.
#[derive(Debug)]
pub struct Admitted {
    /// The table in force and the caller's entry in it; `None` for health and reflection: every
    /// tenant question is out of their scope.
    entry: Option<(Arc<Table>, usize)>,
    caller: Peer,
    api: Api,
}

impl Admitted {
    /// Whether the caller may ask about `tenant`.
    pub fn tenant(&self, tenant: &str) -> Result<(), Denied> {
        let entry = self.entry.as_ref().and_then(|(table, i)| table.entries.get(*i));
        match (&self.entry, entry) {
            (None, _) => Ok(()),
            (Some(_), Some(e)) if e.tenants.iter().any(|p| matches(p, tenant)) => Ok(()),
            (Some(_), _) => Err(Denied(format!(
                "caller `{}` may not ask about tenant `{tenant}` ({} API)",
                self.caller.name(),
                self.api.name()
            ))),
        }
    }

    /// Whether the call needs its tenant checked (every group but health and reflection).
    pub fn checks_tenant(&self) -> bool {
        self.entry.is_some()
    }

    /// The caller's identity as named in logs.
    pub fn caller(&self) -> &str {
        self.caller.name()
    }
}

/// The callers table in force, reloaded when its file changes.
#[derive(Debug)]
pub struct Callers {
    path: PathBuf,
    table: ArcSwap<Table>,
    /// The text behind `table`, and the text (or read error) that last failed to load.
    seen: Mutex<(String, Option<Result<String, String>>)>,
    metrics: Arc<Metrics>,
}

impl Callers {
    /// Loads the file; at startup a bad file is an error listing every mistake.
    pub fn load(path: PathBuf, metrics: Arc<Metrics>) -> Result<Arc<Callers>, Vec<String>> {
        let text = read(&path).map_err(|e| vec![e])?;
        let table = parse(&path, &text)?;
        tracing::info!(callers = table.entries.len(), "callers file {} loaded", path.display());
        Ok(Arc::new(Callers { path, table: ArcSwap::from_pointee(table), seen: Mutex::new((text, None)), metrics }))
    }

    /// A table given directly (tests, embedding).
    pub fn fixed(table: Table, metrics: Arc<Metrics>) -> Arc<Callers> {
        Arc::new(Callers { path: PathBuf::new(), table: ArcSwap::from_pointee(table), seen: Mutex::default(), metrics })
    }

    /// Admits `peer` to `api`, or says why not. Health and reflection admit every caller.
    pub fn admit(&self, peer: &Peer, api: Option<Api>) -> Result<Admitted, Denied> {
        let caller = peer.name();
        let Some(api) = api else {
            return Err(Denied(format!("caller `{caller}` may not call this method: it is in no API group")));
        };
        if api == Api::Open {
            return Ok(Admitted { entry: None, caller: peer.clone(), api });
        }
        let table = self.table.load_full();
        let Some(index) = table.entries.iter().position(|e| peer.ids.contains(&e.id)) else {
            return Err(Denied(format!("caller `{caller}` is not in the callers file")));
        };
        if !table.entries.get(index).is_some_and(|e| e.apis.contains(&api)) {
            return Err(Denied(format!("caller `{caller}` may not use the {} API", api.name())));
        }
        Ok(Admitted { entry: Some((table, index)), caller: peer.clone(), api })
    }

    /// Counts and logs a refusal.
    pub fn record_denial(&self, api: Option<Api>, method: &str, tenant: Option<&str>, why: &Denied) {
        let group = api.map_or("unknown", Api::name);
        self.metrics.access.denied(group);
        tracing::warn!(
            rolegate.api = group,
            rolegate.method = method,
            rolegate.tenant = tenant.unwrap_or("-"),
            "call refused: {why}"
        );
    }

    /// Reads the file again and, if it changed and parses, applies it from now on. Returns
    /// whether the table was replaced.
    pub fn reload(&self) -> bool {
        let Ok(mut seen) = self.seen.lock() else { return false };
        let read = read(&self.path);
        if read.as_ref().is_ok_and(|t| *t == seen.0) || seen.1.as_ref() == Some(&read) {
            return false;
        }
        match read.clone().map_err(|e| vec![e]).and_then(|t| parse(&self.path, &t).map(|table| (t, table))) {
            Ok((text, table)) => {
                tracing::info!(callers = table.entries.len(), "callers file {} reloaded", self.path.display());
                self.table.store(Arc::new(table));
                *seen = (text, None);
                true
            }
            Err(errors) => {
                self.metrics.access.callers_reload_failures.fetch_add(1, Ordering::Relaxed);
                for e in errors {
                    tracing::error!("callers file not reloaded, the previous one still applies: {e}");
                }
                seen.1 = Some(read);
                false
            }
        }
    }

    /// Reloads every [`RELOAD_EVERY`](crate::tls::RELOAD_EVERY) for as long as the process runs.
    pub fn spawn_reload(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::tls::RELOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let me = this.clone();
                let _ = tokio::task::spawn_blocking(move || me.reload()).await;
            }
        });
    }
}

/// The file's text, at most [`MAX_FILE_BYTES`].
fn read(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() > MAX_FILE_BYTES {
        return Err(format!("{}: over {MAX_FILE_BYTES} bytes", path.display()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callers() -> Arc<Callers> {
        let table = parse(
            std::path::Path::new("callers.yaml"),
            "callers:
  - {id: dns:inbox.svc, tenants: [acme-*], apis: [check]}
  - {id: uid:1000, tenants: [\"*\"], apis: [\"*\"]}
",
        )
        .unwrap();
        Callers::fixed(table, Arc::default())
    }

    #[test]
    fn a_caller_is_admitted_to_its_apis_and_tenants_only() {
        let callers = callers();
        let inbox = Peer::new(vec!["spiffe://x".into(), "dns:inbox.svc".into()]);
        let admitted = callers.admit(&inbox, Some(Api::Check)).unwrap();
        assert_eq!(admitted.tenant("acme-eu"), Ok(()));
        assert_eq!(
            admitted.tenant("globex"),
            Err(Denied("caller `spiffe://x` may not ask about tenant `globex` (check API)".into()))
        );
        assert_eq!(
            callers.admit(&inbox, Some(Api::Inspect)).unwrap_err(),
            Denied("caller `spiffe://x` may not use the inspect API".into())
        );
        let root = callers.admit(&Peer::from_uid(1000), Some(Api::Inspect)).unwrap();
        assert_eq!(root.tenant("anything"), Ok(()));
    }

    #[test]
    fn strangers_and_unknown_methods_are_refused_but_probes_are_not() {
        let callers = callers();
        let stranger = Peer::from_uid(1001);
        assert_eq!(
            callers.admit(&stranger, Some(Api::Check)).unwrap_err(),
            Denied("caller `uid:1001` is not in the callers file".into())
        );
        assert!(callers.admit(&Peer::default(), Some(Api::Open)).is_ok());
        assert!(callers.admit(&Peer::from_uid(1000), None).is_err());
    }

    #[test]
    fn paths_map_to_api_groups() {
        assert_eq!(Api::from_path("/rolegate.v1.Authorizer/Check"), Some(Api::Check));
        assert_eq!(Api::from_path("/rolegate.v1.Authorizer/CheckBatch"), Some(Api::Check));
        assert_eq!(Api::from_path("/rolegate.v1.Authorizer/Plan"), Some(Api::Plan));
        assert_eq!(Api::from_path("/rolegate.v1.Inspector/Who"), Some(Api::Inspect));
        assert_eq!(Api::from_path("/grpc.health.v1.Health/Watch"), Some(Api::Open));
        assert_eq!(Api::from_path("/rolegate.v1.Authorizer/Export"), None);
        assert_eq!(Api::from_path("/rolegate.v1.Admin/Check"), None);
        assert_eq!(Api::from_path("nonsense"), None);
    }
}
