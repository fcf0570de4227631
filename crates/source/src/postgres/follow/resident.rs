//! Tenants on demand ([`crate::ondemand`]) as the follower carries them out: it holds only the
//! resident tenants, loads one when a call asks, drops one when the bound evicts it, and follows
//! changes of resident tenants only. Loads, evictions and changes run one after the other on the
//! follower's thread, so a tenant is never served without its changes being followed.

use std::collections::{HashMap, HashSet};

use tokio::sync::oneshot;

use super::{FollowError, Follower, Session};
use crate::ReloadReport;
use crate::ondemand::{Loaded, Request, Requests, Resident};

/// Diagnostics quoted in a failed load's message.
const QUOTED_ERRORS: usize = 3;

impl Follower {
    /// True with tenants on demand.
    pub fn on_demand(&self) -> bool {
        self.store.resident_set().is_some()
    }

    /// The load and eviction requests of tenants on demand, taken once by the thread that
    /// serves them.
    pub fn requests(&self) -> Option<Requests> {
        self.store.take_requests()
    }

    /// The tenants held (resident, with tenants on demand).
    pub fn held_tenants(&self) -> Vec<String> {
        self.known.keys().cloned().collect()
    }

    /// Of `tenants` notified, those to follow: every one, or with tenants on demand only the
    /// resident ones.
    pub fn to_follow(&self, mut tenants: Vec<String>) -> Vec<String> {
        if self.on_demand() {
            tenants.retain(|t| self.known.contains_key(t));
        }
        tenants
    }

    /// Serves one request of tenants on demand: a load reads the tenant now (the database's
    /// failure is the caller's answer and ends the session), an eviction drops it.
    pub async fn serve(&mut self, session: &mut Session, request: Request) -> Result<ReloadReport, FollowError> {
        match request {
            Request::Load { tenant, reply } => self.load(session, tenant, reply).await,
            Request::Evict(tenant) => Ok(self.evict(&tenant)),
        }
    }

    /// Serves a request while the database is unreachable: loads fail at once, evictions apply.
    pub fn refuse(&mut self, request: Request, why: &str) -> Option<ReloadReport> {
        match request {
            Request::Load { tenant, reply } => {
                tracing::debug!(rolegate.tenant = tenant, "cannot load tenant: {why}");
                let _ = reply.send(Err(why.to_owned()));
                None
            }
            Request::Evict(tenant) => Some(self.evict(&tenant)),
        }
    }

    async fn load(
        &mut self,
        session: &mut Session,
        tenant: String,
        reply: oneshot::Sender<Result<Loaded, String>>,
    ) -> Result<ReloadReport, FollowError> {
        let round = self.sync(session, Some(std::slice::from_ref(&tenant))).await;
        let answer = match &round {
            Err(e) => Err(format!("postgres: {e}")),
            Ok(report) => self.loaded(&tenant, report),
        };
        let resident = matches!(answer, Ok(Loaded::Resident(_)));
        if reply.send(answer).is_err() && resident {
            // Every call that waited gave up (its deadline passed): nothing weighs the tenant
            // against the bound, so it is not kept; its next call loads it again.
            self.evict(&tenant);
        }
        round
    }

    /// What a load of `tenant` found. A tenant read but not served (not in the database, or
    /// failing to compile) is not held: its next call reads it again.
    fn loaded(&mut self, tenant: &str, report: &ReloadReport) -> Result<Loaded, String> {
        if let Some(t) = self.store.load().and_then(|s| s.tenant(tenant).cloned()) {
            return Ok(Loaded::Resident(Resident::new(t)));
        }
        self.known.remove(tenant);
        if !report.failed.iter().any(|f| f == tenant) {
            return Ok(Loaded::Unknown);
        }
        let errors: Vec<String> = report.errors.iter().take(QUOTED_ERRORS).map(ToString::to_string).collect();
        Err(format!("its policy does not compile: {}", errors.join("; ")))
    }

    /// Stops serving and following `tenant`.
    pub fn evict(&mut self, tenant: &str) -> ReloadReport {
        self.known.remove(tenant);
        let served = self.store.load().is_some_and(|s| s.tenant(tenant).is_some());
        if served {
            self.store.apply(&[tenant.to_owned()], Vec::new());
        }
        ReloadReport { stale: self.stale(), ..ReloadReport::default() }
    }

    /// With tenants on demand, after a round: resident tenants that changed are weighed again,
    /// those the database no longer has are forgotten.
    pub async fn settle(&mut self, report: &ReloadReport) {
        let Some(on_demand) = self.store.resident_set() else { return };
        let snapshot = self.store.load();
        for (name, _) in &report.applied {
            if let Some(t) = snapshot.as_ref().and_then(|s| s.tenant(name)) {
                on_demand.changed(t.clone()).await;
            }
        }
        for name in &report.removed {
            self.known.remove(name);
            on_demand.forget(name).await;
        }
    }

    /// The backstop for lost notifications with tenants on demand: compares each resident
    /// tenant's revision with the database, reads those that differ and drops those the
    /// database no longer has. The first round publishes even when nothing is resident, so
    /// that readiness follows the first connection.
    pub async fn check_resident(&mut self, session: &mut Session) -> Result<ReloadReport, FollowError> {
        let held = self.held_tenants();
        let rows = session.revisions(Some(&held)).await?;
        let listed: HashMap<&str, i64> = rows.iter().map(|r| (r.tenant.as_str(), r.revision)).collect();
        let gone: Vec<String> = held.iter().filter(|t| !listed.contains_key(t.as_str())).cloned().collect();
        let changed: Vec<String> = held
            .iter()
            .filter(|t| listed.get(t.as_str()).is_some_and(|r| self.known.get(*t).is_some_and(|k| k.seen != *r)))
            .cloned()
            .collect();
        let gone_set: HashSet<&String> = gone.iter().collect();
        let mut report = if changed.is_empty() && self.store.is_loaded() {
            ReloadReport { stale: self.stale(), ..ReloadReport::default() }
        } else {
            self.sync(session, Some(&changed)).await?
        };
        for name in gone_set {
            self.evict(name);
            report.removed.push(name.clone());
        }
        Ok(report)
    }
}
