//! The PostgreSQL source against a real PostgreSQL and the real `rolegate serve`: every example
//! scenario served from the database, export and import round trips, a revocation reaching two
//! sidecars, `min_revision` with the writer's change id, concurrent writes during a stream of
//! checks, a member row and a tenant document that fail validation, a restored or re-created
//! database, a zero poll interval, a database unreachable at start, and a database stopped and
//! restarted under two sidecars. Needs `ROLEGATE_TEST_PG` (see `support::pg`).

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rolegate::api;
use rolegate::cli::{load_snapshot, to_api};
use rolegate::engine::decide;
use rolegate::source::files;
use rolegate::suite;
use support::pg::{self, Cluster, Proxy, pg_addr, reply};
use support::server::Server;
use support::wait_until;
use tonic::Code;

type Client = api::authorizer_client::AuthorizerClient<tonic::transport::Channel>;

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
}

fn with_now<T>(msg: T, now: &jiff::Timestamp) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("rolegate-now", now.to_string().parse().unwrap());
    req
}

async fn ask(client: &mut Client, tenant: &str, who: &str, min_revision: u64) -> (bool, i32, u64) {
    let r = client.check(reply(tenant, who, min_revision)).await.expect("check").into_inner();
    let d = r.decision.unwrap_or_default();
    (d.allowed, d.reason, r.revision)
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

/// Waits for a log line holding every one of `parts`.
fn logged(server: &Server, parts: &[&str]) {
    server.log_line(&format!("holding {parts:?}"), |line| parts.iter().all(|p| line.contains(p)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_scenario_is_served_from_postgres_as_from_the_files() {
    let Some(dsn) = pg::database("examples").await else { return };
    pg::import(examples(), &dsn);
    let db = pg::connect(&dsn).await;
    let revisions: HashMap<String, u64> = db
        .query("SELECT tenant, revision FROM rolegate.tenant_revisions", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
        .collect();
    let server = Server::start_postgres(&dsn, &["--allow-now-header"]);
    server.ready().await;
    let mut client = server.client().await;
    let (snapshot, _) = load_snapshot(examples()).unwrap();
    let mut checked = 0;
    for file in &files::scan(examples()).unwrap().tests {
        let text = std::fs::read_to_string(file).unwrap();
        let suite = suite::parse(&file.display().to_string(), &text).unwrap();
        for case in &suite.cases {
            let remote = client.check(with_now(to_api(&case.request), &case.now)).await;
            match decide(&snapshot, &case.request.query(), case.now) {
                Err(_) => assert_eq!(remote.unwrap_err().code(), Code::InvalidArgument, "{}", case.name),
                Ok(d) => {
                    let got = remote.unwrap_or_else(|e| panic!("{}: {e}", case.name)).into_inner();
                    assert_eq!(got.decision.as_ref(), Some(&rolegate::server::convert::decision(&d)), "{}", case.name);
                    assert_eq!(got.decision.unwrap().allowed, case.expect == suite::Expect::Allow, "{}", case.name);
                    let revision = revisions.get(&case.request.tenant).copied().unwrap_or(0);
                    assert_eq!(got.revision, revision, "{}", case.name);
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} cases");
}

fn yaml_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let listing = files::scan(dir).unwrap();
    let mut files: Vec<(PathBuf, String)> = listing
        .documents
        .iter()
        .map(|f| (f.path.strip_prefix(dir).unwrap().to_owned(), std::fs::read_to_string(&f.path).unwrap()))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_files_pass_the_example_tests_and_import_back_to_the_same_rows() {
    let Some(dsn) = pg::database("round_trip").await else { return };
    pg::import(examples(), &dsn);
    let out = tempfile::tempdir().unwrap();
    pg::rolegate(&["export", "--from", &dsn, out.path().to_str().unwrap()]);
    for test in files::scan(examples()).unwrap().tests {
        std::fs::copy(&test, out.path().join(test.file_name().unwrap())).unwrap();
    }
    let validated = pg::rolegate(&["validate", out.path().to_str().unwrap()]);
    assert!(validated.contains("5 tenants loaded, 0 failed"), "{validated}");
    let tested = pg::rolegate(&["test", out.path().to_str().unwrap()]);
    assert!(tested.trim_end().ends_with(" passed, 0 failed"), "{tested}");
    assert!(tested.contains("181 passed"), "{tested}");

    // A second trip through another database writes the same files.
    let again = pg::fresh(&pg::server().unwrap(), "round_trip_again").await;
    pg::import(out.path(), &again);
    let out2 = tempfile::tempdir().unwrap();
    pg::rolegate(&["export", "--from", &again, out2.path().to_str().unwrap()]);
    assert_eq!(yaml_files(out.path()), yaml_files(out2.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_member_makes_two_sidecars_deny_within_the_bound() {
    let Some(dsn) = pg::database("revocation").await else { return };
    let mut db = pg::connect(&dsn).await;
    pg::desk(&db, "desk").await;
    // Polls far apart: only the notification can carry the change this fast.
    let sidecars = [
        Server::start_postgres(&dsn, &["--reload-poll", "60s"]),
        Server::start_postgres(&dsn, &["--reload-poll", "60s"]),
    ];
    let mut clients = Vec::new();
    for s in &sidecars {
        s.ready().await;
        let mut c = s.client().await;
        assert!(ask(&mut c, "desk", "rep", 0).await.0);
        clients.push(c);
    }
    let sql = "UPDATE rolegate.members SET status = 'disabled' WHERE tenant = 'desk' AND id = 'rep'";
    let revision = pg::write(&mut db, "desk", sql).await;
    let committed = Instant::now();
    for c in &mut clients {
        let left = Duration::from_secs(2).saturating_sub(committed.elapsed());
        let (reason, at) = wait_until("a deny within 2 s of the commit", left, async || {
            let (allowed, reason, at) = ask(c, "desk", "rep", 0).await;
            (!allowed).then_some((reason, at))
        })
        .await;
        assert_eq!(reason, api::Reason::PrincipalDisabled as i32);
        assert!(at >= revision, "denied at revision {at}, the change is {revision}");
    }
    let took = committed.elapsed();
    eprintln!("both sidecars denied {} ms after the commit", took.as_millis());
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_revision_with_the_writers_change_id_reflects_the_change_or_is_unavailable() {
    let Some(dsn) = pg::database("min_revision").await else { return };
    let mut db = pg::connect(&dsn).await;
    pg::desk(&db, "desk").await;
    let server = Server::start_postgres(&dsn, &["--reload-poll", "60s", "--min-revision-wait", "800ms"]);
    server.ready().await;
    let mut client = server.client().await;

    // A 24-hour export approval, then at once a check that must see it.
    let grant = "INSERT INTO rolegate.bindings (tenant, member, id, role, scope, \"from\", until) \
                 VALUES ('desk', 'other', 'export-approval-7', 'exporter', '\"tenant\"', now() - interval '1 minute', now() + interval '24 hours')";
    let revision = pg::write(&mut db, "desk", grant).await;
    let export = api::CheckRequest {
        action: "customer.export".into(),
        resource: Some(api::Resource { kind: "customer".into(), id: "cu-1".into(), ..Default::default() }),
        ..reply("desk", "other", revision)
    };
    let r = client.check(export).await.unwrap().into_inner();
    let d = r.decision.unwrap();
    assert!(d.allowed && d.rule == "export-approval-7", "{d:?}");
    assert!(r.revision >= revision);
    let until = d.valid_until.expect("the grant's end bounds the answer");
    let hours = (until.seconds - jiff::Timestamp::now().as_second()) as f64 / 3600.0;
    assert!((23.9..24.1).contains(&hours), "valid for {hours} h");

    // The change id from currval, in the writer's transaction.
    let tx = db.transaction().await.unwrap();
    tx.execute("UPDATE rolegate.members SET status = 'disabled' WHERE tenant = 'desk' AND id = 'rep'", &[])
        .await
        .unwrap();
    let id: i64 = tx.query_one("SELECT currval('rolegate.change_id')", &[]).await.unwrap().get(0);
    tx.commit().await.unwrap();
    let (allowed, reason, at) = ask(&mut client, "desk", "rep", id as u64).await;
    assert!(!allowed && reason == api::Reason::PrincipalDisabled as i32);
    assert_eq!(at, id as u64);

    let want = at + 1000;
    let err = client.check(reply("desk", "rep", want)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains(&at.to_string()) && err.message().contains(&want.to_string()), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_during_a_stream_of_checks_give_no_error_and_no_stale_answer() {
    let Some(dsn) = pg::database("concurrent").await else { return };
    let db = pg::connect(&dsn).await;
    pg::desk(&db, "desk").await;
    let flags = ["--reload-poll", "60s", "--cache-capacity", "1000", "--min-revision-wait", "900ms"];
    let server = Server::start_postgres(&dsn, &flags);
    server.ready().await;
    let client = server.client().await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (mut c, stop) = (client.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (allowed, _, revision) = ask(&mut c, "desk", "rep", 0).await;
                seen.push((revision, allowed));
            }
            seen
        }));
    }
    // Other writes to the same tenant, on their own connection, interleave with the toggles.
    let noise = {
        let mut db = pg::connect(&dsn).await;
        tokio::spawn(async move {
            for i in 0..40 {
                let sql = format!(
                    "INSERT INTO rolegate.members (tenant, id, attrs) VALUES ('desk', 'noise-{i}', '{{\"n\": {i}}}');
                     UPDATE rolegate.members SET attrs = '{{\"n\": {i}}}' WHERE tenant = 'desk' AND id = 'other';"
                );
                pg::write(&mut db, "desk", &sql).await;
            }
        })
    };
    let mut db = db;
    let mut toggles: Vec<(u64, bool)> = Vec::new();
    let mut checker = client.clone();
    for i in 0..30 {
        let allowed = i % 2 == 1;
        let status = if allowed { "active" } else { "disabled" };
        let sql = format!("UPDATE rolegate.members SET status = '{status}' WHERE tenant = 'desk' AND id = 'rep'");
        let revision = pg::write(&mut db, "desk", &sql).await;
        toggles.push((revision, allowed));
        // The writer's own check at its revision reflects its change.
        let (now_allowed, _, at) = ask(&mut checker, "desk", "rep", revision).await;
        assert!(at >= revision);
        assert_eq!(now_allowed, allowed, "revision {at} answered with a stale status");
    }
    noise.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut checked = 0;
    let mut revisions = std::collections::BTreeSet::new();
    for reader in readers {
        for (revision, allowed) in reader.await.unwrap() {
            // The status at a revision is the one of the last toggle at or before it.
            let want = toggles.iter().rev().find(|(r, _)| *r <= revision).is_none_or(|(_, a)| *a);
            assert_eq!(allowed, want, "revision {revision} answered {allowed}; toggles {toggles:?}");
            revisions.insert(revision);
            checked += 1;
        }
    }
    eprintln!("{checked} checks over {} revisions", revisions.len());
    assert!(checked > 100 && revisions.len() > 10, "{checked} checks, {} revisions", revisions.len());
}

/// Reads a metric of `server` until `done` holds for it; panics after 10 s.
async fn metric_until(server: &Server, series: &str, done: impl Fn(f64) -> bool) -> f64 {
    wait_until(&format!("the awaited value of {series}"), Duration::from_secs(10), async || {
        let value = metric(&server.metrics().await, series);
        done(value).then_some(value)
    })
    .await
}

const STALE: &str = "rolegate_stale_tenants{source=\"postgres\"}";
const ROUNDS_OK: &str = "rolegate_reloads_total{source=\"postgres\",result=\"ok\"}";
const FAILED: &str = "rolegate_reloads_total{source=\"postgres\",result=\"failed\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_member_row_denies_only_that_member_and_every_later_change_still_applies() {
    let Some(dsn) = pg::database("bad_row").await else { return };
    let mut db = pg::connect(&dsn).await;
    pg::desk(&db, "desk").await;
    pg::desk(&db, "shop").await;
    let flags = ["--reload-poll", "200ms", "--admin-listen", "127.0.0.1:0", "--min-revision-wait", "900ms"];
    let server = Server::start_postgres(&dsn, &flags);
    server.ready().await;
    let mut client = server.client().await;
    assert!(ask(&mut client, "desk", "other", 0).await.0);
    assert_eq!(metric(&server.metrics().await, STALE), 0.0);

    let bad =
        "INSERT INTO rolegate.bindings (tenant, member, role, scope) VALUES ('desk', 'rep', 'agnet', '\"tenant\"')";
    let broken = pg::write(&mut db, "desk", bad).await;
    logged(&server, &["postgres:members/desk/rep", "bindings[1].role: unknown role `agnet`"]);
    let r = client.check(reply("desk", "rep", broken)).await.expect("check").into_inner();
    let d = r.decision.unwrap_or_default();
    assert!(!d.allowed && d.reason == api::Reason::NoGrant as i32 && r.revision >= broken, "{d:?}");
    assert!(d.message.contains("bindings[1].role: unknown role `agnet`"), "{}", d.message);

    // A revocation of another member in a later transaction applies at its revision.
    let disable_other = "UPDATE rolegate.members SET status = 'disabled' WHERE tenant = 'desk' AND id = 'other'";
    let revoked = pg::write(&mut db, "desk", disable_other).await;
    let (allowed, reason, at) = ask(&mut client, "desk", "other", revoked).await;
    assert!(!allowed && reason == api::Reason::PrincipalDisabled as i32 && at >= revoked, "{reason} at {at}");
    assert!(!ask(&mut client, "desk", "rep", 0).await.0, "the bad member stays denied");

    // The tenant is reported stale every round while the row is broken, polls included.
    let rounds = metric(&server.metrics().await, ROUNDS_OK);
    metric_until(&server, ROUNDS_OK, |n| n >= rounds + 2.0).await;
    assert_eq!(metric(&server.metrics().await, STALE), 1.0);
    let failures = metric(&server.metrics().await, "rolegate_tenant_load_failures_total{source=\"postgres\"}");
    assert!(failures >= 1.0, "{failures}");

    let shop = pg::write(
        &mut db,
        "shop",
        "UPDATE rolegate.members SET status = 'disabled' WHERE tenant = 'shop' AND id = 'rep'",
    )
    .await;
    assert!(!ask(&mut client, "shop", "rep", shop).await.0, "another tenant's change still applies");

    let fixed =
        pg::write(&mut db, "desk", "DELETE FROM rolegate.bindings WHERE tenant = 'desk' AND role = 'agnet'").await;
    let (allowed, _, at) = ask(&mut client, "desk", "rep", fixed).await;
    assert!(allowed && at >= fixed, "the fixed member is allowed again");
    metric_until(&server, STALE, |n| n == 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tenant_document_keeps_the_last_good_one_and_member_changes_still_apply() {
    let Some(dsn) = pg::database("bad_document").await else { return };
    let mut db = pg::connect(&dsn).await;
    pg::desk(&db, "desk").await;
    let flags = ["--reload-poll", "60s", "--admin-listen", "127.0.0.1:0", "--min-revision-wait", "900ms"];
    let server = Server::start_postgres(&dsn, &flags);
    server.ready().await;
    let mut client = server.client().await;

    let bad = "UPDATE rolegate.tenants SET document = document || E'rules: [{id: r, effect: deny, actions: [conversation.rply]}]\\n' WHERE id = 'desk'";
    let broken = pg::write(&mut db, "desk", bad).await;
    logged(&server, &["postgres:tenants/desk", "conversation.rply"]);
    let (allowed, _, at) = ask(&mut client, "desk", "rep", broken).await;
    assert!(allowed && at >= broken, "served on the last good document");
    metric_until(&server, STALE, |n| n == 1.0).await;

    let disable = "UPDATE rolegate.members SET status = 'disabled' WHERE tenant = 'desk' AND id = 'rep'";
    let revoked = pg::write(&mut db, "desk", disable).await;
    let (allowed, reason, at) = ask(&mut client, "desk", "rep", revoked).await;
    assert!(!allowed && reason == api::Reason::PrincipalDisabled as i32 && at >= revoked);

    let fix = "UPDATE rolegate.tenants SET document = replace(document, 'rply', 'reply') WHERE id = 'desk'";
    let fixed = pg::write(&mut db, "desk", fix).await;
    let r = client.check(reply("desk", "other", fixed)).await.expect("check").into_inner();
    let d = r.decision.unwrap_or_default();
    assert!(!d.allowed && d.reason == api::Reason::DeniedByRule as i32, "the fixed document applies: {d:?}");
    metric_until(&server, STALE, |n| n == 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_or_recreated_database_is_reloaded_whole() {
    let Some(dsn) = pg::database("restore").await else { return };
    let mut db = pg::connect(&dsn).await;
    pg::desk(&db, "desk").await;
    for i in 0..5 {
        let sql =
            format!("UPDATE rolegate.members SET attrs = '{{\"n\": {i}}}' WHERE tenant = 'desk' AND id = 'other'");
        pg::write(&mut db, "desk", &sql).await;
    }
    let server = Server::start_postgres(&dsn, &["--reload-poll", "200ms"]);
    server.ready().await;
    let mut client = server.client().await;
    let (allowed, _, before) = ask(&mut client, "desk", "rep", 0).await;
    assert!(allowed && before > 3, "at {before}");

    // A restore of an older backup, as pg_restore --disable-triggers writes it: no trigger runs,
    // nothing is notified, and the tenant's revision goes back to 3. Only the digest check sees it.
    let restore = "SET LOCAL session_replication_role = replica;
         UPDATE rolegate.members SET status = 'disabled' WHERE tenant = 'desk' AND id = 'rep';
         DELETE FROM rolegate.change_log WHERE tenant = 'desk' AND id > 3;
         UPDATE rolegate.tenant_revisions SET revision = 3 WHERE tenant = 'desk';
         SELECT setval('rolegate.change_id', 3);";
    pg::write(&mut db, "desk", restore).await;
    let (allowed, reason) = wait_until("the restored revision 3", Duration::from_secs(10), async || {
        let (allowed, reason, at) = ask(&mut client, "desk", "rep", 0).await;
        if at != 3 {
            assert_eq!(at, before, "only the old or the restored revision is served");
        }
        (at == 3).then_some((allowed, reason))
    })
    .await;
    assert!(!allowed && reason == api::Reason::PrincipalDisabled as i32, "the restored revocation applies");

    // The schema dropped and re-created in one transaction, its ids started past the ones the
    // sidecar applied: the revision grew, but the history it extends is gone.
    let mut recreate = String::from("DROP SCHEMA rolegate CASCADE; CREATE SCHEMA rolegate;\n");
    recreate.push_str(rolegate::source::postgres::migrate::MIGRATIONS[0].2);
    recreate.push_str(
        "SELECT setval('rolegate.change_id', 100);
         INSERT INTO rolegate.tenants (id, document) VALUES ('desk', E'tenant: desk\\nschema: {conversation: [view, reply]}\\nroles: {agent: {allow: [conversation.reply]}}\\n');
         INSERT INTO rolegate.members (tenant, id) VALUES ('desk', 'rep'), ('desk', 'other');
         INSERT INTO rolegate.bindings (tenant, member, role, scope) VALUES ('desk', 'rep', 'agent', '\"tenant\"');",
    );
    let recreated = pg::write(&mut db, "desk", &recreate).await;
    assert!(recreated > 100);
    wait_until("the re-created database to load", Duration::from_secs(10), async || {
        (ask(&mut client, "desk", "rep", 0).await.2 == recreated).then_some(())
    })
    .await;
    assert!(ask(&mut client, "desk", "rep", 0).await.0, "the re-created grant is served");
    assert_eq!(ask(&mut client, "desk", "other", 0).await.1, api::Reason::NoGrant as i32, "and only it");

    // A restored history that grew past the applied revision but no longer holds the change
    // applied last: its newer changes alone would not say that `rep` was disabled.
    let diverged = "SET LOCAL session_replication_role = replica;
         UPDATE rolegate.members SET status = 'disabled' WHERE tenant = 'desk' AND id = 'rep';
         DELETE FROM rolegate.change_log WHERE tenant = 'desk';
         INSERT INTO rolegate.change_log (id, tenant, kind, key) VALUES (150, 'desk', 'member', 'other');
         UPDATE rolegate.tenant_revisions SET revision = 150 WHERE tenant = 'desk';";
    pg::write(&mut db, "desk", diverged).await;
    let (allowed, reason) = wait_until("the diverged history at revision 150", Duration::from_secs(10), async || {
        let (allowed, reason, at) = ask(&mut client, "desk", "rep", 0).await;
        (at == 150).then_some((allowed, reason))
    })
    .await;
    assert!(!allowed && reason == api::Reason::PrincipalDisabled as i32, "the tenant was reloaded whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_reload_poll_is_clamped_and_the_follower_keeps_following() {
    use rolegate::source::postgres::{self as source, follow::MIN_POLL};
    let Some(dsn) = pg::database("zero_poll").await else { return };
    let mut db = pg::connect(&dsn).await;
    pg::desk(&db, "desk").await;
    let cfg = source::Config::from_dsn(&dsn, Duration::ZERO).unwrap();
    let store = Arc::new(rolegate::store::Store::default());
    let rounds = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = rounds.clone();
    source::spawn(cfg, store.clone(), Arc::default(), move |_| {
        counted.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    let disable = "UPDATE rolegate.members SET status = 'disabled' WHERE tenant = 'desk' AND id = 'rep'";
    let revision = pg::write(&mut db, "desk", disable).await;
    store.at_least("desk", revision, Duration::from_secs(10)).await.expect("the follower still follows");

    // A measurement, not a synchronisation: rounds over one second stay within the clamp, so the
    // second is the subject of the test.
    let start = rounds.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per_second = rounds.load(Ordering::Relaxed) - start;
    let most = (Duration::from_secs(1).as_millis() / MIN_POLL.as_millis()) as u64 + 2;
    assert!((1..=most).contains(&per_second), "{per_second} rounds in one second");
}

async fn serving_status(server: &Server) -> i32 {
    let channel = rolegate::cli::connect(&server.addr).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let ask = tonic_health::pb::HealthCheckRequest { service: "rolegate.v1.Authorizer".into() };
    health.check(ask).await.unwrap().into_inner().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_at_start_is_not_serving_until_the_first_load() {
    let Some(dsn) = pg::database("unreachable").await else { return };
    let db = pg::connect(&dsn).await;
    pg::desk(&db, "desk").await;
    let proxy = Proxy::start(pg_addr(&dsn), false).await;
    let server = Server::start_postgres(&proxy.dsn(&dsn), &[]);
    logged(&server, &["not serving until the first load"]);
    use tonic_health::pb::health_check_response::ServingStatus;
    assert_eq!(serving_status(&server).await, ServingStatus::NotServing as i32);
    let err = server.client().await.check(reply("desk", "rep", 0)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);

    proxy.set_open(true).await;
    server.ready().await;
    assert!(ask(&mut server.client().await, "desk", "rep", 0).await.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_postgres_leaves_both_sidecars_serving_and_after_a_restart_they_catch_up() {
    if pg::server().is_none() {
        return;
    }
    let cluster = Cluster::start("outage");
    let dsn = pg::fresh(&cluster.dsn, "outage").await;
    let db = pg::connect(&dsn).await;
    pg::desk(&db, "desk").await;
    drop(db);
    let proxy = Proxy::start(pg_addr(&dsn), true).await;
    let via_proxy = proxy.dsn(&dsn);
    let flags = ["--reload-poll", "500ms", "--admin-listen", "127.0.0.1:0"];
    let sidecars = [Server::start_postgres(&via_proxy, &flags), Server::start_postgres(&via_proxy, &flags)];
    let mut clients = Vec::new();
    for s in &sidecars {
        s.ready().await;
        clients.push(s.client().await);
    }
    let (_, _, before) = ask(&mut clients[0], "desk", "rep", 0).await;

    cluster.pg_sh("stop");
    let connected = "rolegate_source_connected{source=\"postgres\"}";
    let age = "rolegate_snapshot_age_seconds{source=\"postgres\"}";
    for s in &sidecars {
        wait_until("the sidecar to notice the database stopping", Duration::from_secs(10), async || {
            (metric(&s.metrics().await, connected) == 0.0).then_some(())
        })
        .await;
    }
    for c in &mut clients {
        assert_eq!(
            ask(c, "desk", "rep", 0).await,
            (true, api::Reason::Granted as i32, before),
            "serving the last snapshot"
        );
    }

    // Back up, but out of the sidecars' reach while it changes.
    proxy.set_open(false).await;
    cluster.pg_sh("start");
    let mut db = pg::connect(&dsn).await;
    let changes = "UPDATE rolegate.members SET status = 'disabled' WHERE tenant = 'desk' AND id = 'rep';
                   INSERT INTO rolegate.members (tenant, id) VALUES ('desk', 'new');
                   INSERT INTO rolegate.bindings (tenant, member, role, scope) VALUES ('desk', 'new', 'agent', '{\"relation\": \"assignee\"}');";
    let revision = pg::write(&mut db, "desk", changes).await;
    for (s, c) in sidecars.iter().zip(&mut clients) {
        // A connection attempt that failed after the commit: the change was there to be missed.
        let failed = metric(&s.metrics().await, FAILED);
        metric_until(s, FAILED, |n| n > failed).await;
        assert_eq!(ask(c, "desk", "rep", 0).await.2, before, "still the last snapshot while unreachable");
        let stale = metric_until(s, age, |seconds| seconds > 0.3).await;
        assert!(stale > 0.3, "the snapshot age grows while the database is unreachable: {stale}");
    }

    proxy.set_open(true).await;
    for (s, c) in sidecars.iter().zip(&mut clients) {
        let (allowed, reason) = wait_until(&format!("revision {revision}"), Duration::from_secs(20), async || {
            let (allowed, reason, at) = ask(c, "desk", "rep", 0).await;
            (at >= revision).then_some((allowed, reason))
        })
        .await;
        assert!(!allowed && reason == api::Reason::PrincipalDisabled as i32, "caught up with the change");
        assert!(ask(c, "desk", "new", 0).await.0, "the member added while unreachable is served");
        let text = s.metrics().await;
        assert_eq!(metric(&text, connected), 1.0);
        assert!(metric(&text, "rolegate_source_connects_total{source=\"postgres\"}") >= 2.0);
    }
}
