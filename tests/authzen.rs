//! The AuthZEN binding against a real `rolegate serve --authzen-listen`: the working group's
//! interop Todo suite, agreement with gRPC `Check` on every example policy test case, each
//! endpoint, each error, each evaluations semantic, the bearer token, readiness and h2c.

mod support;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::StatusCode;
use rolegate::api;
use rolegate::cli::to_api;
use rolegate::source::files;
use rolegate::suite;
use serde_json::{Value as Json, json};
use support::server::Server;
use support::wait_until;

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
}

/// An HTTP answer: status, headers, body.
struct Answer {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Json {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One request over a fresh connection: HTTP/1.1, or h2c with prior knowledge when `h2`.
async fn send(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str, h2: bool) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the AuthZEN listener");
    let io = hyper_util::rt::TokioIo::new(stream);
    let mut req = hyper::Request::builder().method(method).uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let resp = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    };
    let (parts, body) = resp.into_parts();
    let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Answer { status: parts.status, headers: parts.headers, body }
}

async fn post(addr: &str, path: &str, body: &Json) -> Answer {
    send(addr, "POST", path, &[("content-type", "application/json")], &body.to_string(), false).await
}

fn authzen(server: &Server) -> &str {
    server.authzen.as_deref().expect("started with --authzen-listen")
}

