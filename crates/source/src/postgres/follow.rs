//! Following the database. The follower loads every tenant, LISTENs on channel `rolegate`, and
//! on each notification reads the notified tenants' change-log rows after the last id it applied
//! for each: member and binding changes recompile only those members, any other change the whole
//! tenant. A periodic check that every tenant's revision is the one applied backs up lost
//! notifications. When the connection fails, the last snapshot keeps serving, the follower
//! reconnects with backoff and catches up from each tenant's last applied id.
//!
//! Each round reads in one repeatable-read transaction, so the rows a tenant is built from are
//! exactly those of the revision it is published at, on every sidecar.
//!
//! Rejected input never freezes a tenant: a member whose rows fail is served as invalid (denied
//! everything) while every other change applies; a rejected document, template or unit row
//! leaves the last good head in place and members keep compiling against it. Every round
//! reports the tenants served that way in [`ReloadReport::stale`].
//!
//! Revisions only grow. A revision below the one applied, a change log missing the change
//! applied last, or a tenant gone from `tenant_revisions` means the database was restored or
//! re-created: the tenant is reloaded whole (or removed).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::{Client, IsolationLevel};

use super::build::{self, Built, Head, Templates};
use super::rows::{BindingRow, MemberRow, Queries, TenantRow, TenantRows, UnitRow};
use super::{Config, Health};
use crate::store::Store;
use crate::{ReloadReport, Stale};
use rolegate_engine::Tenant;
use rolegate_policy::Diagnostic;

/// The notification channel the triggers notify.
pub const CHANNEL: &str = "rolegate";
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A round that takes longer than this is abandoned and the connection reopened.
const ROUND_TIMEOUT: Duration = Duration::from_secs(300);
/// The shortest interval between two digest checks, whatever `--reload-poll` says: a zero or
/// tiny interval would otherwise spin on the database.
pub const MIN_POLL: Duration = Duration::from_millis(100);
/// More changed members than this in one round reload the tenant whole.
const INCREMENTAL_LIMIT: usize = 10_000;

/// Why following stopped; the follower reconnects after any of them.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The database refused or failed a request.
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    /// The connection ended.
    #[error("the connection closed")]
    Closed,
    /// A round took too long.
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
}

/// One connection: its client, prepared statements and notifications.
pub struct Session {
    client: Client,
    queries: Queries,
    notes: UnboundedReceiver<Option<String>>,
}

impl Session {
    /// Connects, LISTENs and prepares the statements. Listening starts before anything is read,
    /// so no change committed after the first read can go unnoticed.
    pub async fn open(pg: &tokio_postgres::Config) -> Result<Session, FollowError> {
        let (client, notes) = super::connect(pg).await?;
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        let queries = Queries::prepare(&client).await?;
        Ok(Session { client, queries, notes })
    }

    /// Waits for notifications; returns every tenant notified so far, each once.
    pub async fn notified(&mut self) -> Result<Vec<String>, FollowError> {
        let mut tenants = vec![self.notes.recv().await.flatten().ok_or(FollowError::Closed)?];
        while let Ok(note) = self.notes.try_recv() {
            tenants.push(note.ok_or(FollowError::Closed)?);
        }
        tenants.sort_unstable();
        tenants.dedup();
        Ok(tenants)
    }
}

/// What the follower holds of one tenant.
#[derive(Debug, Default)]
struct Known {
    /// The last change id read for the tenant: its revision.
    seen: i64,
    /// What its members compile against: the last good head. Kept when a newer document,
    /// template or unit row is rejected, so that member changes (revocations above all) still
    /// apply on top of it; `None` when the tenant never loaded, failed whole or is gone, so that
    /// its next change reloads it whole.
    head: Option<Head>,
    /// Errors about its document, template or unit rows while they are rejected.
    bad_head: Vec<Diagnostic>,
    /// Members served as invalid (denied everything) until their rows are fixed, with the errors.
    bad_members: BTreeMap<String, Vec<Diagnostic>>,
}

