//! A sidecar following the stream. It holds a [`Follower`] (what it knows of each tenant, the
//! same as the PostgreSQL source) and feeds it from two places: the stream for every change, and
//! the snapshot database (a replica is fine) for the first load, a tenant whose change it missed
//! and a stream trimmed past it. The database connection is opened for those reads only and
//! closed when idle, so the database sees no listener per sidecar.
//!
//! Order: the stream's last sequence is noted before the first load, and the stream is read from
//! just after it; a change committed after the load is published after it, so nothing falls
//! between. Per tenant a change applies when the follower is at or past its `previous` and before
//! its `revision`; one already applied is skipped; anything else is a gap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use tokio_stream::StreamExt;

use super::{Body, Change, Config};
use crate::ReloadReport;
use crate::ondemand::{Request, Requests};
use crate::postgres::follow::read::Read;
use crate::postgres::follow::{FollowError, Follower, Session};
use crate::postgres::{self, Health};
use crate::store::Store;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The snapshot database connection is closed after this long unused.
const IDLE_DB: Duration = Duration::from_secs(10);

/// A sidecar's NATS source: changes from the stream, snapshots from PostgreSQL.
#[derive(Debug)]
pub struct NatsSource {
    /// The NATS servers, stream and bucket.
    pub nats: Config,
    /// Where snapshots are read: the database or a replica of it. Its `poll` is how often the
    /// stream's position is checked (the heartbeat behind the staleness metric).
    pub snapshot: postgres::Config,
    /// Freshness and the NATS connection, for `/metrics`.
    pub health: Arc<Health>,
}

impl crate::Source for NatsSource {
    fn describe(&self) -> String {
        format!("nats {} (snapshots from postgres {})", self.nats.describe(), self.snapshot.describe())
    }

    fn health(&self) -> Option<Arc<dyn crate::SourceHealth>> {
        Some(self.health.clone())
    }

    fn spawn(
        self: Box<Self>,
        store: Arc<Store>,
        on_reload: crate::OnReload,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let NatsSource { nats, snapshot, health } = *self;
        std::thread::Builder::new().name("rolegate-nats".into()).spawn(move || {
            let follower = Follower::new(snapshot.clone(), store, health.clone());
            let requests = follower.requests();
            let mut sidecar =
                Sidecar { nats, snapshot, health, follower, db: None, next: None, resync: true, requests };
            runtime.block_on(sidecar.run(on_reload))
        })
    }
}

/// Why following stopped; the sidecar reconnects after any of them.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("postgres: {0}")]
    Db(#[from] FollowError),
    #[error("nats: {0}")]
    Nats(String),
}

fn nats(e: impl std::fmt::Display) -> Error {
    Error::Nats(e.to_string())
}

struct Sidecar {
    nats: Config,
    snapshot: postgres::Config,
    health: Arc<Health>,
    follower: Follower,
    /// The snapshot database connection while in use, and when it was last used.
    db: Option<(Session, Instant)>,
    /// The next stream sequence to apply; `None` before the first load.
    next: Option<u64>,
    /// Every tenant must be compared with the database before the stream is trusted again: at
    /// the start, after a trimmed stream, after a failed read.
    resync: bool,
    /// Loads and evictions of tenants on demand.
    requests: Option<Requests>,
}

