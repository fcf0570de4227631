//! Who may ask, against the real server: TLS and mutual TLS on a TCP listener, rotation of the
//! server certificate while clients call, a bad new certificate kept out, and the callers file
//! limiting tenants and APIs by client certificate and by Unix-socket uid. Every certificate is
//! made here (tests/support/certs.rs).

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rolegate::api::authorizer_client::AuthorizerClient;
use rolegate::api::client::{ClientTls, connect_with};
use rolegate::api::{CheckRequest, CheckResponse};
use support::certs::{Ca, Leaf, San};
use support::server::{Server, desk, reply};
use support::wait_until;
use tonic::Code;
use tonic::transport::Channel;

type Client = AuthorizerClient<Channel>;

/// A policy directory with tenant `desk`, a certificate authority and a server certificate
/// from it, all in one temporary directory.
struct Setup {
    dir: tempfile::TempDir,
    ca: Ca,
    ca_path: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        desk(&dir.path().join("policies"), "active");
        let ca = Ca::new("rolegate test CA");
        let ca_path = ca.write(dir.path(), "ca.crt");
        let (cert, key) = ca.server().write(dir.path(), "server");
        Setup { dir, ca, ca_path, cert, key }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the server with TLS (and `extra` flags) and the admin port.
    fn start(&self, extra: &[&str]) -> Server {
        let (cert, key) = (self.cert.to_str().unwrap(), self.key.to_str().unwrap());
        let mut flags = vec!["--tls-cert", cert, "--tls-key", key, "--admin-listen", "127.0.0.1:0"];
        flags.extend_from_slice(extra);
        Server::start(&self.path("policies"), &flags)
    }

    /// Writes a client certificate named `name` with `sans` and returns its files.
    fn client_cert(&self, ca: &Ca, name: &str, sans: &[San]) -> (PathBuf, PathBuf) {
        ca.client(sans).write(self.dir.path(), name)
    }
}

/// A client trusting `ca` and presenting `identity`, if any.
async fn tls_client(addr: &str, ca: &Path, identity: Option<(PathBuf, PathBuf)>) -> anyhow::Result<Client> {
    let tls = ClientTls { ca: ca.to_owned(), identity, server_name: Some("localhost".into()) };
    Ok(AuthorizerClient::new(connect_with(addr, Some(&tls)).await?))
}