impl Known {
    /// The tenant as served with rejected input, if it is.
    fn stale(&self, tenant: &str) -> Option<Stale> {
        let findings: Vec<String> =
            self.bad_head.iter().chain(self.bad_members.values().flatten()).map(ToString::to_string).collect();
        (!findings.is_empty()).then(|| Stale { tenant: tenant.to_owned(), why: findings.join("; ") })
    }
}

/// A tenant compiled in one round, and what it was compiled against.
struct Round {
    /// The head the members were compiled against.
    head: Option<Head>,
    /// Errors about a rejected head (the tenant was compiled against the last good one).
    bad_head: Vec<Diagnostic>,
    /// The tenant, or why none could be built.
    built: Result<Built, Vec<Diagnostic>>,
    /// Invalid members this round did not touch, still invalid.
    kept: BTreeMap<String, Vec<Diagnostic>>,
}

/// The rows one round read.
#[derive(Debug, Default)]
struct Read {
    /// The revision of every tenant to update.
    revisions: HashMap<String, i64>,
    /// Tenants read whole, and their rows.
    full: Vec<String>,
    rows: TenantRows,
    /// Tenants updated member by member.
    members: Vec<MemberRead>,
    /// Tenants held that the database no longer has a revision for (it was re-created).
    gone: Vec<String>,
}

/// The changed members of one tenant.
#[derive(Debug)]
struct MemberRead {
    tenant: String,
    /// Every changed member id; those without a row are gone.
    ids: Vec<String>,
    rows: Vec<MemberRow>,
    bindings: Vec<BindingRow>,
}

/// Follows one database into one store.
#[derive(Debug)]
pub struct Follower {
    cfg: Config,
    store: Arc<Store>,
    health: Arc<Health>,
    known: HashMap<String, Known>,
}

/// Starts a follower on its own thread (with its own runtime, so a large reload never slows
/// `Check`). `on_round` sees what every round did, including connection failures.
pub fn spawn(
    cfg: Config,
    store: Arc<Store>,
    health: Arc<Health>,
    on_round: impl Fn(&ReloadReport) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new()
        .name("rolegate-postgres".into())
        .spawn(move || runtime.block_on(Follower::new(cfg, store, health).run(on_round)))
}

impl Follower {
    /// A follower that has loaded nothing yet.
    pub fn new(cfg: Config, store: Arc<Store>, health: Arc<Health>) -> Self {
        Follower { cfg, store, health, known: HashMap::new() }
    }