impl Sidecar {
    async fn run(&mut self, on_round: crate::OnReload) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let err = match self.follow(&*on_round, &mut backoff).await {
                Ok(never) => match never {},
                Err(e) => e,
            };
            self.health.set_connected(false);
            self.db = None;
            let message = match self.health.age() {
                Some(age) => format!(
                    "{err}; serving the last snapshot, {} s since it was known current; retrying in {} ms",
                    age.as_secs(),
                    backoff.as_millis()
                ),
                None => format!("{err}; not serving until the first load; retrying in {} ms", backoff.as_millis()),
            };
            on_round(&ReloadReport {
                unreadable: Some(message),
                stale: self.follower.stale(),
                ..ReloadReport::default()
            });
            self.wait(backoff, &err.to_string(), &*on_round).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn follow(
        &mut self,
        on_round: &(dyn Fn(&ReloadReport) + Send),
        backoff: &mut Duration,
    ) -> Result<std::convert::Infallible, Error> {
        // The stream's consumer lives on one server: after a reconnect it is read again from
        // where this sidecar stood, on a fresh connection.
        let (reconnect, mut reconnected) = tokio::sync::mpsc::unbounded_channel();
        let client = self.nats.connect(Some(reconnect)).await.map_err(nats)?;
        let js = jetstream::new(client);
        let mut stream = js.get_stream(&self.nats.stream).await.map_err(nats)?;
        let last = stream.info().await.map_err(nats)?.state.last_sequence;
        if self.resync {
            self.catch_up(None, on_round).await?;
        }
        let start = *self.next.get_or_insert(last + 1);
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: super::SUBJECTS.to_owned(),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: start },
                ..consumer::pull::OrderedConfig::default()
            })
            .await
            .map_err(nats)?;
        let mut messages = consumer.messages().await.map_err(nats)?;
        if self.health.set_connected(true) {
            tracing::info!(rolegate.source = "nats", "following nats {} from sequence {start}", self.nats.describe());
        }
        *backoff = MIN_BACKOFF;
        let period = self.snapshot.poll.max(postgres::follow::MIN_POLL);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let asked = async {
                match self.requests.as_mut() {
                    Some(rx) => rx.0.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(request) = asked => self.serve(request, on_round).await?,
                message = messages.next() => {
                    let message = message.ok_or_else(|| Error::Nats("the stream's consumer ended".to_owned()))?.map_err(nats)?;
                    let info = message.info().map_err(nats)?;
                    let (sequence, pending) = (info.stream_sequence, info.pending);
                    self.receive(sequence, &message.payload, on_round).await?;
                    if pending == 0 {
                        self.health.synced();
                    }
                }
                _ = reconnected.recv() => return Err(Error::Nats("connection lost and regained".to_owned())),
                _ = tick.tick() => {
                    let last = stream.info().await.map_err(nats)?.state.last_sequence;
                    if self.next.is_some_and(|n| last < n) {
                        self.health.synced();
                    }
                    if self.db.as_ref().is_some_and(|(_, used)| used.elapsed() >= IDLE_DB) {
                        self.db = None;
                    }
                }
            }
        }
    }

    /// Applies the message at `sequence` of the stream.
    async fn receive(
        &mut self,
        sequence: u64,
        payload: &[u8],
        on_round: &(dyn Fn(&ReloadReport) + Send),
    ) -> Result<(), Error> {
        let expected = self.next.unwrap_or(sequence);
        if sequence > expected {
            // Messages this sidecar never saw left the stream: compare every tenant with the database.
            tracing::info!(
                rolegate.source = "nats",
                "the stream was trimmed past sequence {expected}; catching up from postgres"
            );
            self.resync = true;
            self.catch_up(None, on_round).await?;
        }
        self.next = Some(sequence + 1);
        if sequence < expected {
            return Ok(());
        }
        let change: Change = match serde_json::from_slice(payload) {
            Ok(change) => change,
            Err(e) => {
                tracing::warn!(rolegate.source = "nats", "skipped message {sequence} of the stream: {e}");
                return Ok(());
            }
        };
        self.apply(change, on_round).await
    }

    /// Sleeps `pause` while disconnected; loads asked for meanwhile fail at once with `why`.
    async fn wait(&mut self, pause: Duration, why: &str, on_round: &(dyn Fn(&ReloadReport) + Send)) {
        let Some(mut rx) = self.requests.take() else { return tokio::time::sleep(pause).await };
        let until = tokio::time::sleep(pause);
        tokio::pin!(until);
        loop {
            tokio::select! {
                () = &mut until => break,
                Some(request) = rx.0.recv() => {
                    if let Some(report) = self.follower.refuse(request, why) {
                        on_round(&report);
                    }
                }
            }
        }
        self.requests = Some(rx);
    }

    /// Serves a load (from the snapshot database) or an eviction of tenants on demand.
    async fn serve(&mut self, request: Request, on_round: &(dyn Fn(&ReloadReport) + Send)) -> Result<(), Error> {
        let session = session(&mut self.db, &self.snapshot).await;
        let session = match session {
            Ok(session) => session,
            Err(e) => {
                if let Some(report) = self.follower.refuse(request, &e.to_string()) {
                    on_round(&report);
                }
                return Err(e);
            }
        };
        let report = self.follower.serve(session, request).await.inspect_err(|_| self.db = None)?;
        self.follower.settle(&report).await;
        on_round(&report);
        Ok(())
    }

    /// Applies one change, or reads its tenant from the database when the change cannot apply.
    async fn apply(&mut self, change: Change, on_round: &(dyn Fn(&ReloadReport) + Send)) -> Result<(), Error> {
        let Change { tenant, revision, previous, body } = change;
        let held = self.follower.held(&tenant);
        if held.is_none() && self.follower.on_demand() {
            // Not resident: its next call reads it from the database.
            return Ok(());
        }
        if held.is_some_and(|h| revision <= h.seen) {
            return Ok(());
        }
        let read = match body {
            Body::Members(members) if held.is_some_and(|h| h.incremental && previous <= h.seen) => {
                Read { revisions: [(tenant, revision)].into(), members: vec![members], ..Read::default() }
            }
            Body::Whole(rows) => {
                Read { revisions: [(tenant.clone(), revision)].into(), full: vec![tenant], rows, ..Read::default() }
            }
            Body::Members(_) | Body::Reload => {
                tracing::debug!(rolegate.tenant = tenant, "reading tenant from postgres at revision {revision}");
                return self.catch_up(Some(&[tenant]), on_round).await;
            }
        };
        let report = self.follower.apply(read);
        self.follower.settle(&report).await;
        on_round(&report);
        Ok(())
    }

    /// Reads `tenants` (every tenant when `None`) from the snapshot database.
    async fn catch_up(
        &mut self,
        tenants: Option<&[String]>,
        on_round: &(dyn Fn(&ReloadReport) + Send),
    ) -> Result<(), Error> {
        if tenants.is_none() {
            self.resync = true;
        }
        let on_demand = self.follower.on_demand();
        let session = session(&mut self.db, &self.snapshot).await?;
        let report = match tenants {
            None if on_demand => self.follower.check_resident(session).await,
            _ => self.follower.sync(session, tenants).await,
        };
        let report = report.inspect_err(|_| self.resync = true)?;
        self.follower.settle(&report).await;
        on_round(&report);
        if tenants.is_none() {
            self.resync = false;
            self.health.synced();
        }
        Ok(())
    }
}

/// The snapshot database connection, opened when needed.
async fn session<'a>(db: &'a mut Option<(Session, Instant)>, cfg: &postgres::Config) -> Result<&'a mut Session, Error> {
    let session = match db.take().filter(|(s, _)| !s.is_closed()) {
        Some((session, _)) => session,
        None => Session::open_reader(cfg).await?,
    };
    let (session, _) = db.insert((session, Instant::now()));
    Ok(session)
}
