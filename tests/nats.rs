//! The NATS JetStream source against a real `nats-server`, the suite's real PostgreSQL and the
//! real `rolegate serve` and `rolegate publish`: a revocation reaching every sidecar, a sidecar
//! restarted, NATS stopped and restarted under the sidecars, a publisher killed mid-stream beside
//! a duplicate one, and a stream trimmed past a stopped sidecar. Every one ends with each sidecar
//! at the database's revision, serving what the database says. Needs `ROLEGATE_TEST_PG` (see
//! `support::pg`) and `nats-server` (see `support::nats`).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::nats::{Nats, Publisher};
use support::pg::{self, Proxy};
use support::server::{Server, reply};
use support::wait_until;

/// A sidecar following `nats`, loading snapshots from `dsn`, serving once loaded.
async fn sidecar(nats: &Nats, dsn: &str) -> Server {
    let server = Server::start_postgres(&nats.url(), &["--snapshot-source", dsn, "--reload-poll", "200ms"]);
    server.ready().await;
    server
}

/// Waits until `server` answers for `who` at `revision` or later; returns (allowed, revision).
async fn at(server: &Server, who: &str, revision: u64) -> (bool, u64) {
    let mut client = server.client().await;
    wait_until(&format!("{} to reach revision {revision}", server.addr), Duration::from_secs(30), async || {
        let r = client.check(reply(who, revision)).await.ok()?.into_inner();
        Some((r.decision.unwrap_or_default().allowed, r.revision))
    })
    .await
}

const REVOKE_REP: &str = "DELETE FROM rolegate.bindings WHERE tenant = 'desk' AND member = 'rep'";
const GRANT_REP: &str = "INSERT INTO rolegate.bindings (tenant, member, role, scope) VALUES ('desk', 'rep', 'agent', '{\"relation\": \"assignee\"}')";

