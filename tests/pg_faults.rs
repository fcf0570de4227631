//! PostgreSQL faults under a serving sidecar, against real PostgreSQL servers: the database
//! killed with SIGKILL and restarted, stopped with SIGSTOP and continued, the sidecar's
//! connections terminated by the server, the change log pruned past a sidecar, a migration
//! applied while it runs, and a storm of notifications. Throughout each, a caller asks the sidecar
//! without pause; for every fault:
//!
//! - no call fails: the sidecar answers from its last snapshot;
//! - it reports the outage (`rolegate_source_connected` 0, `rolegate_snapshot_age_seconds`
//!   growing) while it lasts;
//! - once it has caught up, it never allows what the database revoked: every answer at a revision
//!   at or after the revocation is a deny;
//! - it catches up within one reconnect; the time it took is printed (`caught up in`), and
//!   RELIABILITY.md records it.
//!
//! Needs `ROLEGATE_TEST_PG` (see `support::pg`). `ROLEGATE_FAULT_STOP_SECS` sets how long the
//! database stays stopped (default 5; the recorded run used 30).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rolegate::api;
use support::pg::{self, Cluster, Proxy, pg_addr};
use support::server::{Server, reply};
use support::wait_until;
use tokio::sync::Mutex;

const CONNECTED: &str = "rolegate_source_connected{source=\"postgres\"}";
const CONNECTS: &str = "rolegate_source_connects_total{source=\"postgres\"}";
const AGE: &str = "rolegate_snapshot_age_seconds{source=\"postgres\"}";
const FLAGS: &[&str] = &["--reload-poll", "300ms", "--admin-listen", "127.0.0.1:0"];
const REVOKE: &str = "UPDATE rolegate.members SET status = 'disabled' WHERE tenant = 'desk' AND id = 'rep'";

/// Every answer a caller got while a fault ran: (allowed, revision), and the calls that failed.
#[derive(Default)]
struct Answers {
    seen: Vec<(bool, u64)>,
    errors: Vec<String>,
}