const TODO: &str = "/tenants/authzen-todo/access/v1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interop_todo_suite_passes_every_case() {
    let server = Server::start(examples(), &["--authzen-listen", "127.0.0.1:0"]);
    let addr = authzen(&server);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/authzen/decisions-authorization-api-1_0-02.json");
    let suite: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (mut passed, mut failed) = (0, Vec::new());
    for (i, case) in suite["evaluation"].as_array().unwrap().iter().enumerate() {
        let answer = post(addr, &format!("{TODO}/evaluation"), &case["request"]).await;
        assert_eq!(answer.status, StatusCode::OK, "evaluation {i}: {}", answer.body);
        let got = answer.json();
        if got["decision"] == case["expected"] {
            passed += 1;
        } else {
            failed.push(format!("evaluation {i}: {} → {got}", case["request"]));
        }
    }
    for (i, case) in suite["evaluations"].as_array().unwrap().iter().enumerate() {
        let answer = post(addr, &format!("{TODO}/evaluations"), &case["request"]).await;
        assert_eq!(answer.status, StatusCode::OK, "evaluations {i}: {}", answer.body);
        let got: Vec<Json> = answer.json()["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| json!({"decision": d["decision"]}))
            .collect();
        if Json::Array(got.clone()) == case["expected"] {
            passed += 1;
        } else {
            failed.push(format!("evaluations {i}: expected {} got {got:?}", case["expected"]));
        }
    }
    assert!(failed.is_empty(), "{} passed, failed:\n{}", passed, failed.join("\n"));
    assert_eq!(passed, 43, "the published suite has 40 evaluations and 3 batches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_case_gets_the_same_answer_over_authzen_as_over_grpc() {
    let server = Server::start(examples(), &["--allow-now-header", "--authzen-listen", "127.0.0.1:0"]);
    let addr = authzen(&server).to_owned();
    let mut client = server.client().await;
    let listing = files::scan(examples()).unwrap();
    let (mut compared, mut errors) = (0, 0);
    for file in &listing.tests {
        let text = std::fs::read_to_string(file).unwrap();
        let suite = suite::parse(&file.display().to_string(), &text).unwrap();
        for case in &suite.cases {
            let req = to_api(&case.request);
            let now = case.now.to_string();
            let mut grpc = tonic::Request::new(req.clone());
            grpc.metadata_mut().insert("rolegate-now", now.parse().unwrap());
            let grpc = client.check(grpc).await;
            let path = format!("/tenants/{}/access/v1/evaluation", req.tenant);
            let headers = [("content-type", "application/json"), ("rolegate-now", now.as_str())];
            let http =
                send(&addr, "POST", &path, &headers, &api::authzen::evaluation_body(&req).to_string(), false).await;
            match grpc {
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{}", case.name);
                    // AuthZEN names the action by the resource's type: a kind mismatch over gRPC
                    // is a different question over AuthZEN, asked about the resource's kind.
                    let same_kind =
                        req.action.split_once('.').map(|(k, _)| k) == Some(case.request.resource.kind.as_str());
                    if same_kind {
                        assert_eq!(http.status, StatusCode::BAD_REQUEST, "{}: {}", case.name, http.body);
                        assert!(http.body.starts_with("action.name:"), "{}: {}", case.name, http.body);
                        errors += 1;
                    }
                }
                Ok(resp) => {
                    assert_eq!(http.status, StatusCode::OK, "{}: {}", case.name, http.body);
                    let resp = resp.into_inner();
                    let want = resp.decision.unwrap();
                    let got = http.json();
                    assert_eq!(got["decision"], json!(want.allowed), "{}: {got}", case.name);
                    let ctx = &got["context"];
                    assert_eq!(ctx["reason"], json!(want.reason().as_str_name()), "{}", case.name);
                    assert_eq!(ctx["rule"].as_str().unwrap_or_default(), want.rule, "{}", case.name);
                    let mask: Vec<String> = ctx["mask"]
                        .as_array()
                        .map_or_else(Vec::new, |m| m.iter().map(|v| v.as_str().unwrap().to_owned()).collect());
                    assert_eq!(mask, want.mask, "{}", case.name);
                    assert_eq!(ctx["review"].as_bool().unwrap_or(false), want.review, "{}", case.name);
                    assert_eq!(ctx["requestable"].as_bool().unwrap_or(false), want.requestable, "{}", case.name);
                    assert_eq!(ctx["alert"].as_bool().unwrap_or(false), want.alert, "{}", case.name);
                    assert_eq!(ctx["revision"], json!(resp.revision), "{}", case.name);
                    assert_eq!(ctx["valid_until"].is_string(), want.valid_until.is_some(), "{}", case.name);
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 150 && errors > 0, "compared {compared} decisions and {errors} errors");
}

fn todo_request(subject: &str, verb: &str, owner: &str) -> Json {
    json!({
        "subject": {"type": "user", "id": subject},
        "action": {"name": verb},
        "resource": {"type": "todo", "id": "t-1", "properties": {"ownerID": owner}},
    })
}

const RICK: &str = "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
const MORTY: &str = "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
const BETH: &str = "CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
const SUMMER: &str = "CiRmZDI2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
const JERRY: &str = "CiRmZDQ2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_is_a_status_with_a_message_naming_the_field() {
    let server = Server::start(examples(), &["--authzen-listen", "127.0.0.1:0"]);
    let addr = authzen(&server);
    let eval = format!("{TODO}/evaluation");
    let good = todo_request(MORTY, "can_update_todo", "morty@the-citadel.com");
    let mut cases: Vec<(Json, &str)> = Vec::new();
    let without = |key: &str| {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(key);
        b
    };
    cases.push((without("subject"), "subject:"));
    cases.push((without("action"), "action:"));
    cases.push((without("resource"), "resource:"));
    let mut b = good.clone();
    b["subject"] = json!({"type": "user"});
    cases.push((b, "subject.id:"));
    let mut b = good.clone();
    b["action"]["name"] = json!("can_fly");
    cases.push((b, "action.name: unknown action `todo.can_fly`"));
    let mut b = good.clone();
    b["resource"]["type"] = json!(42);
    cases.push((b, "resource.type: must be a string"));
    let mut b = good.clone();
    b["resource"]["properties"]["ownerID"] = json!({"nested": true});
    cases.push((b, "resource.properties[ownerID]:"));
    let mut b = good.clone();
    b["resource"]["properties"]["tags"] = json!(vec!["x"; 300]);
    cases.push((b, "resource.properties[tags]: list has 300 values, the limit is 256"));
    let mut b = good.clone();
    b["context"] = json!({"client_ip": "not-an-ip"});
    cases.push((b, "context.client_ip:"));
    for (body, prefix) in &cases {
        let a = post(addr, &eval, body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.body);
        assert!(a.body.starts_with(prefix), "{body}: want `{prefix}…`, got {}", a.body);
    }

    // Unknown fields are ignored.
    let mut b = good.clone();
    b["resource"]["extra"] = json!({"deep": [1, 2]});
    b["something_new"] = json!(true);
    let a = post(addr, &eval, &b).await;
    assert_eq!((a.status, a.json()["decision"].clone()), (StatusCode::OK, json!(true)), "{}", a.body);

    // Unknown tenant, bad bodies, wrong content type, wrong method, unknown path.
    let a = post(addr, "/tenants/nobody/access/v1/evaluation", &good).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.starts_with("tenant: unknown tenant `nobody`"), "{}", a.body);
    for body in ["", "[1]", "{\"subject\":", "nul"] {
        let a = send(addr, "POST", &eval, &[("content-type", "application/json")], body, false).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body:?}");
        assert!(a.body.starts_with("body:"), "{body:?}: {}", a.body);
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let a = send(addr, "POST", &eval, &[("content-type", "application/json")], &deep, false).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "a deep document is refused, not a crash");
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(5 << 20));
    let a = send(addr, "POST", &eval, &[("content-type", "application/json")], &huge, false).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.starts_with("body: over 4194304 bytes"), "{}", a.body);
    let a = send(addr, "POST", &eval, &[("content-type", "text/plain")], &good.to_string(), false).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.starts_with("content-type:"), "{}", a.body);
    let a = send(addr, "GET", &eval, &[], "", false).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    let a = post(addr, "/tenants/authzen-todo/access/v1/search/resource", &good).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "resource search is not offered");

    // The server still answers after all of that.
    let a = post(addr, &eval, &good).await;
    assert_eq!(a.json()["decision"], json!(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_merge_defaults_and_honour_each_semantic_on_one_snapshot() {
    let server = Server::start(examples(), &["--authzen-listen", "127.0.0.1:0"]);
    let addr = authzen(&server);
    let path = format!("{TODO}/evaluations");
    // allow, deny, allow for Morty: his own todo, Rick's, his own again.
    let items = json!([
        {"resource": {"type": "todo", "id": "1", "properties": {"ownerID": "morty@the-citadel.com"}}},
        {"resource": {"type": "todo", "id": "2", "properties": {"ownerID": "rick@the-citadel.com"}}},
        {"resource": {"type": "todo", "id": "3", "properties": {"ownerID": "morty@the-citadel.com"}}}
    ]);
    let ask = |semantic: Option<&str>| {
        let mut b = json!({"subject": {"type": "user", "id": MORTY}, "action": {"name": "can_update_todo"}, "evaluations": items});
        if let Some(s) = semantic {
            b["options"] = json!({"evaluations_semantic": s});
        }
        b
    };
    let decisions = |a: Answer| -> Vec<bool> {
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let j = a.json();
        let revs: Vec<&Json> = j["evaluations"].as_array().unwrap().iter().map(|d| &d["context"]["revision"]).collect();
        assert!(revs.windows(2).all(|w| w[0] == w[1]), "one snapshot for the whole call: {revs:?}");
        j["evaluations"].as_array().unwrap().iter().map(|d| d["decision"].as_bool().unwrap()).collect()
    };
    assert_eq!(decisions(post(addr, &path, &ask(None)).await), [true, false, true]);
    assert_eq!(decisions(post(addr, &path, &ask(Some("execute_all"))).await), [true, false, true]);
    assert_eq!(decisions(post(addr, &path, &ask(Some("deny_on_first_deny"))).await), [true, false]);
    assert_eq!(decisions(post(addr, &path, &ask(Some("permit_on_first_permit"))).await), [true]);
    let a = post(addr, &path, &ask(Some("first_wins"))).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.starts_with("options.evaluations_semantic:"), "{}", a.body);

    // An item overrides a default; an item missing what no default gives is named.
    let b = json!({"subject": {"type": "user", "id": BETH}, "action": {"name": "can_read_todos"}, "evaluations": [
        {"resource": {"type": "todo", "id": "1"}},
        {"subject": {"type": "user", "id": RICK}, "action": {"name": "can_delete_todo"}, "resource": {"type": "todo", "id": "2"}},
        {"action": {"name": "can_delete_todo"}, "resource": {"type": "todo", "id": "3"}}
    ]});
    assert_eq!(decisions(post(addr, &path, &b).await), [true, true, false]);
    let b = json!({"evaluations": [{"subject": {"type": "user", "id": BETH}, "action": {"name": "can_read_todos"}}]});
    let a = post(addr, &path, &b).await;
    assert!(a.body.starts_with("evaluations[0].resource: is required"), "{}", a.body);
    let b = json!({"subject": {"type": "user", "id": BETH}, "evaluations": [
        {"action": {"name": "can_read_todos"}, "resource": {"type": "todo", "id": "1"}},
        {"action": {"name": "can_sing"}, "resource": {"type": "todo", "id": "1"}}
    ]});
    let a = post(addr, &path, &b).await;
    assert!(a.body.starts_with("evaluations[1].action.name: unknown action"), "{}", a.body);
    let many: Vec<Json> = (0..1001).map(|_| json!({})).collect();
    let a = post(addr, &path, &json!({"evaluations": many})).await;
    assert!(a.body.starts_with("evaluations: has 1001 items, the limit is 1000"), "{}", a.body);

    // Without an `evaluations` array the call is a single evaluation.
    let a = post(addr, &path, &todo_request(BETH, "can_read_todos", "")).await;
    assert_eq!(a.json()["decision"], json!(true), "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_search_metadata_request_ids_and_h2c() {
    let server = Server::start(examples(), &["--authzen-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
    let addr = authzen(&server);
    let search = |who: &str, owner: &str| json!({"subject": {"type": "user", "id": who}, "resource": {"type": "todo", "id": "1", "properties": {"ownerID": owner}}});
    let names = |a: Answer| -> Vec<String> {
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let j = a.json();
        assert_eq!(j["page"]["next_token"], json!(""));
        j["results"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect()
    };
    let path = format!("{TODO}/search/action");
    assert_eq!(
        names(post(addr, &path, &search(MORTY, "morty@the-citadel.com")).await),
        ["can_read_todos", "can_create_todo", "can_update_todo", "can_delete_todo"]
    );
    assert_eq!(
        names(post(addr, &path, &search(MORTY, "rick@the-citadel.com")).await),
        ["can_read_todos", "can_create_todo"]
    );
    assert_eq!(names(post(addr, &path, &search(BETH, "beth@the-smiths.com")).await), ["can_read_todos"]);
    let mut bad = search(BETH, "x");
    bad["resource"]["type"] = json!("spaceship");
    let a = post(addr, &path, &bad).await;
    assert!(a.body.starts_with("resource.type: unknown resource type `spaceship`"), "{}", a.body);

    let a = send(
        addr,
        "GET",
        "/.well-known/authzen-configuration/tenants/authzen-todo",
        &[("host", "pdp.example")],
        "",
        false,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let meta = a.json();
    assert_eq!(meta["policy_decision_point"], json!("http://pdp.example/tenants/authzen-todo"));
    assert_eq!(
        meta["access_evaluation_endpoint"],
        json!("http://pdp.example/tenants/authzen-todo/access/v1/evaluation")
    );
    assert_eq!(
        meta["search_action_endpoint"],
        json!("http://pdp.example/tenants/authzen-todo/access/v1/search/action")
    );
    assert!(meta.get("search_resource_endpoint").is_none(), "resource search is not offered");

    let headers = [("content-type", "application/json"), ("x-request-id", "req-7")];
    let body = todo_request(RICK, "can_delete_todo", "jerry@the-smiths.com").to_string();
    let a = send(addr, "POST", &format!("{TODO}/evaluation"), &headers, &body, false).await;
    assert_eq!(a.headers.get("x-request-id").unwrap(), "req-7");
    assert_eq!(a.json()["decision"], json!(true));
    let a = send(addr, "POST", &format!("{TODO}/evaluation"), &headers, &body, true).await;
    assert_eq!((a.status, a.json()["decision"].clone()), (StatusCode::OK, json!(true)), "h2c with prior knowledge");

    let evaluations = server
        .metric("rolegate_decisions_total{method=\"AuthzenEvaluation\",result=\"allow\",reason=\"GRANTED\"}")
        .await;
    assert_eq!(evaluations, 2.0, "each AuthZEN decision is counted under its own method");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_is_required_when_configured_and_follows_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first-secret\n").unwrap();
    let token_arg = token.to_str().unwrap();
    let server = Server::start(examples(), &["--authzen-listen", "127.0.0.1:0", "--authzen-token-file", token_arg]);
    let addr = authzen(&server).to_owned();
    let body = todo_request(BETH, "can_read_todos", "").to_string();
    let path = format!("{TODO}/evaluation");
    let call = async |auth: Option<&str>| {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        send(&addr, "POST", &path, &headers, &body, false).await
    };
    let a = call(None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.headers.get("www-authenticate").unwrap(), "Bearer");
    assert_eq!(call(Some("Bearer wrong")).await.status, StatusCode::FORBIDDEN);
    assert_eq!(call(Some("Basic Zmlyc3Qtc2VjcmV0")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(Some("Bearer first-secret")).await.status, StatusCode::OK);

    // Rotated: the new token is accepted and the old one refused, without a restart; an empty
    // file keeps the last good token.
    std::fs::write(&token, "second-secret").unwrap();
    wait_until("the new token to apply", Duration::from_secs(10), async || {
        (call(Some("Bearer second-secret")).await.status == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(call(Some("Bearer first-secret")).await.status, StatusCode::FORBIDDEN);
    std::fs::write(&token, "").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(call(Some("Bearer second-secret")).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_first_snapshot_every_call_is_unavailable_never_an_allow() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-yet");
    let server = Server::start(&missing, &["--authzen-listen", "127.0.0.1:0"]);
    let addr = authzen(&server);
    let a = post(addr, &format!("{TODO}/evaluation"), &todo_request(RICK, "can_read_todos", "")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    let b = json!({"subject": {"type": "user", "id": RICK}, "action": {"name": "can_read_todos"},
                   "evaluations": [{"resource": {"type": "todo", "id": "1"}}]});
    let a = post(addr, &format!("{TODO}/evaluations"), &b).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert!(!a.body.contains("decision"), "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_header_continues_the_callers_trace_and_names_it_in_the_decision_log() {
    let (otlp, mut spans) = support::otlp::receiver().await;
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("decisions.jsonl");
    let server = Server::start_with_env(
        examples(),
        &["--authzen-listen", "127.0.0.1:0", "--decision-log", log.to_str().unwrap()],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp), ("OTEL_SERVICE_NAME", "rolegate-test")],
    );
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4737", "00f067aa0ba902b8");
    let tp = format!("00-{trace}-{parent}-01");
    let headers = [("content-type", "application/json"), ("traceparent", tp.as_str())];
    // A deny, so the default decision log records it.
    let body = todo_request(BETH, "can_delete_todo", "beth@the-smiths.com").to_string();
    let a = send(authzen(&server), "POST", &format!("{TODO}/evaluation"), &headers, &body, false).await;
    assert_eq!(a.json()["decision"], json!(false), "{}", a.body);

    let span = tokio::time::timeout(Duration::from_secs(15), spans.recv()).await.expect("a span").expect("open");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(span.name, "POST /tenants/{tenant}/access/v1/evaluation");
    assert_eq!((hex(&span.trace_id), hex(&span.parent_span_id)), (trace.to_owned(), parent.to_owned()));
    let line = wait_until("the decision log line", Duration::from_secs(10), async || {
        std::fs::read_to_string(&log).ok().filter(|t| t.contains(trace))
    })
    .await;
    assert!(line.contains("todo.can_delete_todo") && line.contains("NO_GRANT"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_search_pages_through_the_members_check_allows_in_document_order() {
    let server = Server::start(examples(), &["--authzen-listen", "127.0.0.1:0"]);
    let addr = authzen(&server).to_owned();
    let path = format!("{TODO}/search/subject");
    let ask = |verb: &str, owner: &str, page: Json| {
        json!({"subject": {"type": "user", "id": "ignored"}, "action": {"name": verb},
               "resource": {"type": "todo", "id": "t-9", "properties": {"ownerID": owner}}, "page": page})
    };
    // Every page, following next_token until it is empty.
    let all = async |verb: &str, owner: &str, limit: Option<u64>| -> (Vec<String>, usize) {
        let (mut found, mut pages, mut token) = (Vec::new(), 0, String::new());
        loop {
            let mut page = json!({"token": token});
            if let Some(l) = limit {
                page["limit"] = json!(l);
            }
            let a = post(&addr, &path, &ask(verb, owner, page)).await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            let j = a.json();
            for r in j["results"].as_array().unwrap() {
                assert_eq!(r["type"], json!("user"), "the subject type is echoed");
                found.push(r["id"].as_str().unwrap().to_owned());
            }
            pages += 1;
            token = j["page"]["next_token"].as_str().unwrap().to_owned();
            if token.is_empty() {
                return (found, pages);
            }
        }
    };
    let (readers, pages) = all("can_read_todos", "x", None).await;
    let everyone: Vec<String> = [RICK, MORTY, SUMMER, BETH, JERRY].iter().map(|s| s.to_string()).collect();
    assert_eq!((readers, pages), (everyone.clone(), 1), "every member reads, in document order, in one default page");
    let (readers, pages) = all("can_read_todos", "x", Some(2)).await;
    assert_eq!(readers, everyone);
    assert!(pages >= 3, "five members two at a time take three pages, not {pages}");
    let (updaters, _) = all("can_update_todo", "morty@the-citadel.com", Some(1)).await;
    assert_eq!(updaters, [RICK, MORTY], "the admin and the owner");

    // The same answer as asking each member.
    for member in &everyone {
        let a = post(
            &addr,
            &format!("{TODO}/evaluation"),
            &todo_request(member, "can_update_todo", "morty@the-citadel.com"),
        )
        .await;
        assert_eq!(a.json()["decision"].as_bool().unwrap(), updaters.contains(member), "{member}");
    }

    for (page, prefix) in [
        (json!({"token": "not-a-token"}), "page.token:"),
        (json!({"limit": 1001}), "page.limit: is 1001, the limit is 1000"),
        (json!({"limit": -1}), "page.limit:"),
    ] {
        let a = post(&addr, &path, &ask("can_read_todos", "x", page.clone())).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{page}");
        assert!(a.body.starts_with(prefix), "{page}: {}", a.body);
    }
    // A token of one listing does not continue another.
    let first = post(&addr, &path, &ask("can_read_todos", "x", json!({"limit": 1}))).await.json();
    let token = first["page"]["next_token"].as_str().unwrap().to_owned();
    let a = post(&addr, &path, &ask("can_delete_todo", "x", json!({"token": token, "limit": 1}))).await;
    assert!(a.body.starts_with("page.token:"), "{}", a.body);
    let a = post(&addr, &path, &json!({"action": {"name": "can_read_todos"}, "resource": {"type": "todo", "id": "1"}}))
        .await;
    assert!(a.body.starts_with("subject: is required"), "{}", a.body);
}

/// One HTTP/1.1 request over a Unix socket.
async fn send_unix(socket: &Path, path: &str, body: &Json) -> Answer {
    let stream = tokio::net::UnixStream::connect(socket).await.expect("connect to the AuthZEN socket");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let (parts, body) = sender.send_request(req).await.unwrap().into_parts();
    let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Answer { status: parts.status, headers: parts.headers, body }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_file_admits_authzen_callers_by_tenant_and_api_group() {
    let dir = tempfile::tempdir().unwrap();
    let callers = dir.path().join("callers.yaml");
    let uid = support::uid();
    std::fs::write(&callers, format!("callers:\n  - {{id: \"uid:{uid}\", tenants: [authzen-todo], apis: [check]}}\n"))
        .unwrap();
    let socket = dir.path().join("authzen.sock");
    let listen = format!("unix:{}", socket.display());
    let server = Server::start(
        examples(),
        &["--authzen-listen", &listen, "--callers", callers.to_str().unwrap(), "--admin-listen", "127.0.0.1:0"],
    );
    let eval = todo_request(BETH, "can_read_todos", "");
    let a = send_unix(&socket, &format!("{TODO}/evaluation"), &eval).await;
    assert_eq!((a.status, a.json()["decision"].clone()), (StatusCode::OK, json!(true)), "{}", a.body);
    let a = send_unix(&socket, "/tenants/meiqia-service-desk/access/v1/evaluation", &eval).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.body.trim(), format!("caller `uid:{uid}` may not ask about tenant `meiqia-service-desk` (check API)"));
    let search = json!({"subject": {"type": "user"}, "action": {"name": "can_read_todos"}, "resource": {"type": "todo", "id": "1"}});
    let a = send_unix(&socket, &format!("{TODO}/search/subject"), &search).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "searches are the inspect group: {}", a.body);
    assert_eq!(server.metric("rolegate_caller_denied_total{api=\"check\"}").await, 1.0);
    assert_eq!(server.metric("rolegate_caller_denied_total{api=\"inspect\"}").await, 1.0);
}