    /// Connects, catches up and follows until the process exits, reconnecting after failures.
    pub async fn run(mut self, on_round: impl Fn(&ReloadReport)) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let err = match Session::open(&self.cfg.pg).await {
                Ok(mut session) => self.follow(&mut session, &on_round, &mut backoff).await,
                Err(e) => e,
            };
            self.health.set_connected(false);
            let db = self.cfg.describe();
            let message = match self.health.age() {
                Some(age) => format!(
                    "postgres {db}: {err}; serving the last snapshot, {} s since it was known current; retrying in {} ms",
                    age.as_secs(),
                    backoff.as_millis()
                ),
                None => format!(
                    "postgres {db}: {err}; not serving until the first load; retrying in {} ms",
                    backoff.as_millis()
                ),
            };
            on_round(&ReloadReport { unreadable: Some(message), stale: self.stale(), ..ReloadReport::default() });
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Catches up, then applies notifications and polls until the session fails.
    async fn follow(
        &mut self,
        session: &mut Session,
        on_round: &impl Fn(&ReloadReport),
        backoff: &mut Duration,
    ) -> FollowError {
        match self.sync(session, None).await {
            Ok(report) => on_round(&report),
            Err(e) => return e,
        }
        self.health.synced();
        if self.health.set_connected(true) {
            tracing::info!(rolegate.source = "postgres", "connected to postgres {}; caught up", self.cfg.describe());
        }
        *backoff = MIN_BACKOFF;
        let period = poll_period(self.cfg.poll);
        let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            enum Event {
                Notified(Result<Vec<String>, FollowError>),
                Poll,
            }
            let event = tokio::select! {
                notes = session.notified() => Event::Notified(notes),
                _ = poll.tick() => Event::Poll,
            };
            let round = match event {
                Event::Notified(Ok(tenants)) => self.sync(session, Some(&tenants)).await,
                Event::Notified(Err(e)) => Err(e),
                Event::Poll => self.poll(session).await,
            };
            match round {
                Ok(report) => {
                    on_round(&report);
                    self.health.synced();
                }
                Err(e) => return e,
            }
        }
    }

    /// The backstop for lost notifications: compares a digest of every tenant's revision with
    /// what was applied, and catches up when they differ.
    async fn poll(&mut self, session: &mut Session) -> Result<ReloadReport, FollowError> {
        let (count, sum) = session.queries.digest(&session.client).await?;
        let applied: i128 = self.known.values().map(|k| i128::from(k.seen)).sum();
        if count == self.known.len() as i64 && sum == applied.to_string() {
            return Ok(ReloadReport { stale: self.stale(), ..ReloadReport::default() });
        }
        tracing::debug!(rolegate.source = "postgres", "a change arrived without a notification; catching up");
        self.sync(session, None).await
    }

    /// Reads and applies the changes of `tenants` (every tenant when `None`) since the ids
    /// applied, and publishes the result. The first sync publishes even when there is nothing,
    /// so that readiness follows the first load.
    pub async fn sync(
        &mut self,
        session: &mut Session,
        tenants: Option<&[String]>,
    ) -> Result<ReloadReport, FollowError> {
        let read = tokio::time::timeout(ROUND_TIMEOUT, self.read(session, tenants))
            .await
            .map_err(|_| FollowError::Timeout(ROUND_TIMEOUT))??;
        Ok(self.apply(read))
    }

    async fn read(&self, session: &mut Session, tenants: Option<&[String]>) -> Result<Read, tokio_postgres::Error> {
        let Session { client, queries, .. } = session;
        let tx =
            client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
        let mut read = Read::default();
        // Per tenant read change by change: the last id applied, and whether its own log row
        // must still be there (it is unless pruned).
        let mut after: HashMap<String, (i64, bool)> = HashMap::new();
        let revisions = queries.revisions(&tx, tenants).await?;
        if tenants.is_none() {
            let listed: HashSet<&str> = revisions.iter().map(|r| r.tenant.as_str()).collect();
            read.gone = self.known.keys().filter(|t| !listed.contains(t.as_str())).cloned().collect();
        }
        for r in revisions {
            match self.known.get(&r.tenant) {
                Some(k) if k.seen == r.revision => continue,
                // Revisions only grow: a lower one means the database was restored or re-created.
                Some(k) if k.seen > r.revision => read.full.push(r.tenant.clone()),
                Some(k) if k.head.is_some() && r.pruned_to <= k.seen => {
                    after.insert(r.tenant.clone(), (k.seen, r.pruned_to < k.seen));
                }
                _ => read.full.push(r.tenant.clone()),
            }
            read.revisions.insert(r.tenant, r.revision);
        }
        for (tenant, ids) in changed_members(queries, &tx, &after).await? {
            match ids {
                Some(ids) if !ids.is_empty() && ids.len() <= INCREMENTAL_LIMIT => {
                    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                    let (members, bindings) = queries.members(&tx, &tenant, &refs).await?;
                    read.members.push(MemberRead { tenant, ids: ids.into_iter().collect(), rows: members, bindings });
                }
                _ => read.full.push(tenant),
            }
        }
        if !read.full.is_empty() {
            read.full.sort_unstable();
            read.rows = queries.tenants(&tx, &read.full).await?;
        }
        tx.commit().await?;
        Ok(read)
    }

    /// Compiles what was read and publishes every tenant that changed in one snapshot.
    fn apply(&mut self, read: Read) -> ReloadReport {
        let mut report = ReloadReport::default();
        let snapshot = self.store.load();
        let served = |name: &str| snapshot.as_ref().is_some_and(|s| s.tenant(name).is_some());
        let mut fresh: Vec<Arc<Tenant>> = Vec::new();
        let mut removed: Vec<String> = read.gone.iter().filter(|name| served(name)).cloned().collect();
        for name in &read.gone {
            self.known.remove(name);
        }

        let rows = &read.rows;
        let templates = build::templates(&rows.templates);
        let units = group(&rows.units, |u| &u.tenant);
        let members = group(&rows.members, |m| &m.tenant);
        let bindings = group(&rows.bindings, |b| &b.tenant);
        let tenant_rows: HashMap<&str, &TenantRow> = rows.tenants.iter().map(|t| (t.id.as_str(), t)).collect();
        let no_bindings = Vec::new();
        for name in &read.full {
            let revision = read.revisions.get(name).copied().unwrap_or_default();
            let Some(row) = tenant_rows.get(name.as_str()) else {
                if served(name) {
                    removed.push(name.clone());
                }
                self.known.insert(name.clone(), Known { seen: revision, ..Known::default() });
                continue;
            };
            let by_member = group(bindings.get(name.as_str()).unwrap_or(&no_bindings).iter().copied(), |b| &b.member);
            let rows = Rows {
                row,
                units: units.get(name.as_str()).map_or(&[], Vec::as_slice),
                members: members.get(name.as_str()).map_or(&[], Vec::as_slice),
                bindings: &by_member,
                templates: &templates,
            };
            let round = self.whole(&mut report, name, &rows, revision as u64);
            self.record(&mut report, &mut fresh, name, revision, round);
        }

        for read_members in &read.members {
            let name = &read_members.tenant;
            let revision = read.revisions.get(name).copied().unwrap_or_default();
            let base = snapshot.as_ref().and_then(|s| s.tenant(name));
            match self.members(read_members, base, revision as u64) {
                Some(round) => self.record(&mut report, &mut fresh, name, revision, round),
                // Not held after all: reload it whole at the next round.
                None => drop(self.known.insert(name.clone(), Known::default())),
            }
        }

        let first = snapshot.is_none();
        if first || !fresh.is_empty() || !removed.is_empty() {
            self.store.apply(&removed, fresh);
        }
        report.removed = removed;
        report.stale = self.stale();
        report
    }

    /// Builds a tenant read whole. A rejected document, template or unit row leaves the last
    /// good head in place: the members are compiled against it, so their changes still apply.
    fn whole(&self, report: &mut ReloadReport, name: &str, rows: &Rows<'_>, revision: u64) -> Round {
        let head = build::head(rows.row, rows.units, rows.templates)
            .and_then(|head| build::base(&head, revision).map(|base| (head, base)));
        let (head, base, bad_head) = match head {
            Ok((head, base)) => (head, base, Vec::new()),
            Err(diags) => {
                let last_good = self.known.get(name).and_then(|k| k.head.clone());
                let Some((head, base)) = last_good.and_then(|h| build::base(&h, revision).ok().map(|b| (h, b))) else {
                    return Round { head: None, bad_head: Vec::new(), built: Err(diags), kept: BTreeMap::new() };
                };
                report.errors.extend(diags.iter().filter(|d| d.is_error()).cloned());
                (head, base, diags.into_iter().filter(Diagnostic::is_error).collect())
            }
        };
        let built = build::update(&head, &base, rows.members, &[], rows.bindings, revision);
        Round { head: Some(head), bad_head, built, kept: BTreeMap::new() }
    }

    /// Applies one tenant's changed members to its served snapshot; `None` when it is not held.
    fn members(&self, read: &MemberRead, base: Option<&Arc<Tenant>>, revision: u64) -> Option<Round> {
        let known = self.known.get(&read.tenant)?;
        let head = known.head.clone()?;
        let base = base?;
        let present: HashSet<&str> = read.rows.iter().map(|r| r.id.as_str()).collect();
        let gone: Vec<&str> = read.ids.iter().map(String::as_str).filter(|id| !present.contains(id)).collect();
        let put: Vec<&MemberRow> = read.rows.iter().collect();
        let by_member = group(&read.bindings, |b| &b.member);
        let built = build::update(&head, base, &put, &gone, &by_member, revision);
        let mut kept = known.bad_members.clone();
        kept.retain(|id, _| !read.ids.contains(id));
        Some(Round { head: Some(head), bad_head: known.bad_head.clone(), built, kept })
    }

    /// Records what a round made of one tenant: a tenant to publish, the rows it rejected.
    fn record(&mut self, report: &mut ReloadReport, fresh: &mut Vec<Arc<Tenant>>, name: &str, seen: i64, round: Round) {
        let Round { head, bad_head, built, kept } = round;
        let rejected = match &built {
            Ok(b) => b.rejected.values().flatten().cloned().collect(),
            Err(diags) => diags.clone(),
        };
        if !rejected.is_empty() || !bad_head.is_empty() {
            report.failed.push(name.to_owned());
        }
        report.errors.extend(rejected.iter().filter(|d| d.is_error()).cloned());
        let known = match built {
            Ok(Built { tenant, rejected }) => {
                report.applied.push((name.to_owned(), seen as u64));
                fresh.push(Arc::new(tenant));
                let mut bad_members = kept;
                bad_members.extend(rejected);
                Known { seen, head, bad_head, bad_members }
            }
            Err(diags) => {
                Known { seen, bad_head: diags.into_iter().filter(Diagnostic::is_error).collect(), ..Known::default() }
            }
        };
        self.known.insert(name.to_owned(), known);
    }

    /// Every tenant served with rejected input now, by name.
    fn stale(&self) -> Vec<Stale> {
        let mut stale: Vec<Stale> = self.known.iter().filter_map(|(name, k)| k.stale(name)).collect();
        stale.sort_unstable_by(|a, b| a.tenant.cmp(&b.tenant));
        stale
    }
}

