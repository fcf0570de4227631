//! Following the database. The follower loads every tenant, LISTENs on its schema's channel
//! (`rolegate` for the live policy), and on each notification reads the notified tenants'
//! change-log rows after the last id it applied for each: member and binding changes recompile
//! only those members, any other change the whole tenant. A periodic check that every tenant's
//! revision is the one applied backs up lost notifications. When the connection fails, the last snapshot keeps serving, the follower
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

mod apply;
pub mod read;
mod resident;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::Client;

use super::rows::Queries;
use super::{Config, Health};
use crate::ReloadReport;
use crate::ondemand::{Request, Requests};
use crate::store::Store;
use apply::Known;

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
    pub async fn open(cfg: &Config) -> Result<Session, FollowError> {
        let (client, notes) = super::connect(cfg).await?;
        client.batch_execute(&format!("LISTEN {}", cfg.schema.ident())).await?;
        let queries = Queries::prepare(&client, &cfg.schema).await?;
        Ok(Session { client, queries, notes })
    }

    /// Connects and prepares the statements without listening: for reading snapshots only, as
    /// a hot standby allows.
    pub async fn open_reader(cfg: &Config) -> Result<Session, FollowError> {
        let (client, notes) = super::connect(cfg).await?;
        let queries = Queries::prepare(&client, &cfg.schema).await?;
        Ok(Session { client, queries, notes })
    }

    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Every tenant's revision, or only those of `tenants`.
    pub async fn revisions(&self, tenants: Option<&[String]>) -> Result<Vec<super::rows::RevisionRow>, FollowError> {
        Ok(self.queries.revisions(&self.client, tenants).await?)
    }

    /// The number of tenants with a revision and the sum of their revisions, as text.
    pub async fn digest(&self) -> Result<(i64, String), FollowError> {
        Ok(self.queries.digest(&self.client).await?)
    }

    /// Reads what changed for `tenants` (every tenant when `None`) since what `held` says of
    /// each, within the round timeout.
    pub async fn read(
        &mut self,
        tenants: Option<&[String]>,
        held: impl Fn(&str) -> Option<read::Held>,
        all_held: impl FnOnce() -> Vec<String>,
    ) -> Result<read::Read, FollowError> {
        tokio::time::timeout(ROUND_TIMEOUT, read::read(self, tenants, held, all_held))
            .await
            .map_err(|_| FollowError::Timeout(ROUND_TIMEOUT))?
            .map_err(FollowError::Db)
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
    /// What the follower holds of `tenant`, if anything.
    pub fn held(&self, tenant: &str) -> Option<read::Held> {
        self.known.get(tenant).map(|k| read::Held { seen: k.seen, incremental: k.head.is_some() })
    }

    /// Forgets `tenant` (no longer served), so that its next load reads it whole.
    pub fn forget(&mut self, tenant: &str) {
        self.known.remove(tenant);
    }

    /// The store the follower publishes into.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// A follower that has loaded nothing yet.
    pub fn new(cfg: Config, store: Arc<Store>, health: Arc<Health>) -> Self {
        Follower { cfg, store, health, known: HashMap::new() }
    }

    /// Connects, catches up and follows until the process exits, reconnecting after failures.
    pub async fn run(mut self, on_round: impl Fn(&ReloadReport)) {
        let mut backoff = MIN_BACKOFF;
        let mut requests = self.requests();
        loop {
            let err = match Session::open(&self.cfg).await {
                Ok(mut session) => self.follow(&mut session, &on_round, &mut backoff, &mut requests).await,
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
            self.wait(jitter(backoff), &mut requests, &format!("postgres {db}: {err}"), &on_round).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Sleeps `pause` while disconnected; loads asked for meanwhile fail at once with `why`.
    async fn wait(
        &mut self,
        pause: Duration,
        requests: &mut Option<Requests>,
        why: &str,
        on_round: &impl Fn(&ReloadReport),
    ) {
        let Some(rx) = requests.as_mut() else { return tokio::time::sleep(pause).await };
        let until = tokio::time::sleep(pause);
        tokio::pin!(until);
        loop {
            tokio::select! {
                () = &mut until => return,
                Some(request) = rx.0.recv() => {
                    if let Some(report) = self.refuse(request, why) {
                        on_round(&report);
                    }
                }
            }
        }
    }

    /// Catches up, then applies notifications and polls until the session fails.
    async fn follow(
        &mut self,
        session: &mut Session,
        on_round: &impl Fn(&ReloadReport),
        backoff: &mut Duration,
        requests: &mut Option<Requests>,
    ) -> FollowError {
        let first = if self.on_demand() { self.check_resident(session).await } else { self.sync(session, None).await };
        match first {
            Ok(report) => {
                self.settle(&report).await;
                on_round(&report);
            }
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
                Asked(Request),
            }
            let asked = async {
                match requests.as_mut() {
                    Some(rx) => rx.0.recv().await,
                    None => std::future::pending().await,
                }
            };
            let event = tokio::select! {
                notes = session.notified() => Event::Notified(notes),
                _ = poll.tick() => Event::Poll,
                Some(request) = asked => Event::Asked(request),
            };
            let round = match event {
                Event::Notified(Ok(tenants)) => {
                    let tenants = self.to_follow(tenants);
                    if tenants.is_empty() {
                        continue;
                    }
                    self.sync(session, Some(&tenants)).await
                }
                Event::Notified(Err(e)) => Err(e),
                Event::Poll if self.on_demand() => self.check_resident(session).await,
                Event::Poll => self.poll(session).await,
                Event::Asked(request) => self.serve(session, request).await,
            };
            match round {
                Ok(report) => {
                    self.settle(&report).await;
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
        // A tenant read whole (every tenant at the first sync; one whose history no longer
        // reaches the change last applied, or whose head changed, later) had all its rows
        // parsed: give back what that took, also when only one tenant was notified.
        let whole = tenants.is_none() || !read.full.is_empty();
        // A member round replaces its tenant by a copy with the change applied: once a large
        // tenant's old copy is dropped, hand its pages back too, or each change of one member
        // leaves the process holding about one more compiled tenant.
        let snapshot = self.store.load();
        let large = |name: &str| {
            snapshot
                .as_ref()
                .and_then(|s| s.tenant(name))
                .is_some_and(|t| t.member_count() >= crate::trim::TRIM_AFTER_MEMBERS)
        };
        let replaced_large = read.members.iter().any(|m| large(&m.tenant));
        drop(snapshot);
        let report = self.apply(read);
        if whole || replaced_large {
            crate::trim::release_freed_memory();
        }
        Ok(report)
    }
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