fn status(member: &str, status: &str) -> String {
    format!("UPDATE rolegate.members SET status = '{status}' WHERE tenant = 'desk' AND id = '{member}'")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_sidecar_through_a_restart_and_a_nats_outage() {
    let Some(mut nats) = Nats::start() else { return };
    let Some(dsn) = pg::database("nats_revocation").await else { return };
    let mut db = pg::connect(&dsn).await;
    pg::desk(&db, "desk").await;
    let _publisher = Publisher::start(&dsn, &nats.url(), &[]);
    let a = sidecar(&nats, &dsn).await;
    let b = sidecar(&nats, &dsn).await;
    assert!(at(&a, "rep", 0).await.0, "rep replies before the revocation");

    let revoked = pg::write(&mut db, "desk", REVOKE_REP).await;
    assert_eq!(at(&a, "rep", revoked).await, (false, revoked));
    assert_eq!(at(&b, "rep", revoked).await, (false, revoked));

    // A sidecar down while a change commits catches up when it starts again.
    drop(b);
    let granted = pg::write(&mut db, "desk", GRANT_REP).await;
    let b = sidecar(&nats, &dsn).await;
    assert_eq!(at(&b, "rep", granted).await, (true, granted));
    assert_eq!(at(&a, "rep", granted).await, (true, granted));

    // NATS down: the sidecars keep serving their snapshot; a change committed meanwhile reaches
    // them once NATS is back.
    nats.stop();
    let disabled = pg::write(&mut db, "desk", &status("other", "disabled")).await;
    assert_eq!(at(&a, "other", 0).await, (true, granted), "the last snapshot keeps serving");
    nats.resume();
    assert_eq!(at(&a, "other", disabled).await, (false, disabled));
    assert_eq!(at(&b, "other", disabled).await, (false, disabled));
    assert_eq!(at(&b, "rep", disabled).await, (true, disabled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_killed_mid_stream_beside_a_duplicate_loses_and_reorders_nothing() {
    let Some(nats) = Nats::start() else { return };
    let Some(dsn) = pg::database("nats_publishers").await else { return };
    let mut db = pg::connect(&dsn).await;
    pg::desk(&db, "desk").await;
    let mut first = Publisher::start(&dsn, &nats.url(), &[]);
    let _second = Publisher::start(&dsn, &nats.url(), &[]);
    let a = sidecar(&nats, &dsn).await;
    let b = sidecar(&nats, &dsn).await;

    // A reader watches sidecar `a` the whole time: its revision never goes back.
    let done = Arc::new(AtomicBool::new(false));
    let mut client = a.client().await;
    let watching = done.clone();
    let watcher = tokio::spawn(async move {
        let (mut last, mut seen) = (0, 0);
        while !watching.load(Ordering::Relaxed) {
            let r = client.check(reply("rep", 0)).await.expect("check").into_inner();
            assert!(r.revision >= last, "revision went back from {last} to {}", r.revision);
            seen += usize::from(r.revision > last);
            last = r.revision;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen
    });

    let mut third = None;
    let mut last = 0;
    for k in 0..30 {
        let sql = if k % 2 == 0 { REVOKE_REP } else { GRANT_REP };
        last = pg::write(&mut db, "desk", sql).await;
        if k == 10 {
            first.kill();
        }
        if k == 20 {
            third = Some(Publisher::start(&dsn, &nats.url(), &[]));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 30 changes, the last a grant (k = 29); then a final revocation every sidecar must apply.
    assert_eq!(at(&a, "rep", last).await, (true, last));
    let revoked = pg::write(&mut db, "desk", REVOKE_REP).await;
    for server in [&a, &b] {
        assert_eq!(at(server, "rep", revoked).await, (false, revoked));
    }
    done.store(true, Ordering::Relaxed);
    let revisions_seen = watcher.await.unwrap();
    assert!(revisions_seen > 1, "the watcher saw the changes arrive");
    drop(third);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_the_stream_was_trimmed_past_reloads_from_the_database() {
    let Some(nats) = Nats::start() else { return };
    let Some(dsn) = pg::database("nats_trimmed").await else { return };
    let mut db = pg::connect(&dsn).await;
    pg::desk(&db, "desk").await;
    let _publisher = Publisher::start(&dsn, &nats.url(), &["--max-messages", "2"]);
    let a = sidecar(&nats, &dsn).await;
    // Sidecar `b` reaches NATS through a proxy the test cuts: a network partition.
    let proxy = Proxy::start(([127, 0, 0, 1], nats.port).into(), true).await;
    let b = Server::start_postgres(
        &format!("nats://127.0.0.1:{}", proxy.port),
        &["--snapshot-source", &dsn, "--reload-poll", "200ms"],
    );
    b.ready().await;
    let current = pg::write(&mut db, "desk", &status("other", "active")).await;
    assert_eq!(at(&b, "rep", current).await, (true, current));

    // Five changes pass through a stream that keeps two while `b` is cut off. Each is seen by `a`
    // before the next is written, so each is a message of its own: written faster, the publisher
    // may send several in one, and two messages would leave nothing trimmed.
    proxy.set_open(false).await;
    let mut last = 0;
    for sql in [REVOKE_REP, GRANT_REP, REVOKE_REP, &status("other", "disabled"), GRANT_REP] {
        last = pg::write(&mut db, "desk", sql).await;
        at(&a, "other", last).await;
    }
    assert_eq!(at(&a, "other", last).await, (false, last));
    assert_eq!(at(&b, "other", 0).await, (true, current), "cut off, `b` serves its last snapshot");
    proxy.set_open(true).await;
    b.log_line("about the trimmed stream", |l| l.contains("the stream was trimmed past sequence"));
    assert_eq!(at(&b, "other", last).await, (false, last));
    assert_eq!(at(&b, "rep", last).await, (true, last));
}

/// `rep` replies in `tenant`, at `min_revision` or later.
fn reply_in(tenant: &str, min_revision: u64) -> rolegate::api::CheckRequest {
    rolegate::api::CheckRequest { tenant: tenant.into(), ..reply("rep", min_revision) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_on_demand_follow_the_stream_for_resident_tenants_only() {
    let Some(nats) = Nats::start() else { return };
    let Some(dsn) = pg::database("nats_on_demand").await else { return };
    let mut db = pg::connect(&dsn).await;
    pg::desk(&db, "desk").await;
    pg::desk(&db, "cold").await;
    let _publisher = Publisher::start(&dsn, &nats.url(), &[]);
    let flags = ["--snapshot-source", &dsn, "--tenants", "on-demand", "--admin-listen", "127.0.0.1:0"];
    let server = Server::start_postgres(&nats.url(), &flags);
    server.ready().await;
    assert!(at(&server, "rep", 0).await.0, "desk loads on its first call");

    // A change to a tenant not resident is skipped; a later change to a resident one applies,
    // so the stream has been read past the first.
    let cold_revoked = pg::write(&mut db, "cold", &revoke_in("cold")).await;
    let desk_revoked = pg::write(&mut db, "desk", &revoke_in("desk")).await;
    assert_eq!(at(&server, "rep", desk_revoked).await, (false, desk_revoked), "desk's revocation came through NATS");
    assert_eq!(server.metric("rolegate_tenants").await, 1.0, "cold's change did not make it served");
    assert_eq!(server.metric("rolegate_tenants_resident").await, 1.0, "cold's change did not load it");

    let mut client = server.client().await;
    let r = client.check(reply_in("cold", cold_revoked)).await.expect("cold loads").into_inner();
    assert!(!r.decision.unwrap_or_default().allowed && r.revision >= cold_revoked, "cold loads with its revocation");
    assert_eq!(server.metric("rolegate_tenant_loads_total{outcome=\"loaded\"}").await, 2.0);

    // Now resident, cold follows the stream too.
    let restored = pg::write(
        &mut db,
        "cold",
        "UPDATE rolegate.members SET status = 'active' WHERE tenant = 'cold' AND id = 'rep'",
    )
    .await;
    let r = wait_until("cold's change through NATS", Duration::from_secs(30), async || {
        client.check(reply_in("cold", restored)).await.ok().map(|r| r.into_inner())
    })
    .await;
    assert!(r.decision.unwrap_or_default().allowed && r.revision >= restored);
}

fn revoke_in(tenant: &str) -> String {
    format!("UPDATE rolegate.members SET status = 'disabled' WHERE tenant = '{tenant}' AND id = 'rep'")
}