/// Whether a client so configured gets a decision: the connection and the call both succeed.
async fn decides(addr: &str, ca: &Path, identity: Option<(PathBuf, PathBuf)>) -> Result<bool, String> {
    let mut client = tls_client(addr, ca, identity).await.map_err(|e| format!("{e:#}"))?;
    let answer = client.check(reply("rep", 0)).await.map_err(|s| format!("{}: {}", s.code(), s.message()))?;
    Ok(answer.into_inner().decision.unwrap_or_default().allowed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_gets_nothing_from_a_tls_listener() {
    let setup = Setup::new();
    let server = setup.start(&[]);
    assert_eq!(decides(&server.addr, &setup.ca_path, None).await, Ok(true), "a TLS client is served");
    let plain = match rolegate::cli::connect(&server.addr).await {
        Ok(channel) => AuthorizerClient::new(channel).check(reply("rep", 0)).await.map_err(|s| s.code()),
        Err(_) => Err(Code::Unavailable),
    };
    assert!(plain.is_err(), "a plaintext client got {plain:?}");
    wait_until("the failed handshake to be counted", Duration::from_secs(10), async || {
        (server.metric("rolegate_tls_handshake_failures_total").await >= 1.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_current_certificates_of_the_client_authority() {
    let setup = Setup::new();
    let ca = setup.ca_path.to_str().unwrap().to_owned();
    let server = setup.start(&["--tls-client-ca", &ca]);
    let good = setup.client_cert(&setup.ca, "inbox", &[San::Dns("inbox.svc")]);
    assert_eq!(decides(&server.addr, &setup.ca_path, Some(good.clone())).await, Ok(true));
    assert_eq!(server.metric("rolegate_tls_handshake_failures_total").await, 0.0);

    // The CLI asks the same way.
    let (cert, key) = (good.0.to_str().unwrap(), good.1.to_str().unwrap());
    let tls = ["--tls-ca", &ca, "--tls-cert", cert, "--tls-key", key, "--tls-server-name", "localhost"];
    let ask =
        ["--tenant", "desk", "--principal", "rep", "--action", "conversation.reply", "--resource", "conversation:c1"];
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rolegate"))
        .args(["check", "--server", &server.addr])
        .args(tls)
        .args(ask)
        .args(["--attr", "assignee=rep"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(json["allowed"], true, "{}", String::from_utf8_lossy(&out.stderr));

    let stranger = Ca::new("another CA");
    let foreign = setup.client_cert(&stranger, "foreign", &[San::Dns("inbox.svc")]);
    let expired = setup.ca.expired_client(&[San::Dns("inbox.svc")]).write(setup.dir.path(), "expired");
    for (what, identity) in
        [("no certificate", None), ("another CA's", Some(foreign)), ("an expired one", Some(expired))]
    {
        let failed = server.metric("rolegate_tls_handshake_failures_total").await;
        let answer = decides(&server.addr, &setup.ca_path, identity).await;
        assert!(answer.is_err(), "a client with {what} got {answer:?}");
        wait_until("the failed handshake to be counted", Duration::from_secs(10), async || {
            (server.metric("rolegate_tls_handshake_failures_total").await > failed).then_some(())
        })
        .await;
    }
}

/// Points `dir/current` at `dir/<version>`, atomically, as a Kubernetes secret volume does.
fn swap_to(dir: &Path, version: &str) {
    let next = dir.join("next");
    let _ = std::fs::remove_file(&next);
    std::os::unix::fs::symlink(dir.join(version), &next).unwrap();
    std::fs::rename(&next, dir.join("current")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_server_certificate_loses_no_call() {
    let setup = Setup::new();
    // The server reads its credentials through a symlinked directory, and both authorities
    // are trusted by the clients, so the rotation can also switch issuers.
    let secret = setup.path("secret");
    let next_ca = Ca::new("next CA");
    for (version, leaf) in [("v1", setup.ca.server()), ("v2", next_ca.server())] {
        std::fs::create_dir_all(secret.join(version)).unwrap();
        leaf.write(&secret.join(version), "tls");
    }
    swap_to(&secret, "v1");
    let both = setup.path("both.crt");
    std::fs::write(&both, setup.ca.pem() + &next_ca.pem()).unwrap();
    let only_next = next_ca.write(setup.dir.path(), "next.crt");
    let (cert, key) = (secret.join("current/tls.crt"), secret.join("current/tls.key"));
    let flags = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    let server = Server::start(&setup.path("policies"), &flags);
    assert!(decides(&server.addr, &only_next, None).await.is_err(), "the next certificate is not served yet");

    // One client keeps its connection; another opens a new one for every call.
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut long = tls_client(&server.addr, &both, None).await.unwrap();
    let callers = [true, false].map(|fresh| {
        let (addr, both, stop) = (server.addr.clone(), both.clone(), stop.clone());
        let (calls, failures, mut long) = (calls.clone(), failures.clone(), long.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let answer: Result<tonic::Response<CheckResponse>, String> = if fresh {
                    match tls_client(&addr, &both, None).await {
                        Ok(mut c) => c.check(reply("rep", 0)).await.map_err(|s| s.to_string()),
                        Err(e) => Err(format!("{e:#}")),
                    }
                } else {
                    long.check(reply("rep", 0)).await.map_err(|s| s.to_string())
                };
                calls.fetch_add(1, Ordering::Relaxed);
                if !answer.is_ok_and(|a| a.into_inner().decision.is_some_and(|d| d.allowed)) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    });
    wait_until("calls before the rotation", Duration::from_secs(10), async || {
        (calls.load(Ordering::Relaxed) >= 20).then_some(())
    })
    .await;
    swap_to(&secret, "v2");
    wait_until("the rotated certificate to be served", Duration::from_secs(10), async || {
        decides(&server.addr, &only_next, None).await.ok()
    })
    .await;
    let after = calls.load(Ordering::Relaxed) + 20;
    wait_until("calls after the rotation", Duration::from_secs(10), async || {
        (calls.load(Ordering::Relaxed) >= after).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "of {} calls", calls.load(Ordering::Relaxed));
    assert!(long.check(reply("rep", 0)).await.is_ok(), "the connection opened before the rotation still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_new_certificate_is_reported_and_the_old_one_kept() {
    let setup = Setup::new();
    let server = setup.start(&[]);
    assert_eq!(decides(&server.addr, &setup.ca_path, None).await, Ok(true));
    // A certificate that does not match the key: a rotation caught half-way.
    let other: Leaf = setup.ca.server();
    std::fs::write(&setup.cert, &other.cert).unwrap();
    wait_until("the failed reload to be counted", Duration::from_secs(10), async || {
        (server.metric("rolegate_credential_reload_failures_total{file=\"tls\"}").await == 1.0).then_some(())
    })
    .await;
    server
        .log_line("naming the files", |l| l.contains("cannot reload the TLS credentials") && l.contains("server.crt"));
    assert_eq!(decides(&server.addr, &setup.ca_path, None).await, Ok(true), "the old certificate still serves");
    // Reported once, not at every poll.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(server.metric("rolegate_credential_reload_failures_total{file=\"tls\"}").await, 1.0);
    // Completing the rotation applies it.
    std::fs::write(&setup.key, &other.key).unwrap();
    server.log_line("after the fix", |l| l.contains("TLS credentials reloaded"));
    assert_eq!(decides(&server.addr, &setup.ca_path, None).await, Ok(true));
}

fn callers_file(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A call of a method the server does not have, by path, with a `CheckRequest` body: the
/// callers check answers before routing would.
async fn call_path(channel: Channel, path: &'static str, tenant: &str) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<CheckRequest, CheckResponse>::default();
    let request = CheckRequest { tenant: tenant.into(), ..reply("rep", 0) };
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(request), path, codec).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_certificate_for_one_tenant_gets_no_decision_about_another() {
    let setup = Setup::new();
    let ca = setup.ca_path.to_str().unwrap().to_owned();
    let callers = callers_file(
        &setup.path("callers.yaml"),
        "callers:
  - id: spiffe://cluster.local/ns/inbox/sa/inbox-api
    tenants: [desk]
    apis: [check]
  - id: dns:crm-export.crm.svc
    tenants: [acme-*]
    apis: [\"*\"]
",
    );
    let server = setup.start(&["--tls-client-ca", &ca, "--callers", &callers]);
    let inbox = setup.client_cert(&setup.ca, "inbox", &[San::Uri("spiffe://cluster.local/ns/inbox/sa/inbox-api")]);
    let export = setup.client_cert(&setup.ca, "export", &[San::Dns("crm-export.crm.svc")]);
    let nobody = setup.client_cert(&setup.ca, "nobody", &[San::Dns("stranger.svc")]);

    let mut client = tls_client(&server.addr, &setup.ca_path, Some(inbox.clone())).await.unwrap();
    let allowed = client.check(reply("rep", 0)).await.unwrap().into_inner();
    assert!(allowed.decision.unwrap().allowed, "its own tenant is decided");
    let other = client.check(CheckRequest { tenant: "acme-eu".into(), ..reply("rep", 0) }).await.unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);
    assert_eq!(
        other.message(),
        "caller `spiffe://cluster.local/ns/inbox/sa/inbox-api` may not ask about tenant `acme-eu` (check API)"
    );
    let channel = connect_with(&server.addr, Some(&tls(&setup.ca_path, inbox))).await.unwrap();
    let plan = AuthorizerClient::new(channel).plan(plan_request("desk")).await.unwrap_err();
    assert_eq!(
        (plan.code(), plan.message()),
        (Code::PermissionDenied, "caller `spiffe://cluster.local/ns/inbox/sa/inbox-api` may not use the plan API")
    );

    // Another caller's entry is its own: the export service may ask about acme-* only.
    let mut export_client = tls_client(&server.addr, &setup.ca_path, Some(export.clone())).await.unwrap();
    let denied = export_client.check(reply("rep", 0)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let unknown = export_client.check(CheckRequest { tenant: "acme-eu".into(), ..reply("rep", 0) }).await.unwrap();
    assert!(!unknown.into_inner().decision.unwrap().allowed, "an admitted call reaches the engine");
    let channel = connect_with(&server.addr, Some(&tls(&setup.ca_path, export))).await.unwrap();
    let admitted = AuthorizerClient::new(channel.clone()).plan(plan_request("acme-eu")).await;
    assert!(
        admitted.as_ref().err().is_none_or(|s| s.code() != Code::PermissionDenied),
        "admitted to plan, the call reaches the service: {admitted:?}"
    );
    let unknown = call_path(channel, "/rolegate.v1.Authorizer/Export", "acme-eu").await.unwrap_err();
    assert_eq!(
        (unknown.code(), unknown.message()),
        (Code::PermissionDenied, "caller `dns:crm-export.crm.svc` may not call this method: it is in no API group")
    );

    // A certificate the file does not name gets no decision, but probes still answer it.
    let mut stranger = tls_client(&server.addr, &setup.ca_path, Some(nobody.clone())).await.unwrap();
    let refused = stranger.check(reply("rep", 0)).await.unwrap_err();
    assert_eq!(
        (refused.code(), refused.message()),
        (Code::PermissionDenied, "caller `dns:stranger.svc` is not in the callers file")
    );
    let channel = connect_with(&server.addr, Some(&tls(&setup.ca_path, nobody))).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let probe = tonic_health::pb::HealthCheckRequest { service: String::new() };
    assert!(health.check(probe).await.is_ok(), "health stays open to every connected caller");

    assert_eq!(server.metric("rolegate_caller_denied_total{api=\"check\"}").await, 3.0);
    assert_eq!(server.metric("rolegate_caller_denied_total{api=\"plan\"}").await, 1.0);
    assert_eq!(server.metric("rolegate_caller_denied_total{api=\"unknown\"}").await, 1.0);
    server.log_line("naming caller, tenant and method", |l| {
        l.contains("call refused") && l.contains("acme-eu") && l.contains("/rolegate.v1.Authorizer/Check")
    });

    // The file is reloaded: a bad version is reported and the old one kept; a good one applies.
    std::fs::write(&callers, "callers:\n  - id: dns:x\n    tenants: [desk]\n    apis: [export]\n").unwrap();
    server.log_line("naming file and line", |l| l.contains("callers.yaml:2: unknown API group `export`"));
    assert_eq!(server.metric("rolegate_credential_reload_failures_total{file=\"callers\"}").await, 1.0);
    assert!(client.check(reply("rep", 0)).await.is_ok(), "the previous table still applies");
    callers_file(
        Path::new(&callers),
        "callers:\n  - {id: \"spiffe://cluster.local/ns/inbox/sa/inbox-api\", tenants: [acme-*], apis: [check]}\n",
    );
    wait_until("the new callers file to apply", Duration::from_secs(10), async || {
        client.check(reply("rep", 0)).await.is_err_and(|s| s.code() == Code::PermissionDenied).then_some(())
    })
    .await;
}

fn plan_request(tenant: &str) -> rolegate::api::PlanRequest {
    rolegate::api::PlanRequest {
        tenant: tenant.into(),
        principal: "rep".into(),
        action: "conversation.reply".into(),
        ..Default::default()
    }
}

fn tls(ca: &Path, identity: (PathBuf, PathBuf)) -> ClientTls {
    ClientTls { ca: ca.to_owned(), identity: Some(identity), server_name: Some("localhost".into()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_peer_is_matched_by_its_uid() {
    let setup = Setup::new();
    let uid = support::uid();
    let callers = callers_file(
        &setup.path("callers.yaml"),
        &format!("callers:\n  - {{id: \"uid:{uid}\", tenants: [desk], apis: [check]}}\n"),
    );
    let socket = setup.path("rolegate.sock");
    let unix = format!("unix:{}", socket.display());
    let server = Server::start(&setup.path("policies"), &["--listen", &unix, "--callers", &callers]);
    let mut client = AuthorizerClient::new(rolegate::cli::connect(&unix).await.unwrap());
    assert!(client.check(reply("rep", 0)).await.unwrap().into_inner().decision.unwrap().allowed);
    let other = client.check(CheckRequest { tenant: "globex".into(), ..reply("rep", 0) }).await.unwrap_err();
    assert_eq!(other.message(), format!("caller `uid:{uid}` may not ask about tenant `globex` (check API)"));
    // A TCP caller has no identity: it is named by nothing in the file.
    let mut tcp = server.client().await;
    let refused = tcp.check(reply("rep", 0)).await.unwrap_err();
    assert_eq!((refused.code(), refused.message()), (Code::PermissionDenied, "caller `-` is not in the callers file"));
    callers_file(
        Path::new(&callers),
        &format!("callers:\n  - {{id: \"uid:{}\", tenants: [\"*\"], apis: [\"*\"]}}\n", uid + 1),
    );
    wait_until("another uid's entry to apply", Duration::from_secs(10), async || {
        let answer = client.check(reply("rep", 0)).await;
        answer.is_err_and(|s| s.message() == format!("caller `uid:{uid}` is not in the callers file")).then_some(())
    })
    .await;
}