/// A caller asking `rep`'s reply without pause until stopped.
struct Caller {
    answers: Arc<Mutex<Answers>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Caller {
    async fn start(server: &Server) -> Caller {
        let mut client = server.client().await;
        let answers: Arc<Mutex<Answers>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (answers.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let answer = client.check(reply("rep", 0)).await;
                let mut a = a.lock().await;
                match answer {
                    Ok(r) => {
                        let r = r.into_inner();
                        a.seen.push((r.decision.is_some_and(|d| d.allowed), r.revision));
                    }
                    Err(e) => a.errors.push(format!("{:?}: {}", e.code(), e.message())),
                }
                drop(a);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Caller { answers, stop, task }
    }

    /// Waits (up to 10 s) for an answer at `revoked` or later, stops, and checks: no error, every
    /// answer before `revoked` allowed, every answer at or after it denied. Returns how many
    /// answers there were.
    async fn finish(self, what: &str, revoked: u64) -> usize {
        // The test has seen `revoked` on its own connection; the caller's call in flight then may
        // have been answered before it. Let the caller make its next calls before stopping it.
        let answers = self.answers.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !answers.lock().await.seen.iter().any(|(_, r)| *r >= revoked) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let a = self.answers.lock().await;
        assert!(a.errors.is_empty(), "{what}: {} calls failed, first: {}", a.errors.len(), a.errors[0]);
        for (allowed, revision) in &a.seen {
            let want = *revision < revoked;
            assert_eq!(*allowed, want, "{what}: allowed={allowed} at revision {revision} (revoked at {revoked})");
        }
        assert!(a.seen.iter().any(|(_, r)| *r >= revoked), "{what}: the caller never saw the revocation");
        println!("{what}: {} answers, 0 errors, 0 wrong", a.seen.len());
        a.seen.len()
    }
}

/// Waits until `server` answers at `revision` or later, and returns how long that took.
async fn caught_up(what: &str, server: &Server, revision: u64, within: Duration) -> Duration {
    let started = Instant::now();
    let mut client = server.client().await;
    wait_until(&format!("{what}: revision {revision}"), within, async || {
        let r = client.check(reply("rep", 0)).await.ok()?.into_inner();
        (r.revision >= revision).then_some(())
    })
    .await;
    let took = started.elapsed();
    println!("{what}: caught up in {} ms", took.as_millis());
    took
}

async fn metric_until(server: &Server, what: &str, series: &str, done: impl Fn(f64) -> bool) -> f64 {
    wait_until(&format!("{what}: {series}"), Duration::from_secs(30), async || {
        let v = server.metric(series).await;
        done(v).then_some(v)
    })
    .await
}

/// A sidecar on a fresh database of `cluster` with the desk tenant, ready, with a caller running.
async fn desk_on(dsn: &str) -> (Server, Caller) {
    let db = pg::connect(dsn).await;
    pg::desk(&db, "desk").await;
    let server = Server::start_postgres(dsn, FLAGS);
    server.ready().await;
    let caller = Caller::start(&server).await;
    (server, caller)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_database_restarted_is_caught_up_with_no_failed_call() {
    if pg::server().is_none() {
        return;
    }
    let cluster = Cluster::start("fault-kill");
    let dsn = pg::fresh(&cluster.dsn, "fault_kill").await;
    let (server, caller) = desk_on(&dsn).await;
    let connects = server.metric(CONNECTS).await;

    cluster.kill();
    metric_until(&server, "killed", CONNECTED, |v| v == 0.0).await;
    let age = metric_until(&server, "killed", AGE, |v| v > 0.5).await;
    assert!(age > 0.5, "the snapshot age grows while the database is gone");

    // pg_ctl start recovers the crashed data directory.
    cluster.pg_sh("start");
    let mut db = pg::connect(&dsn).await;
    let revoked = pg::write(&mut db, "desk", REVOKE).await;
    caught_up("killed", &server, revoked, Duration::from_secs(30)).await;
    assert!(server.metric(CONNECTS).await > connects, "reconnected");
    assert_eq!(server.metric(CONNECTED).await, 1.0);
    caller.finish("killed", revoked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_continued_is_caught_up_with_no_failed_call() {
    if pg::server().is_none() {
        return;
    }
    let stopped_for: u64 = std::env::var("ROLEGATE_FAULT_STOP_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let cluster = Cluster::start("fault-stop");
    let dsn = pg::fresh(&cluster.dsn, "fault_stop").await;
    let (server, caller) = desk_on(&dsn).await;

    let pids = cluster.processes();
    cluster.signal("STOP", &pids);
    let stopped = Instant::now();
    // Nothing answers, nothing refuses: the sidecar cannot tell a stopped database from a slow one
    // until its heartbeat is overdue; meanwhile it keeps serving and its snapshot ages.
    let age = metric_until(&server, "stopped", AGE, |v| v > 1.0).await;
    assert!(age > 1.0);
    tokio::time::sleep(Duration::from_secs(stopped_for).saturating_sub(stopped.elapsed())).await;
    cluster.signal("CONT", &pids);

    let mut db = pg::connect(&dsn).await;
    let revoked = pg::write(&mut db, "desk", REVOKE).await;
    caught_up("stopped", &server, revoked, Duration::from_secs(60)).await;
    metric_until(&server, "stopped", AGE, |v| v < 2.0).await;
    caller.finish("stopped", revoked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_terminated_by_the_server_are_reopened_and_the_revocation_applies() {
    let Some(dsn) = pg::database("fault_terminate").await else { return };
    let (server, caller) = desk_on(&dsn).await;
    let mut db = pg::connect(&dsn).await;
    let terminate = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()";
    let connects = server.metric(CONNECTS).await;
    for round in 0..5 {
        let killed: i64 = db.query_one(terminate, &[]).await.unwrap().get(0);
        assert!(killed >= 1, "round {round}: the sidecar holds a connection to terminate");
        metric_until(&server, "terminated", CONNECTS, |v| v >= connects + f64::from(round) + 1.0).await;
    }
    // Terminated again, right before the revocation commits.
    db.query_one(terminate, &[]).await.unwrap();
    let revoked = pg::write(&mut db, "desk", REVOKE).await;
    caught_up("terminated", &server, revoked, Duration::from_secs(20)).await;
    caller.finish("terminated", revoked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_log_pruned_past_a_sidecar_reloads_the_tenant_whole() {
    let Some(dsn) = pg::database("fault_prune").await else { return };
    let db = pg::connect(&dsn).await;
    pg::desk(&db, "desk").await;
    let proxy = Proxy::start(pg_addr(&dsn), true).await;
    let server = Server::start_postgres(&proxy.dsn(&dsn), FLAGS);
    server.ready().await;
    let caller = Caller::start(&server).await;

    proxy.set_open(false).await;
    metric_until(&server, "pruned", CONNECTED, |v| v == 0.0).await;
    let mut db = pg::connect(&dsn).await;
    let revoked = pg::write(&mut db, "desk", REVOKE).await;
    pg::write(&mut db, "desk", "INSERT INTO rolegate.members (tenant, id) VALUES ('desk', 'late')").await;
    let pruned: i64 = db.query_one("SELECT rolegate.prune_change_log('0 seconds')", &[]).await.unwrap().get(0);
    assert!(pruned >= 2, "the changes the sidecar missed are gone from the log ({pruned} rows)");

    proxy.set_open(true).await;
    caught_up("pruned", &server, revoked, Duration::from_secs(20)).await;
    let mut client = server.client().await;
    let late = client.check(reply("late", 0)).await.unwrap().into_inner().decision.unwrap();
    assert_eq!(late.reason, api::Reason::NoGrant as i32, "the member added while pruned is known");
    caller.finish("pruned", revoked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_applied_while_serving_changes_nothing_served() {
    let Some(dsn) = pg::database("fault_migrate").await else { return };
    let (server, caller) = desk_on(&dsn).await;
    // `rolegate migrate` again (nothing to apply), then an additive change of the kind a later
    // migration makes, in one transaction with a sidecar reading.
    pg::rolegate(&["migrate", "--dsn", &dsn]);
    let mut db = pg::connect(&dsn).await;
    let ddl = "BEGIN; ALTER TABLE rolegate.members ADD COLUMN nickname text; \
               CREATE INDEX members_nickname ON rolegate.members (nickname); COMMIT;";
    db.batch_execute(ddl).await.unwrap();
    let renamed = pg::write(&mut db, "desk", "UPDATE rolegate.members SET nickname = 'r' WHERE id = 'rep'").await;
    caught_up("migrated", &server, renamed, Duration::from_secs(20)).await;
    let revoked = pg::write(&mut db, "desk", REVOKE).await;
    caught_up("migrated", &server, revoked, Duration::from_secs(20)).await;
    caller.finish("migrated", revoked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_notifications_ends_on_the_last_write() {
    let Some(dsn) = pg::database("fault_storm").await else { return };
    let (server, caller) = desk_on(&dsn).await;
    let mut db = pg::connect(&dsn).await;
    // 300 transactions on another member, each a notification, as fast as one connection commits.
    let flip = |on: bool| {
        format!(
            "UPDATE rolegate.members SET status = '{}' WHERE tenant = 'desk' AND id = 'other'",
            if on { "active" } else { "disabled" }
        )
    };
    let started = Instant::now();
    for i in 0..300 {
        pg::write(&mut db, "desk", &flip(i % 2 == 1)).await;
    }
    let revoked = pg::write(&mut db, "desk", REVOKE).await;
    println!("storm: 301 commits in {} ms", started.elapsed().as_millis());
    caught_up("storm", &server, revoked, Duration::from_secs(30)).await;
    let mut client = server.client().await;
    let other = client.check(reply("other", revoked)).await.unwrap().into_inner().decision.unwrap();
    assert!(other.allowed, "the last flip re-activated `other`");
    caller.finish("storm", revoked).await;
}
