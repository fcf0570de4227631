//! Following the database. The follower loads every tenant, LISTENs on channel `rolegate`, and
//! on each notification reads the notified tenants' change-log rows after the last id it applied
//! for each: member and binding changes recompile only those members, any other change the whole
//! tenant. A periodic check that every tenant's revision is the one applied backs up lost
//! notifications. When the connection fails, the last snapshot keeps serving, the follower
//! reconnects with backoff and catches up from each tenant's last applied id.
//!
//! Each round reads in one repeatable-read transaction, so the rows a tenant is built from are
//! exactly those of the revision it is published at, on every sidecar.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::{Client, IsolationLevel};

use super::build::{self, Head};
use super::rows::{BindingRow, MemberRow, Queries, TenantRow, TenantRows};
use super::{Config, Health};
use crate::ReloadReport;
use crate::store::Store;
use rolegate_engine::Tenant;

/// The notification channel the triggers notify.
pub const CHANNEL: &str = "rolegate";
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A round that takes longer than this is abandoned and the connection reopened.
const ROUND_TIMEOUT: Duration = Duration::from_secs(300);
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
#[derive(Debug)]
struct Known {
    /// The last change id read for the tenant (its revision when the tenant is good).
    seen: i64,
    /// What its members compile against; `None` when the tenant failed or is gone, so that its
    /// next change reloads it whole.
    head: Option<Head>,
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
            on_round(&ReloadReport { unreadable: Some(message), ..ReloadReport::default() });
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
        let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + self.cfg.poll, self.cfg.poll);
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
            return Ok(ReloadReport::default());
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
        let mut after = Vec::new();
        for r in queries.revisions(&tx, tenants).await? {
            match self.known.get(&r.tenant) {
                Some(k) if k.seen >= r.revision => continue,
                Some(k) if k.head.is_some() && r.pruned_to <= k.seen => after.push((r.tenant.clone(), k.seen)),
                _ => read.full.push(r.tenant.clone()),
            }
            read.revisions.insert(r.tenant, r.revision);
        }
        let mut keys: HashMap<String, Option<BTreeSet<String>>> =
            after.iter().map(|(t, _)| (t.clone(), Some(BTreeSet::new()))).collect();
        if !after.is_empty() {
            for c in queries.changes(&tx, &after).await? {
                let Some(slot) = keys.get_mut(&c.tenant) else { continue };
                match (c.kind.as_str(), slot.as_mut()) {
                    ("member" | "binding", Some(ids)) => {
                        ids.insert(c.key);
                    }
                    _ => *slot = None,
                }
            }
        }
        for (tenant, ids) in keys {
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
        let mut fresh: Vec<Arc<Tenant>> = Vec::new();
        let mut outcome = |known: &mut HashMap<String, Known>, name: &str, seen: i64, built| match built {
            Ok((head, tenant)) => {
                report.applied.push((name.to_owned(), seen as u64));
                fresh.push(Arc::new(tenant));
                known.insert(name.to_owned(), Known { seen, head: Some(head) });
            }
            Err(diags) => {
                report.failed.push(name.to_owned());
                report.errors.extend(diags);
                known.insert(name.to_owned(), Known { seen, head: None });
            }
        };

        let rows = &read.rows;
        let templates = build::templates(&rows.templates);
        let units = group(&rows.units, |u| &u.tenant);
        let members = group(&rows.members, |m| &m.tenant);
        let bindings = group(&rows.bindings, |b| &b.tenant);
        let tenant_rows: HashMap<&str, &TenantRow> = rows.tenants.iter().map(|t| (t.id.as_str(), t)).collect();
        let no_bindings = Vec::new();
        let mut removed = Vec::new();
        for name in &read.full {
            let revision = read.revisions.get(name).copied().unwrap_or_default();
            let Some(row) = tenant_rows.get(name.as_str()) else {
                if snapshot.as_ref().is_some_and(|s| s.tenant(name).is_some()) {
                    removed.push(name.clone());
                }
                self.known.insert(name.clone(), Known { seen: revision, head: None });
                continue;
            };
            let by_member = group(bindings.get(name.as_str()).unwrap_or(&no_bindings).iter().copied(), |b| &b.member);
            let built =
                build::head(row, units.get(name.as_str()).map_or(&[], Vec::as_slice), &templates).and_then(|head| {
                    let members = members.get(name.as_str()).map_or(&[][..], Vec::as_slice);
                    build::tenant(&head, members, &by_member, revision as u64).map(|t| (head, t))
                });
            outcome(&mut self.known, name, revision, built);
        }

        for MemberRead { tenant: name, ids, rows: member_rows, bindings: binding_rows } in &read.members {
            let revision = read.revisions.get(name).copied().unwrap_or_default();
            let base = snapshot.as_ref().and_then(|s| s.tenant(name));
            let Some((head, base)) = self.known.get(name).and_then(|k| k.head.clone()).zip(base) else {
                // Not held after all: reload it whole at the next round.
                self.known.insert(name.clone(), Known { seen: 0, head: None });
                continue;
            };
            let present: HashSet<&str> = member_rows.iter().map(|r| r.id.as_str()).collect();
            let gone: Vec<&str> = ids.iter().map(String::as_str).filter(|id| !present.contains(id)).collect();
            let put: Vec<&MemberRow> = member_rows.iter().collect();
            let by_member = group(binding_rows, |b| &b.member);
            let built = build::update(&head, base, &put, &gone, &by_member, revision as u64).map(|t| (head, t));
            outcome(&mut self.known, name, revision, built);
        }

        let first = snapshot.is_none();
        if first || !fresh.is_empty() || !removed.is_empty() {
            self.store.apply(&removed, fresh);
        }
        report.removed = removed;
        report
    }
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

/// `d` ± 20%, so that sidecars that lost the database together do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    d.mul_f64(0.8 + f64::from(nanos % 1000) / 2500.0)
}
