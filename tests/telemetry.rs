//! Traces reach a real OTLP receiver with the caller's parent span; `/metrics` counts known
//! traffic; the decision log records denies and alerts with the caller's trace id.

mod support;

use std::path::Path;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use rolegate::api::{self, attr_value::Kind};
use support::server::Server;
use support::wait_until;

fn desk(dir: &Path) {
    std::fs::write(
        dir.join("desk.yaml"),
        "tenant: desk
schema: {conversation: [view, reply, export]}
roles: {agent: {allow: [\"conversation.*\"]}}
members:
  - {id: rep, bindings: [{id: rep-assigned, role: agent, scope: {relation: assignee}}]}
  - {id: vendor, attrs: {employment: outsourced}, bindings: [{role: agent, scope: tenant}]}
rules:
  - {id: outsourced-no-export, effect: deny, actions: [conversation.export], when: {principal: {employment: outsourced}}, alert: true}
",
    )
    .unwrap();
}

fn ask(who: &str, action: &str, assignee: &str, traceparent: Option<&str>) -> tonic::Request<api::CheckRequest> {
    let mut req = tonic::Request::new(api::CheckRequest {
        tenant: "desk".into(),
        principal: who.into(),
        action: action.into(),
        resource: Some(api::Resource {
            kind: "conversation".into(),
            id: "c-9".into(),
            unit: String::new(),
            attrs: [("assignee".to_owned(), api::AttrValue { kind: Some(Kind::Text(assignee.into())) })].into(),
        }),
        context: None,
        min_revision: 0,
    });
    if let Some(tp) = traceparent {
        req.metadata_mut().insert("traceparent", tp.parse().unwrap());
    }
    req
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Any> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()).and_then(|v| v.value.as_ref())
}

async fn scrape(admin: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(admin).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).await.unwrap();
    body
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_metrics_and_decision_log_describe_real_checks() {
    let (endpoint, mut spans) = support::otlp::receiver().await;

    let dir = tempfile::tempdir().unwrap();
    desk(dir.path());
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("decisions.jsonl");
    let server = Server::start_with_env(
        dir.path(),
        &["--admin-listen", "127.0.0.1:0", "--decision-log", log.to_str().unwrap()],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("OTEL_SERVICE_NAME", "rolegate-test")],
    );
    let mut client = server.client().await;

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let tp = format!("00-{trace}-{parent}-01");
    // Known traffic: 2 allows, 1 deny (no grant), 1 alerting deny, 1 caller error.
    assert!(
        client
            .check(ask("rep", "conversation.reply", "rep", Some(&tp)))
            .await
            .unwrap()
            .into_inner()
            .decision
            .unwrap()
            .allowed
    );
    assert!(
        client
            .check(ask("rep", "conversation.view", "rep", None))
            .await
            .unwrap()
            .into_inner()
            .decision
            .unwrap()
            .allowed
    );
    assert!(
        !client
            .check(ask("rep", "conversation.view", "other", Some(&tp)))
            .await
            .unwrap()
            .into_inner()
            .decision
            .unwrap()
            .allowed
    );
    let alert = client
        .check(ask("vendor", "conversation.export", "x", Some(&tp)))
        .await
        .unwrap()
        .into_inner()
        .decision
        .unwrap();
    assert!(!alert.allowed && alert.alert);
    assert!(client.check(ask("rep", "conversation.nope", "rep", None)).await.is_err());

    // The first span is the traced allow: its parent is the caller's span.
    let span = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let s = spans.recv().await.expect("receiver closed");
            if attr(&s, "rolegate.rule") == Some(&Any::StringValue("rep-assigned".into())) {
                return s;
            }
        }
    })
    .await
    .expect("no span reached the OTLP receiver");
    assert_eq!(span.name, "rolegate.v1.Authorizer/Check");
    assert_eq!(hex(&span.trace_id), trace);
    assert_eq!(hex(&span.parent_span_id), parent);
    assert_eq!(attr(&span, "rolegate.tenant"), Some(&Any::StringValue("desk".into())));
    assert_eq!(attr(&span, "rolegate.action"), Some(&Any::StringValue("conversation.reply".into())));
    assert_eq!(attr(&span, "rolegate.allowed"), Some(&Any::BoolValue(true)));
    assert_eq!(attr(&span, "rolegate.reason"), Some(&Any::StringValue("GRANTED".into())));
    assert_eq!(attr(&span, "rolegate.cache_hit"), Some(&Any::BoolValue(false)));
    assert!(
        matches!(attr(&span, "rolegate.revision"), Some(Any::IntValue(r)) if *r > 0),
        "{:?}",
        attr(&span, "rolegate.revision")
    );
    assert_eq!(attr(&span, "rpc.system"), Some(&Any::StringValue("grpc".into())));
    assert_eq!(attr(&span, "rpc.service"), Some(&Any::StringValue("rolegate.v1.Authorizer".into())));
    assert_eq!(attr(&span, "rpc.method"), Some(&Any::StringValue("Check".into())));

    let text = scrape(server.admin.as_deref().unwrap()).await;
    assert_eq!(metric(&text, "rolegate_decisions_total{method=\"Check\",result=\"allow\",reason=\"GRANTED\"}"), 2.0);
    assert_eq!(metric(&text, "rolegate_decisions_total{method=\"Check\",result=\"deny\",reason=\"NO_GRANT\"}"), 1.0);
    assert_eq!(
        metric(&text, "rolegate_decisions_total{method=\"Check\",result=\"deny\",reason=\"DENIED_BY_RULE\"}"),
        1.0
    );
    assert_eq!(metric(&text, "rolegate_rpc_errors_total{method=\"Check\",code=\"invalid_argument\"}"), 1.0);
    assert_eq!(metric(&text, "rolegate_rpc_duration_seconds_count{method=\"Check\"}"), 5.0);
    // The first load, plus any periodic rescans since.
    assert!(metric(&text, "rolegate_reloads_total{source=\"dir\",result=\"ok\"}") >= 1.0);
    assert_eq!(metric(&text, "rolegate_ready"), 1.0);

    // Denies and alerts are logged; allows are not sampled by default.
    let lines = wait_until("two decision log entries", Duration::from_secs(10), async || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        (lines.len() >= 2).then_some(lines)
    })
    .await;
    let entries: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(entries.len(), 2, "{lines:#?}");
    let deny = &entries[0];
    assert_eq!(deny["reason"], "NO_GRANT");
    assert_eq!(deny["trace_id"], trace);
    assert_eq!(deny["principal"], "rep");
    assert_eq!(deny["resource"]["id"], "c-9");
    assert_eq!(deny["severity"], "info");
    let alert = &entries[1];
    assert_eq!(alert["severity"], "alert");
    assert_eq!(alert["rule"], "outsourced-no-export");
    assert!(alert["revision"].as_u64().unwrap() > 0);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
