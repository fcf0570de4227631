//! Tenants on demand (`serve --tenants on-demand`) against the real PostgreSQL and the real
//! `rolegate serve`: the first calls naming a tenant load it once, an unknown tenant keeps its
//! answer, the resident tenants stay within the memory bound while more are called than fit, a
//! revocation reaches a resident and an evicted tenant alike, and an unreachable database
//! answers UNAVAILABLE for a tenant not resident while resident tenants keep answering. Needs
//! `ROLEGATE_TEST_PG` (see `support::pg`).

mod support;

use std::time::Duration;

use rolegate::api;
use support::pg::{self, Proxy, pg_addr, reply};
use support::server::Server;
use support::wait_until;
use tonic::Code;

type Client = api::authorizer_client::AuthorizerClient<tonic::transport::Channel>;

/// Members added to each tenant of the eviction test, so that one tenant fills most of 1 MiB.
const FILLER: usize = 2500;

/// Whether `rep` may reply in `tenant`, and the reason code.
async fn ask(client: &mut Client, tenant: &str, min_revision: u64) -> Result<(bool, i32, u64), tonic::Status> {
    let r = client.check(reply(tenant, "rep", min_revision)).await?.into_inner();
    let d = r.decision.unwrap_or_default();
    Ok((d.allowed, d.reason, r.revision))
}

async fn on_demand(dsn: &str, memory: &str) -> Server {
    let server = Server::start_postgres(
        dsn,
        &[
            "--tenants",
            "on-demand",
            "--tenant-memory",
            memory,
            "--admin-listen",
            "127.0.0.1:0",
            "--reload-poll",
            "1s",
            // A load of a 2,500-member tenant on a busy machine must not meet the 1 s default.
            "--request-timeout",
            "20s",
        ],
    );
    server.ready().await;
    server
}