/// The rows of one tenant read whole.
struct Rows<'a> {
    row: &'a TenantRow,
    units: &'a [&'a UnitRow],
    members: &'a [&'a MemberRow],
    bindings: &'a HashMap<&'a str, Vec<&'a BindingRow>>,
    templates: &'a Templates,
}

/// The members changed in each tenant of `after` since the id given for it; `None` for a tenant
/// to reload whole (a change other than a member or binding, or a history that no longer holds
/// the change last applied: the database was restored).
async fn changed_members(
    queries: &Queries,
    tx: &tokio_postgres::Transaction<'_>,
    after: &HashMap<String, (i64, bool)>,
) -> Result<HashMap<String, Option<BTreeSet<String>>>, tokio_postgres::Error> {
    let mut keys: HashMap<String, Option<BTreeSet<String>>> =
        after.keys().map(|t| (t.clone(), Some(BTreeSet::new()))).collect();
    if after.is_empty() {
        return Ok(keys);
    }
    let mut unanchored: HashSet<&str> = after.iter().filter(|(_, a)| a.1).map(|(t, _)| t.as_str()).collect();
    let since: Vec<(String, i64)> = after.iter().map(|(t, (seen, _))| (t.clone(), *seen)).collect();
    for c in queries.changes(tx, &since).await? {
        let (Some(slot), Some((seen, _))) = (keys.get_mut(&c.tenant), after.get(&c.tenant)) else { continue };
        if c.id == *seen {
            unanchored.remove(c.tenant.as_str());
            continue;
        }
        match (c.kind.as_str(), slot.as_mut()) {
            ("member" | "binding", Some(ids)) => {
                ids.insert(c.key);
            }
            _ => *slot = None,
        }
    }
    for tenant in unanchored {
        keys.insert(tenant.to_owned(), None);
    }
    Ok(keys)
}

/// Groups rows by a key, keeping their order.
fn group<'a, T: 'a>(
    items: impl IntoIterator<Item = &'a T>,
    key: impl Fn(&'a T) -> &'a str,
) -> HashMap<&'a str, Vec<&'a T>> {
    let mut out: HashMap<&str, Vec<&T>> = HashMap::new();
    for item in items {
        out.entry(key(item)).or_default().push(item);
    }
    out
}

/// The digest-check interval for a configured `poll`: never below [`MIN_POLL`].
fn poll_period(poll: Duration) -> Duration {
    poll.max(MIN_POLL)
}

/// `d` ± 20%, so that sidecars that lost the database together do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    d.mul_f64(0.8 + f64::from(nanos % 1000) / 2500.0)
}
