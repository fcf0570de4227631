//! Reloading the policy directory under hostile files, with the real server on a real socket:
//! revisions never go back, unreadable entries and churning files never stop reloads, broken
//! documents keep their last good version, half-written saves are never loaded, and readiness
//! means a tenant is served.

mod support;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rolegate::api;
use support::server::{Server, desk, desk_text, reply};
use support::wait_until;
use tonic::transport::Channel;

type Client = api::authorizer_client::AuthorizerClient<Channel>;

async fn ask(client: &mut Client, who: &str) -> (api::Decision, u64) {
    let r = client.check(reply(who, 0)).await.unwrap().into_inner();
    (r.decision.unwrap(), r.revision)
}

/// Asks for `rep` until the answer's reason is `reason` (the observable signal of a reload),
/// for at most `within`.
async fn until_reason(client: &mut Client, reason: api::Reason, within: Duration) -> (api::Decision, u64) {
    wait_until(&format!("a {reason:?} answer for `rep`"), within, async || {
        let (d, rev) = ask(client, "rep").await;
        (d.reason == reason as i32).then_some((d, rev))
    })
    .await
}

/// The directory source's reloads so far, good or failed.
async fn reloads(server: &Server) -> f64 {
    server.metric("rolegate_reloads_total{source=\"dir\",result=\"ok\"}").await
        + server.metric("rolegate_reloads_total{source=\"dir\",result=\"failed\"}").await
}

