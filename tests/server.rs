//! The real server on a real socket: every example scenario over gRPC, batches, reloads,
//! readiness, `min_revision`, caller errors, load during reloads and graceful shutdown.

mod support;

use std::path::Path;
use std::time::Duration;

use rolegate::api::{self, attr_value::Kind};
use rolegate::cli::{load_snapshot, to_api};
use rolegate::engine::decide;
use rolegate::source::files;
use rolegate::suite;
use support::server::{Server, desk, hold_the_only_slot, reply};
use support::wait_until;
use tonic::Code;

type Client = api::authorizer_client::AuthorizerClient<tonic::transport::Channel>;

fn with_now<T>(msg: T, now: &jiff::Timestamp) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("rolegate-now", now.to_string().parse().unwrap());
    req
}

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_scenario_over_grpc_agrees_with_the_engine_and_with_batches() {
    let server = Server::start(examples(), &["--allow-now-header", "--cache-capacity", "10000"]);
    let mut client = server.client().await;
    let (snapshot, _) = load_snapshot(examples()).unwrap();
    let listing = files::scan(examples()).unwrap();
    let mut checked = 0;
    for file in &listing.tests {
        let text = std::fs::read_to_string(file).unwrap();
        let suite = suite::parse(&file.display().to_string(), &text).unwrap();
        for case in &suite.cases {
            let local = decide(&snapshot, &case.request.query(), case.now);
            let remote = client.check(with_now(to_api(&case.request), &case.now)).await;
            let batch = client
                .check_batch(with_now(
                    api::CheckBatchRequest {
                        tenant: case.request.tenant.clone(),
                        principal: case.request.principal.clone(),
                        context: to_api(&case.request).context,
                        min_revision: 0,
                        items: vec![api::BatchItem {
                            action: case.request.action.clone(),
                            resource: to_api(&case.request).resource,
                        }],
                    },
                    &case.now,
                ))
                .await;
            match local {
                Err(_) => {
                    assert_eq!(remote.unwrap_err().code(), Code::InvalidArgument, "{}", case.name);
                    assert_eq!(batch.unwrap_err().code(), Code::InvalidArgument, "{}", case.name);
                }
                Ok(d) => {
                    let want = rolegate::server::convert::decision(&d);
                    let got = remote.unwrap_or_else(|e| panic!("{}: {e}", case.name)).into_inner();
                    assert_eq!(got.decision.as_ref(), Some(&want), "{}", case.name);
                    let b = batch.unwrap().into_inner();
                    assert_eq!(b.decisions, vec![want], "{}", case.name);
                    assert_eq!(b.revision, got.revision);
                    // The policy test's own expectation, through the wire.
                    assert_eq!(got.decision.unwrap().allowed, case.expect == suite::Expect::Allow, "{}", case.name);
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} cases");
}

async fn wait_for_revision(client: &mut Client, after: u64) -> api::CheckResponse {
    wait_until(&format!("a revision past {after}"), Duration::from_secs(10), async || {
        let r = client.check(reply("rep", 0)).await.unwrap().into_inner();
        (r.revision > after).then_some(r)
    })
    .await
}

/// Sends `call` to a server started with `--max-concurrency 1` and returns once it holds the
/// only slot (see `hold_the_only_slot`).
async fn inside_the_only_slot(
    client: &Client,
    call: api::CheckRequest,
) -> tokio::task::JoinHandle<Result<tonic::Response<api::CheckResponse>, tonic::Status>> {
    hold_the_only_slot(client, call, client, reply("other", 0)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_member_denies_after_the_revision_changes_even_when_cached_and_a_broken_file_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let server = Server::start(dir.path(), &["--cache-capacity", "1000"]);
    let mut client = server.client().await;
    let first = client.check(reply("rep", 0)).await.unwrap().into_inner();
    assert!(first.decision.unwrap().allowed);
    // Cached now; the next answer must still follow the reload.
    assert!(client.check(reply("rep", 0)).await.unwrap().into_inner().decision.unwrap().allowed);

    desk(dir.path(), "disabled");
    let after = wait_for_revision(&mut client, first.revision).await;
    let d = after.decision.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.reason, api::Reason::PrincipalDisabled as i32);

    // A broken document never replaces the last good snapshot.
    std::fs::write(dir.path().join("desk.yaml"), "tenant: desk\nroles: {agent: {alow: [x]}}\n").unwrap();
    server.log_line("naming `desk.yaml` and the unknown key `alow`", |l| {
        l.contains("desk.yaml") && l.contains("unknown key `alow`")
    });
    let still = client.check(reply("other", 0)).await.unwrap().into_inner();
    assert_eq!(still.revision, after.revision);
    assert!(still.decision.unwrap().allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_serving_only_after_the_first_load() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    let server = Server::start(&policies, &[]);
    let channel = rolegate::cli::connect(&server.addr).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let ask = || tonic_health::pb::HealthCheckRequest { service: "rolegate.v1.Authorizer".into() };
    let status = health.check(ask()).await.unwrap().into_inner().status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::NotServing as i32);
    let mut client = server.client().await;
    assert_eq!(client.check(reply("rep", 0)).await.unwrap_err().code(), Code::Unavailable);

    std::fs::create_dir(&policies).unwrap();
    desk(&policies, "active");
    server.ready().await;
    assert!(client.check(reply("rep", 0)).await.unwrap().into_inner().decision.unwrap().allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_revision_waits_for_a_change_then_fails_naming_both_revisions() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    // One slot, so that a shed probe shows the waiting call has arrived before the change.
    let server = Server::start(dir.path(), &["--min-revision-wait", "800ms", "--max-concurrency", "1"]);
    let mut client = server.client().await;
    let rev = client.check(reply("rep", 0)).await.unwrap().into_inner().revision;

    let pending = inside_the_only_slot(&client, reply("rep", rev + 1)).await;
    desk(dir.path(), "disabled");
    let got = pending.await.unwrap().unwrap().into_inner();
    assert!(got.revision > rev);
    assert!(!got.decision.unwrap().allowed, "the answer reflects the change it waited for");

    let err = client.check(reply("rep", got.revision + 100)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.message().contains(&got.revision.to_string()) && err.message().contains(&(got.revision + 100).to_string()),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_errors_are_invalid_argument_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client().await;
    let mut cases: Vec<(api::CheckRequest, &str)> = Vec::new();
    let mut r = reply("rep", 0);
    r.tenant.clear();
    cases.push((r, "tenant: must not be empty"));
    // An oversize tenant id is refused by its size, never looked up: also when it asks for a
    // revision (the path that could wait).
    for min_revision in [0, 1 << 40] {
        let mut r = reply("rep", min_revision);
        r.tenant = "t".repeat(5000);
        cases.push((r, "tenant: is 5000 bytes, the limit is 1024"));
    }
    let mut r = reply("rep", 0);
    r.principal.clear();
    cases.push((r, "principal: must not be empty"));
    let mut r = reply("rep", 0);
    r.action = "conversation.replay".into();
    cases.push((r, "unknown action `conversation.replay` for tenant `desk` (did you mean `conversation.reply`?)"));
    let mut r = reply("rep", 0);
    r.resource.as_mut().unwrap().kind = "customer".into();
    cases.push((r, "does not apply to resource kind `customer`"));
    let mut r = reply("rep", 0);
    r.resource = None;
    cases.push((r, "resource: is required"));
    let mut r = reply("rep", 0);
    r.context = Some(api::Context { client_ip: "300.1.2.3".into(), attrs: Default::default() });
    cases.push((r, "context.client_ip: `300.1.2.3` is not an IP address"));
    let mut r = reply("rep", 0);
    r.resource
        .as_mut()
        .unwrap()
        .attrs
        .insert("big".into(), api::AttrValue { kind: Some(Kind::Text("x".repeat(2000))) });
    cases.push((r, "resource.attrs[big]: is 2000 bytes, the limit is 1024"));
    let mut r = reply("rep", 0);
    r.resource.as_mut().unwrap().attrs.insert(
        "tags".into(),
        api::AttrValue { kind: Some(Kind::List(api::StringList { values: vec!["t".into(); 300] })) },
    );
    cases.push((r, "resource.attrs[tags]: list has 300 values, the limit is 256"));
    let mut r = reply("rep", 0);
    for i in 0..65 {
        r.resource.as_mut().unwrap().attrs.insert(format!("a{i}"), api::AttrValue { kind: Some(Kind::Int(i)) });
    }
    cases.push((r, "resource.attrs: has 66 attributes, the limit is 64"));
    let mut r = reply("rep", 0);
    r.resource.as_mut().unwrap().attrs.insert("unset".into(), api::AttrValue { kind: None });
    cases.push((r, "resource.attrs[unset]: value is not set"));
    for (req, want) in cases {
        let err = client.check(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{want}");
        assert!(err.message().contains(want), "`{}` lacks `{want}`", err.message());
    }
    let too_many = api::CheckBatchRequest {
        tenant: "desk".into(),
        principal: "rep".into(),
        context: None,
        min_revision: 0,
        items: vec![api::BatchItem { action: "conversation.view".into(), resource: reply("rep", 0).resource }; 1001],
    };
    let err = client.check_batch(too_many).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("items: has 1001 items, the limit is 1000"), "{}", err.message());
    let mut bad_item = api::CheckBatchRequest {
        tenant: "desk".into(),
        principal: "rep".into(),
        context: None,
        min_revision: 0,
        items: vec![api::BatchItem { action: "conversation.view".into(), resource: reply("rep", 0).resource }; 3],
    };
    let huge_tenant = api::CheckBatchRequest { tenant: "t".repeat(5000), ..bad_item.clone() };
    let err = client.check_batch(huge_tenant).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "tenant: is 5000 bytes, the limit is 1024");
    bad_item.items[2].action = "conversation.nope".into();
    let err = client.check_batch(bad_item).await.unwrap_err();
    assert!(err.message().starts_with("items[2].action: unknown action"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_during_repeated_reloads_see_no_error_and_no_stale_answer() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let server = Server::start(dir.path(), &["--cache-capacity", "1000"]);
    let client = server.client().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (mut c, stop) = (client.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            // Per revision, the answer must be the one that revision's file gives. Revisions
            // alternate active/disabled, so remember what each revision answered.
            let mut seen: std::collections::HashMap<u64, bool> = Default::default();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = c
                    .check(reply("rep", 0))
                    .await
                    .unwrap_or_else(|e| panic!("error during reloads: {e:?}"))
                    .into_inner();
                let allowed = r.decision.unwrap().allowed;
                assert_eq!(
                    *seen.entry(r.revision).or_insert(allowed),
                    allowed,
                    "revision {} answered both ways",
                    r.revision
                );
                n += 1;
            }
            (n, seen)
        }));
    }
    let mut watcher = client.clone();
    let mut revision = watcher.check(reply("rep", 0)).await.unwrap().into_inner().revision;
    for i in 0..20 {
        desk(dir.path(), if i % 2 == 0 { "disabled" } else { "active" });
        // Each change is applied before the next, so the workers see every reload.
        revision = wait_for_revision(&mut watcher, revision).await.revision;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all: std::collections::HashMap<u64, bool> = Default::default();
    for w in workers {
        let (n, seen) = w.await.unwrap();
        assert!(n > 10);
        for (rev, allowed) in seen {
            assert_eq!(*all.entry(rev).or_insert(allowed), allowed, "revision {rev} answered both ways across workers");
        }
    }
    assert!(all.len() > 3, "too few reloads observed: {all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_serves_and_sigterm_finishes_in_flight_calls() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let sock = dir.path().join("rolegate.sock");
    let unix = format!("unix:{}", sock.display());
    // One slot, so that a shed probe shows the waiting call has arrived before SIGTERM.
    let flags = ["--listen", &unix, "--min-revision-wait", "900ms", "--max-concurrency", "1"];
    let mut server = Server::start(dir.path(), &flags);
    wait_until("the socket file", Duration::from_secs(10), async || sock.exists().then_some(())).await;
    let mut over_unix = api::authorizer_client::AuthorizerClient::new(rolegate::cli::connect(&unix).await.unwrap());
    let rev = over_unix.check(reply("rep", 0)).await.unwrap().into_inner().revision;
    // A call that waits inside the server when SIGTERM arrives must still get its answer.
    let pending = inside_the_only_slot(&server.client().await, reply("rep", rev + 1)).await;
    let status = server.terminate().await;
    assert!(status.success(), "exit status {status}");
    let err = pending.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "the in-flight call finished with its own answer: {err:?}");
    assert!(err.message().contains("at least"), "{}", err.message());
    assert!(!sock.exists(), "the socket file is removed on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_concurrency_limit_are_shed_with_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let server = Server::start(dir.path(), &["--max-concurrency", "1", "--min-revision-wait", "600ms"]);
    let client = server.client().await;
    let rev = client.clone().check(reply("rep", 0)).await.unwrap().into_inner().revision;
    // The first call holds the only slot while it waits for a revision that never comes.
    let held = inside_the_only_slot(&client, reply("rep", rev + 1)).await;
    let mut shed = 0;
    for _ in 0..5 {
        match client.clone().check(reply("rep", 0)).await {
            Err(e) if e.code() == Code::ResourceExhausted => shed += 1,
            other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
        }
    }
    assert_eq!(shed, 5);
    assert_eq!(held.await.unwrap().unwrap_err().code(), Code::Unavailable);
    // Once the slot is free, calls are served again.
    assert!(client.clone().check(reply("rep", 0)).await.unwrap().into_inner().decision.unwrap().allowed);
}