fn revoke(tenant: &str) -> String {
    format!("UPDATE rolegate.members SET status = 'disabled' WHERE tenant = '{tenant}' AND id = 'rep'")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_load_a_tenant_once_and_an_unknown_tenant_keeps_its_answer() {
    let Some(dsn) = pg::database("on_demand_once").await else { return };
    let db = pg::connect(&dsn).await;
    for t in ["desk", "other"] {
        pg::desk(&db, t).await;
    }
    let server = on_demand(&dsn, "64MiB").await;
    assert_eq!(server.metric("rolegate_tenants_resident").await, 0.0, "nothing is loaded before a call");
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let addr = server.addr.clone();
            tokio::spawn(async move {
                let mut client = Client::new(rolegate::cli::connect(&addr).await.unwrap());
                ask(&mut client, "desk", 0).await
            })
        })
        .collect();
    for call in calls {
        let (allowed, _, revision) = call.await.unwrap().expect("a loaded tenant is decided");
        assert!(allowed && revision > 0, "rep replies in desk at revision {revision}");
    }
    assert_eq!(server.metric("rolegate_tenant_loads_total{outcome=\"loaded\"}").await, 1.0, "16 calls, one load");
    assert_eq!(server.metric("rolegate_tenants_resident").await, 1.0);
    assert!(server.metric("rolegate_tenants_resident_bytes").await > 0.0);

    let mut client = server.client().await;
    let (allowed, reason, revision) = ask(&mut client, "nobody-here", 0).await.expect("an unknown tenant is answered");
    let unknown = api::Reason::UnknownTenant as i32;
    assert_eq!((allowed, reason, revision), (false, unknown, 0), "the answer for an unknown tenant");
    assert_eq!(server.metric("rolegate_tenant_loads_total{outcome=\"unknown\"}").await, 1.0);
    assert_eq!(server.metric("rolegate_tenants_resident").await, 1.0, "an unknown tenant takes no room");
    let hist = server.metric("rolegate_tenant_load_duration_seconds_count").await;
    assert_eq!(hist, 2.0, "both loads are timed");

    // A notification for a tenant not resident is ignored; one for a resident tenant applies
    // (and, written after, proves the first was seen).
    let mut db = db;
    pg::write(&mut db, "other", &revoke("other")).await;
    let revoked = pg::write(&mut db, "desk", &revoke("desk")).await;
    let (allowed, _, at) = ask(&mut client, "desk", revoked).await.expect("desk follows its changes");
    assert!(!allowed && at >= revoked, "desk's revocation applies at {revoked} (answered at {at})");
    assert_eq!(server.metric("rolegate_tenants").await, 1.0, "other's change did not make it served");
    let (allowed, _, at) = ask(&mut client, "other", 0).await.expect("other loads");
    assert!(!allowed && at > 0, "other loads with its revocation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_tenants_than_fit_stay_within_the_bound_and_a_revocation_reaches_resident_and_evicted_alike() {
    let Some(dsn) = pg::database("on_demand_evict").await else { return };
    let mut db = pg::connect(&dsn).await;
    let tenants = ["t0", "t1", "t2", "t3"];
    for t in tenants {
        pg::desk(&db, t).await;
        let fill = format!(
            "INSERT INTO rolegate.members (tenant, id) SELECT '{t}', 'filler-' || g FROM generate_series(1, {FILLER}) g"
        );
        db.batch_execute(&fill).await.expect("insert filler members");
    }
    let bound = 1u64 << 20;
    let server = on_demand(&dsn, "1MiB").await;
    let mut client = server.client().await;
    // Each tenant weighs more than half the bound: at most one is resident at a time.
    for round in 0..3 {
        for t in tenants {
            let (allowed, _, _) = ask(&mut client, t, 0).await.unwrap_or_else(|e| panic!("round {round}, {t}: {e}"));
            assert!(allowed, "round {round}: rep replies in {t}");
            let bytes = server.metric("rolegate_tenants_resident_bytes").await;
            assert!(bytes <= bound as f64, "round {round}, {t}: {bytes} resident bytes over the bound {bound}");
            let resident = server.metric("rolegate_tenants_resident").await;
            assert!(resident <= 1.0, "round {round}, {t}: {resident} tenants resident in {bytes} bytes");
        }
    }
    let one = server.metric("rolegate_tenants_resident_bytes").await;
    assert!(one > (bound / 2) as f64, "a tenant of {FILLER} members is estimated at {one} bytes");
    assert!(server.metric("rolegate_tenant_evictions_total").await >= 3.0, "tenants were evicted");
    let loads = server.metric("rolegate_tenant_loads_total{outcome=\"loaded\"}").await;
    assert!(loads > 4.0, "evicted tenants were loaded again ({loads} loads)");

    // One of t0..t3 is resident now, the others are evicted: each revocation holds on the
    // next call, waiting for the writer's revision.
    let mut revoked = Vec::new();
    for t in tenants {
        revoked.push(pg::write(&mut db, t, &revoke(t)).await);
    }
    for (t, revision) in tenants.iter().zip(revoked) {
        let (allowed, _, at) = ask(&mut client, t, revision).await.unwrap_or_else(|e| panic!("{t}: {e}"));
        assert!(!allowed && at >= revision, "{t}: rep is revoked at {revision}, answered at {at}");
    }
    // And without naming the revision, after more churn.
    for t in tenants.iter().rev().chain(&tenants) {
        let (allowed, _, _) = ask(&mut client, t, 0).await.unwrap();
        assert!(!allowed, "{t}: the revocation holds after eviction and reload");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_fails_loads_while_resident_tenants_keep_answering() {
    let Some(dsn) = pg::database("on_demand_down").await else { return };
    let db = pg::connect(&dsn).await;
    for t in ["desk", "cold"] {
        pg::desk(&db, t).await;
    }
    let proxy = Proxy::start(pg_addr(&dsn), true).await;
    let server = on_demand(&proxy.dsn(&dsn), "64MiB").await;
    let mut client = server.client().await;
    assert!(ask(&mut client, "desk", 0).await.expect("desk loads").0);

    proxy.set_open(false).await;
    let refused = ask(&mut client, "cold", 0).await.expect_err("a tenant that cannot be loaded is never decided");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("`cold` cannot be loaded"), "{}", refused.message());
    assert!(server.metric("rolegate_tenant_loads_total{outcome=\"failed\"}").await >= 1.0);
    for _ in 0..5 {
        assert!(ask(&mut client, "desk", 0).await.expect("a resident tenant keeps answering").0);
    }

    proxy.set_open(true).await;
    let loaded = wait_until("cold to load once the database is back", Duration::from_secs(20), async || {
        ask(&mut client, "cold", 0).await.ok()
    })
    .await;
    assert!(loaded.0, "rep replies in cold");
}
