//! Shadow evaluation on a real server: calls are also decided on a candidate policy, mismatches
//! are counted by reason pair and logged with both answers under a rate limit, the caller always
//! gets the live answer, and a full shadow queue drops and counts instead of slowing calls.

mod support;

use std::time::Duration;

use rolegate::api::{self, CheckBatchRequest};
use support::server::{Server, desk_text, reply};
use support::wait_until;

const NEWBIE: &str = "  - {id: newbie, bindings: [{role: agent, scope: {relation: assignee}}]}\n";

/// A live policy in which `rep` is active, and a candidate in which `rep` is disabled and
/// `newbie` joins.
fn policies(tmp: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (live, candidate) = (tmp.join("live"), tmp.join("candidate"));
    std::fs::create_dir_all(&live).unwrap();
    std::fs::create_dir_all(&candidate).unwrap();
    std::fs::write(live.join("desk.yaml"), desk_text("active", "")).unwrap();
    std::fs::write(candidate.join("desk.yaml"), desk_text("disabled", NEWBIE)).unwrap();
    (live, candidate)
}

async fn shadow_loaded(server: &Server) {
    let mut client = server.client().await;
    wait_until("the shadow policy to compare a call", Duration::from_secs(20), async || {
        client.check(reply("other", 0)).await.unwrap();
        (server.metric("rolegate_shadow_compared_total").await >= 1.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatches_are_counted_by_reason_pair_and_logged_with_both_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let (live, candidate) = policies(tmp.path());
    let log = tmp.path().join("decisions.log");
    let server = Server::start(
        &live,
        &[
            "--admin-listen",
            "127.0.0.1:0",
            "--shadow-policies",
            candidate.to_str().unwrap(),
            "--shadow-log-per-second",
            "1",
            "--decision-log",
            log.to_str().unwrap(),
        ],
    );
    shadow_loaded(&server).await;
    let mut client = server.client().await;

    // The caller gets the live answer whatever the candidate says.
    let d = client.check(reply("rep", 0)).await.unwrap().into_inner().decision.unwrap();
    assert!(d.allowed, "{d:?}");
    let d = client.check(reply("newbie", 0)).await.unwrap().into_inner().decision.unwrap();
    assert_eq!(d.reason, api::Reason::UnknownPrincipal as i32);

    let revoked = r#"rolegate_shadow_mismatches_total{live="GRANTED",shadow="PRINCIPAL_DISABLED"}"#;
    let granted = r#"rolegate_shadow_mismatches_total{live="UNKNOWN_PRINCIPAL",shadow="GRANTED"}"#;
    wait_until("both mismatches to be counted", Duration::from_secs(10), async || {
        (server.metric(revoked).await == 1.0 && server.metric(granted).await == 1.0).then_some(())
    })
    .await;
    // Calls the candidate answers alike are compared and not counted as mismatches.
    let text = server.metrics().await;
    let mismatches: Vec<&str> = text.lines().filter(|l| l.starts_with("rolegate_shadow_mismatches_total{")).collect();
    assert_eq!(mismatches.len(), 2, "{text}");
    assert!(server.metric("rolegate_shadow_compared_total").await >= 3.0);

    // One mismatch a second reaches the log; the other is counted as unlogged unless a new
    // second began between them.
    let lines = wait_until("a shadow mismatch in the decision log", Duration::from_secs(10), async || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|v: &serde_json::Value| v["severity"] == "shadow_mismatch")
            .collect();
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    let first = &lines[0];
    assert_eq!(first["tenant"], "desk");
    assert_eq!(first["principal"], "rep");
    assert_eq!(first["action"], "conversation.reply");
    assert_eq!(first["live"]["allowed"], true);
    assert_eq!(first["live"]["reason"], "GRANTED");
    assert_eq!(first["shadow"]["allowed"], false);
    assert_eq!(first["shadow"]["reason"], "PRINCIPAL_DISABLED");
    assert!(first["live"]["revision"].as_u64().unwrap() > 0 && first["shadow"]["revision"].as_u64().unwrap() > 0);
    let unlogged = server.metric("rolegate_shadow_unlogged_total").await;
    assert_eq!(lines.len() as f64 + unlogged, 2.0, "{lines:?}, {unlogged} unlogged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_shadow_queue_drops_and_counts_and_never_holds_a_call() {
    let tmp = tempfile::tempdir().unwrap();
    let (live, candidate) = policies(tmp.path());
    let server = Server::start(
        &live,
        &["--admin-listen", "127.0.0.1:0", "--shadow-policies", candidate.to_str().unwrap(), "--shadow-queue", "1"],
    );
    shadow_loaded(&server).await;
    let before = server.metric("rolegate_shadow_compared_total").await;
    let one = reply("rep", 0);
    let items: Vec<api::BatchItem> =
        (0..1000).map(|_| api::BatchItem { action: one.action.clone(), resource: one.resource.clone() }).collect();
    let batch =
        CheckBatchRequest { tenant: "desk".into(), principal: "rep".into(), context: None, min_revision: 0, items };
    let mut client = server.client().await;
    let answers = client.check_batch(batch).await.unwrap().into_inner().decisions;
    assert_eq!(answers.len(), 1000);
    assert!(answers.iter().all(|d| d.allowed), "the live answer is served for every item");

    let dropped = r#"rolegate_shadow_dropped_total{reason="queue_full"}"#;
    let (compared, full) = wait_until("every item compared or dropped", Duration::from_secs(10), async || {
        let compared = server.metric("rolegate_shadow_compared_total").await - before;
        let full = server.metric(dropped).await;
        (compared + full == 1000.0).then_some((compared, full))
    })
    .await;
    assert!(full > 0.0, "a queue of one never filled over 1000 items ({compared} compared)");
    let mismatched =
        server.metric(r#"rolegate_shadow_mismatches_total{live="GRANTED",shadow="PRINCIPAL_DISABLED"}"#).await;
    assert_eq!(mismatched, compared, "every compared item is a mismatch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_of_zero_compares_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (live, candidate) = policies(tmp.path());
    let server = Server::start(
        &live,
        &["--admin-listen", "127.0.0.1:0", "--shadow-policies", candidate.to_str().unwrap(), "--shadow-sample", "0"],
    );
    let mut client = server.client().await;
    for _ in 0..20 {
        assert!(client.check(reply("rep", 0)).await.unwrap().into_inner().decision.unwrap().allowed);
    }
    let text = server.metrics().await;
    assert!(text.contains("rolegate_shadow_compared_total 0\n"), "{text}");
    assert!(text.contains("rolegate_shadow_dropped_total{reason=\"queue_full\"} 0\n"), "{text}");
}

/// The PostgreSQL candidate (`--shadow-source`): a second database with the same schema, followed
/// like the live one. Writes to it after start reach the comparison; callers get only the live
/// database's answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_database_is_followed_and_compared_and_never_answers() {
    use support::pg;
    let Some(live) = pg::database("shadow_live").await else { return };
    let Some(candidate) = pg::database("shadow_candidate").await else { return };
    let mut l = pg::connect(&live).await;
    let mut c = pg::connect(&candidate).await;
    pg::desk(&l, "desk").await;
    pg::desk(&c, "desk").await;
    pg::write(&mut c, "desk", "UPDATE rolegate.members SET status = 'disabled' WHERE tenant = 'desk' AND id = 'rep';")
        .await;
    let server = Server::start_postgres(&live, &["--admin-listen", "127.0.0.1:0", "--shadow-source", &candidate]);
    server.ready().await;
    shadow_loaded(&server).await;
    let mut client = server.client().await;

    // The candidate disables rep: counted, while the caller gets the live allow.
    let revoked = r#"rolegate_shadow_mismatches_total{live="GRANTED",shadow="PRINCIPAL_DISABLED"}"#;
    assert!(client.check(reply("rep", 0)).await.unwrap().into_inner().decision.unwrap().allowed);
    wait_until("rep's mismatch to be counted", Duration::from_secs(10), async || {
        (server.metric(revoked).await == 1.0).then_some(())
    })
    .await;

    // A write to the candidate after start is followed: now it also removes other's grant.
    pg::write(&mut c, "desk", "DELETE FROM rolegate.bindings WHERE tenant = 'desk' AND member = 'other';").await;
    let lost = r#"rolegate_shadow_mismatches_total{live="GRANTED",shadow="NO_GRANT"}"#;
    wait_until("the candidate's new write to be compared", Duration::from_secs(20), async || {
        let d = client.check(reply("other", 0)).await.unwrap().into_inner().decision.unwrap();
        assert!(d.allowed, "the live answer, whatever the candidate says: {d:?}");
        (server.metric(lost).await >= 1.0).then_some(())
    })
    .await;

    // A write to the live database changes the answer; the candidate never does.
    let revision = pg::write(
        &mut l,
        "desk",
        "UPDATE rolegate.members SET status = 'disabled' WHERE tenant = 'desk' AND id = 'rep';",
    )
    .await;
    let d = client.check(reply("rep", revision)).await.unwrap().into_inner().decision.unwrap();
    assert_eq!(d.reason, api::Reason::PrincipalDisabled as i32, "{d:?}");
}

/// The PostgreSQL candidate as a schema of the live database (`--shadow-schema`): made with
/// `rolegate migrate --schema`, seeded from the live policy by export and import, and followed on
/// its own channel. Candidate writes (a bad row included) change only what is compared; a live
/// revocation applies to the answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_schema_is_followed_and_compared_and_never_answers() {
    use support::pg;
    let Some(dsn) = pg::database("shadow_schema").await else { return };
    let mut db = pg::connect(&dsn).await;
    pg::desk(&db, "desk").await;
    let tmp = tempfile::tempdir().unwrap();
    let exported = tmp.path().join("live");
    let migrated = pg::rolegate(&["migrate", "--dsn", &dsn, "--schema", "candidate"]);
    assert!(migrated.contains("schema candidate is at version"), "{migrated}");
    pg::rolegate(&["export", "--from", &dsn, exported.to_str().unwrap()]);
    // The candidate also gets a template the live policy lacks; exporting it reads it back.
    let template =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/templates/customer-service-desk.yaml");
    std::fs::copy(&template, exported.join("templates/customer-service-desk.yaml")).unwrap();
    pg::rolegate(&["import", exported.to_str().unwrap(), "--to", &dsn, "--schema", "candidate"]);
    let staged = tmp.path().join("candidate");
    pg::rolegate(&["export", "--from", &dsn, "--schema", "candidate", staged.to_str().unwrap()]);
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap();
    assert_eq!(read(staged.join("desk.yaml")), read(exported.join("desk.yaml")));
    assert_eq!(read(staged.join("templates/customer-service-desk.yaml")), read(template));
    let live_templates = db.query_one("SELECT count(*) FROM rolegate.templates", &[]).await.unwrap();
    assert_eq!(live_templates.get::<_, i64>(0), 0, "the import into the candidate wrote the live schema");
    db.batch_execute("UPDATE candidate.members SET status = 'disabled' WHERE tenant = 'desk' AND id = 'rep'")
        .await
        .unwrap();
    let server = Server::start_postgres(&dsn, &["--admin-listen", "127.0.0.1:0", "--shadow-schema", "candidate"]);
    server.ready().await;
    shadow_loaded(&server).await;
    let mut client = server.client().await;

    // The candidate disables rep: counted, while the caller gets the live allow.
    let revoked = r#"rolegate_shadow_mismatches_total{live="GRANTED",shadow="PRINCIPAL_DISABLED"}"#;
    let d = client.check(reply("rep", 0)).await.unwrap().into_inner();
    assert!(d.decision.unwrap().allowed);
    let live_revision = d.revision;
    wait_until("rep's mismatch to be counted", Duration::from_secs(10), async || {
        (server.metric(revoked).await == 1.0).then_some(())
    })
    .await;

    // A bad row written to the candidate after start: the candidate denies `other` for it,
    // counted; the live answer and revision stay those of the live schema.
    let bad =
        "INSERT INTO candidate.bindings (tenant, member, role, scope) VALUES ('desk', 'other', 'agnet', '\"tenant\"')";
    db.batch_execute(bad).await.unwrap();
    let lost = r#"rolegate_shadow_mismatches_total{live="GRANTED",shadow="NO_GRANT"}"#;
    wait_until("the candidate's bad row to be compared", Duration::from_secs(20), async || {
        let r = client.check(reply("other", 0)).await.unwrap().into_inner();
        let d = r.decision.unwrap();
        assert!(d.allowed && r.revision == live_revision, "the live answer, whatever the candidate says: {d:?}");
        (server.metric(lost).await >= 1.0).then_some(())
    })
    .await;
    // A candidate document that does not compile is kept at its last good version, and never
    // reaches the live policy.
    db.batch_execute("UPDATE candidate.tenants SET document = E'tenant: desk\\nschema: 5\\n' WHERE id = 'desk'")
        .await
        .unwrap();
    server.log_line("the candidate's rejected document", |l| l.contains("shadow tenant failed to load"));
    let r = client.check(reply("other", 0)).await.unwrap().into_inner();
    assert!(r.decision.unwrap().allowed && r.revision == live_revision);

    // A revocation in the live schema applies to the answers.
    let disable = "UPDATE rolegate.members SET status = 'disabled' WHERE tenant = 'desk' AND id = 'rep';";
    let revision = pg::write(&mut db, "desk", disable).await;
    let d = client.check(reply("rep", revision)).await.unwrap().into_inner().decision.unwrap();
    assert_eq!(d.reason, api::Reason::PrincipalDisabled as i32, "{d:?}");
    let ready = server.metric("rolegate_ready").await;
    assert_eq!(ready, 1.0, "the candidate's rejected document never affects readiness");
}

/// Each schema notifies its own channel: a candidate write never wakes a live follower, and a
/// live write never wakes a candidate's. A listener gets its notifications in commit order, so
/// the next one each side gets after a write is that write's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_notifies_only_its_own_channel() {
    use rolegate::source::postgres::{self, schema::Schema};
    use support::pg;
    let Some(dsn) = pg::database("shadow_channels").await else { return };
    pg::rolegate(&["migrate", "--dsn", &dsn, "--schema", "candidate"]);
    let db = pg::connect(&dsn).await;
    let listen = async |schema: &str| {
        let mut cfg = postgres::Config::from_dsn(&dsn, Duration::from_secs(1)).unwrap();
        cfg.schema = Schema::parse(schema).unwrap();
        let (client, notes) = postgres::connect(&cfg).await.unwrap();
        client.batch_execute(&format!("LISTEN {}", cfg.schema.ident())).await.unwrap();
        (client, notes)
    };
    let (_l, mut live) = listen("rolegate").await;
    let (_c, mut candidate) = listen("candidate").await;
    let add = async |schema: &str, tenant: &str| {
        let sql = format!("INSERT INTO {schema}.tenants (id, document) VALUES ('{tenant}', 'tenant: {tenant}')");
        db.batch_execute(&sql).await.unwrap();
    };
    let next = async |notes: &mut tokio::sync::mpsc::UnboundedReceiver<Option<String>>| {
        tokio::time::timeout(Duration::from_secs(10), notes.recv()).await.expect("a notification").flatten()
    };

    add("candidate", "first").await;
    assert_eq!(next(&mut candidate).await.as_deref(), Some("first"));
    add("rolegate", "second").await;
    assert_eq!(next(&mut live).await.as_deref(), Some("second"), "the candidate's write reached the live channel");
    add("candidate", "third").await;
    assert_eq!(next(&mut candidate).await.as_deref(), Some("third"), "the live write reached the candidate's channel");
}