/// Waits until `server` has done `n` more reloads than `before`.
async fn until_reloads(server: &Server, before: f64, n: f64) {
    wait_until(&format!("{n} more reloads"), Duration::from_secs(10), async || {
        (reloads(server).await >= before + n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_tenant_with_a_disabled_member_never_gets_a_cached_allow_back() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let server = Server::start(dir.path(), &["--cache-capacity", "1000"]);
    let mut client = server.client().await;
    let (first, r1) = ask(&mut client, "rep").await;
    assert!(first.allowed);
    assert!(ask(&mut client, "rep").await.0.allowed, "cached now");

    std::fs::remove_file(dir.path().join("desk.yaml")).unwrap();
    until_reason(&mut client, api::Reason::UnknownTenant, Duration::from_secs(10)).await;
    desk(dir.path(), "disabled");
    let (d, r2) = until_reason(&mut client, api::Reason::PrincipalDisabled, Duration::from_secs(10)).await;
    assert!(!d.allowed);
    assert!(r2 > r1, "the revision went back from {r1} to {r2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dangling_symlink_and_a_symlink_loop_do_not_stop_a_revocation() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let server = Server::start(dir.path(), &["--admin-listen", "127.0.0.1:0"]);
    let mut client = server.client().await;
    let (first, r1) = ask(&mut client, "rep").await;
    assert!(first.allowed);

    let sub = dir.path().join("team");
    std::fs::create_dir(&sub).unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone.yaml"), dir.path().join("dangling.yaml")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("self.yaml"), dir.path().join("self.yaml")).unwrap();
    std::os::unix::fs::symlink(dir.path(), sub.join("loop")).unwrap();
    desk(dir.path(), "disabled");
    let (_, r2) = until_reason(&mut client, api::Reason::PrincipalDisabled, Duration::from_secs(10)).await;
    assert!(r2 > r1);
    server.log_line("naming the unreadable entry `dangling.yaml`", |l| l.contains("dangling.yaml"));
    assert!(server.metric("rolegate_reloads_total{source=\"dir\",result=\"failed\"}").await >= 1.0);

    // The same folder does not block readiness at start either.
    let again = Server::start(dir.path(), &[]);
    let mut client = again.client().await;
    assert_eq!(ask(&mut client, "rep").await.0.reason, api::Reason::PrincipalDisabled as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rewritten_every_50ms_does_not_hold_off_a_revocation() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let churn = desk_text("active", "").replace("tenant: desk", "tenant: churn");
    std::fs::write(dir.path().join("churn.yaml"), &churn).unwrap();
    let server = Server::start_tuned(dir.path(), "100ms", "2s", &[], true);
    let mut client = server.client().await;
    assert!(ask(&mut client, "rep").await.0.allowed);

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes, path) = (stop.clone(), writes.clone(), dir.path().join("churn.yaml"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::fs::write(&path, &churn).unwrap();
                writes.fetch_add(1, Ordering::Relaxed);
                // The subject of the test: a rewrite every 50 ms, more often than the debounce.
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    // The revocation lands while the churn keeps the debounce busy.
    let churning = async || (writes.load(Ordering::Relaxed) >= 6).then_some(());
    wait_until("six rewrites of the churning file", Duration::from_secs(10), churning).await;
    desk(dir.path(), "disabled");
    // At most the maximum debounce wait (1 s) and one more debounce interval, with slack for a
    // busy machine.
    let result = tokio::time::timeout(
        Duration::from_secs(6),
        until_reason(&mut client, api::Reason::PrincipalDisabled, Duration::from_secs(6)),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(result.is_ok(), "the revocation was held off by a churning file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_syntax_error_keeps_the_last_good_tenant_counted_and_stale_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let server = Server::start(dir.path(), &["--admin-listen", "127.0.0.1:0"]);
    let mut client = server.client().await;
    let (_, r1) = ask(&mut client, "rep").await;

    std::fs::write(dir.path().join("desk.yaml"), "tenant: desk\nroles: [agent\n").unwrap();
    server.log_line("about the syntax error in `desk.yaml`", |l| l.contains("desk.yaml") && l.contains("error"));
    // Several more rescans (every 200 ms) must not drop the tenant.
    until_reloads(&server, reloads(&server).await, 3.0).await;
    let (d, rev) = ask(&mut client, "rep").await;
    assert!(d.allowed, "the last good version keeps serving: {d:?}");
    assert_eq!(rev, r1);
    assert_eq!(server.metric("rolegate_tenant_load_failures_total{source=\"dir\"}").await, 1.0);
    assert_eq!(server.metric("rolegate_stale_tenants{source=\"dir\"}").await, 1.0);

    desk(dir.path(), "disabled");
    until_reason(&mut client, api::Reason::PrincipalDisabled, Duration::from_secs(10)).await;
    until_reloads(&server, reloads(&server).await, 1.0).await;
    assert_eq!(server.metric("rolegate_stale_tenants{source=\"dir\"}").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_saved_in_two_chunks_is_never_loaded_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let rule = "rules: [{id: no-reply, effect: deny, actions: [conversation.reply]}]\n";
    std::fs::write(dir.path().join("desk.yaml"), desk_text("active", rule)).unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client().await;
    let (d, r1) = ask(&mut client, "rep").await;
    assert_eq!(d.reason, api::Reason::DeniedByRule as i32);

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (mut client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut allowed = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (d, rev) = ask(&mut client, "rep").await;
                if d.allowed {
                    allowed.push(rev);
                }
                // Pacing, not synchronisation: sample often, yet leave the cores to the server.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            allowed
        })
    };
    let path = dir.path().join("desk.yaml");
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(desk_text("active", "# saved again\n").as_bytes()).unwrap();
        f.flush().unwrap();
        // The subject of the test: the save pauses between its two chunks, longer than the
        // debounce.
        std::thread::sleep(Duration::from_millis(300));
        f.write_all(rule.as_bytes()).unwrap();
    })
    .await
    .unwrap();
    let (d, _) = wait_until("the full document to load", Duration::from_secs(10), async || {
        let (d, rev) = ask(&mut client, "rep").await;
        (rev > r1).then_some((d, rev))
    })
    .await;
    assert_eq!(d.reason, api::Reason::DeniedByRule as i32);
    stop.store(true, Ordering::Relaxed);
    let allowed = watcher.await.unwrap();
    assert!(allowed.is_empty(), "the half-written document was served at revisions {allowed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_folder_or_a_first_load_that_failed_is_not_ready() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_tuned(dir.path(), "20ms", "100ms", &["--admin-listen", "127.0.0.1:0"], false);
    let admin = server.admin.as_deref().expect("the admin listener, awaited at start");
    let channel = rolegate::cli::connect(&server.addr).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = || tonic_health::pb::HealthCheckRequest { service: "rolegate.v1.Authorizer".into() };
    let readyz = || async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(admin).await.unwrap();
        conn.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut body = String::new();
        conn.read_to_string(&mut body).await.unwrap();
        body
    };
    for stage in ["empty", "broken"] {
        if stage == "broken" {
            std::fs::write(dir.path().join("desk.yaml"), "tenant: desk\nroles: [agent\n").unwrap();
        }
        until_reloads(&server, reloads(&server).await, 2.0).await;
        let s = health.check(status()).await.unwrap().into_inner().status;
        assert_eq!(s, ServingStatus::NotServing as i32, "{stage} folder reported SERVING");
        assert!(readyz().await.starts_with("HTTP/1.1 503"), "{stage} folder: /readyz is not 503");
        assert_eq!(server.metric("rolegate_ready").await, 0.0, "{stage} folder: rolegate_ready is not 0");
    }
    desk(dir.path(), "active");
    server.ready().await;
    assert!(readyz().await.starts_with("HTTP/1.1 200"));
    assert_eq!(server.metric("rolegate_ready").await, 1.0);
}
