//! The Inspector over a real `rolegate serve`: Explain agrees with Check and says why, Permissions
//! spells out scopes, Who pages through a large tenant with tokens, and bad pages, limits,
//! `min_revision` and unknown members are answered the way Check answers them.

mod support;

use std::fmt::Write as _;
use std::path::Path;

use rolegate::api::{self, attr_value::Kind, grant_scope};
use rolegate::cli::{load_snapshot, to_api};
use rolegate::engine::{Context, Request, Resource, Value, decide};
use support::server::Server;
use tonic::Code;

type Inspector = api::inspector_client::InspectorClient<tonic::transport::Channel>;

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
}

fn at<T>(msg: T, now: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("rolegate-now", now.parse().unwrap());
    req
}

async fn inspector(server: &Server) -> Inspector {
    api::inspector_client::InspectorClient::new(rolegate::cli::connect(&server.addr).await.unwrap())
}

/// A Tuesday, 10:00 in Shanghai: inside the day shift.
const NOW: &str = "2030-03-05T10:00:00+08:00";

fn desk_request(principal: &str, action: &str, unit: &str, attrs: &[(&str, &str)]) -> Request {
    Request {
        tenant: "meiqia-service-desk".into(),
        principal: principal.into(),
        action: action.into(),
        resource: Resource {
            kind: action.split('.').next().unwrap().into(),
            id: "r-1".into(),
            unit: unit.into(),
            attrs: attrs.iter().map(|(k, v)| (k.to_string(), Value::Text(v.to_string()))).collect(),
        },
        context: Context { client_ip: Some("203.0.113.7".parse().unwrap()), attrs: Default::default() },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_gives_checks_decision_with_the_steps_that_made_it() {
    let server = Server::start(examples(), &["--allow-now-header"]);
    let mut inspect = inspector(&server).await;
    let mut check = server.client().await;
    let requests = [
        desk_request("vendor.ava", "customer.export", "support-l1", &[]),
        desk_request("chen.yu", "conversation.view", "support-l2", &[("assignee", "ma.rui")]),
        desk_request("chen.yu", "conversation.view", "finance", &[("assignee", "qian.yue")]),
        desk_request("chen.yu", "conversation.reply", "presales", &[("assignee", "chen.yu")]),
        desk_request("nobody", "conversation.view", "presales", &[]),
    ];
    let mut explained = Vec::new();
    for req in &requests {
        let checked = check.check(at(to_api(req), NOW)).await.unwrap().into_inner();
        let got = inspect.explain(at(to_api(req), NOW)).await.unwrap().into_inner();
        assert_eq!(got.decision, checked.decision, "{req:?}");
        assert_eq!(got.revision, checked.revision);
        assert_eq!(got.steps.first().map(|s| s.kind.as_str()), Some("principal"), "{:?}", got.steps);
        explained.push(got);
    }
    let step = |i: usize, id: &str| {
        let steps: &Vec<api::Step> = &explained[i].steps;
        steps.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no step `{id}` in {steps:#?}")).clone()
    };
    // The outsourced vendor's export: the deny rule applies, and it is named.
    let d = explained[0].decision.as_ref().unwrap();
    assert_eq!((d.allowed, d.reason), (false, api::Reason::DeniedByRule as i32));
    let rule = step(0, &d.rule);
    assert_eq!((rule.kind.as_str(), rule.applies), ("rule", true), "{rule:?}");
    // chen.yu reads support's threads: the unit scope covers support-l2 but not finance.
    assert!(explained[1].decision.as_ref().unwrap().allowed);
    let reads = step(1, "chen-reads-support");
    assert!(reads.applies && reads.why.contains("grants `conversation.view`"), "{reads:?}");
    let not_finance = step(2, "chen-reads-support");
    assert!(!not_finance.applies, "{not_finance:?}");
    assert!(not_finance.why.contains("scope `{unit: tech-support}` does not cover unit `finance`"), "{not_finance:?}");
    let assigned = step(2, "chen-assigned");
    assert!(assigned.why.contains("resource.attrs.assignee `qian.yue` does not name the member"), "{assigned:?}");
    // An unknown member: one principal step, nothing else.
    assert_eq!(explained[4].steps.len(), 1);
    assert!(!explained[4].steps[0].applies);
    assert_eq!(explained[4].decision.as_ref().unwrap().reason, api::Reason::UnknownPrincipal as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_spell_out_scopes_windows_and_what_may_be_requested() {
    let server = Server::start(examples(), &["--allow-now-header"]);
    let mut inspect = inspector(&server).await;
    let ask = |principal: &str, kind: &str| api::PermissionsRequest {
        tenant: "meiqia-service-desk".into(),
        principal: principal.into(),
        kind: kind.into(),
        context: None,
        min_revision: 0,
    };
    let chen = inspect.permissions(at(ask("chen.yu", "conversation"), NOW)).await.unwrap().into_inner();
    assert_eq!(chen.reason, api::Reason::Unspecified as i32);
    assert!(chen.grants.iter().all(|g| g.action.starts_with("conversation.")), "{:#?}", chen.grants);
    let reads = chen.grants.iter().find(|g| g.binding == "chen-reads-support").expect("chen-reads-support");
    let units = match reads.scope.as_ref().and_then(|s| s.kind.clone()) {
        Some(grant_scope::Kind::Units(l)) => l.values,
        other => panic!("{other:?}"),
    };
    assert_eq!(units, ["tech-support", "support-l1", "support-l2"]);
    let assigned = chen.grants.iter().find(|g| g.binding == "chen-assigned").unwrap();
    assert_eq!(assigned.scope.as_ref().unwrap().kind, Some(grant_scope::Kind::Relation("assignee".into())));

    // lin.xue's approved export is listed with its window; before it, Check denies it.
    let lin = inspect.permissions(at(ask("lin.xue", ""), NOW)).await.unwrap().into_inner();
    let export = lin.grants.iter().find(|g| g.binding == "export-request-1128").expect("export grant");
    assert_eq!(
        export.from.as_ref().map(|t| t.seconds),
        Some("2030-11-28T14:00:00+08:00".parse::<jiff::Timestamp>().unwrap().as_second())
    );
    assert!(!export.requestable);

    let nobody = inspect.permissions(at(ask("nobody", ""), NOW)).await.unwrap().into_inner();
    assert_eq!((nobody.reason, nobody.grants.len()), (api::Reason::UnknownPrincipal as i32, 0));
    let e = inspect.permissions(at(ask("chen.yu", "conversaton"), NOW)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("kind: unknown kind `conversaton`") && e.message().contains("did you mean"),
        "{}",
        e.message()
    );
}

/// A tenant of `n` members: every third is an agent of unit `eu`, every fifth is disabled, and
/// everyone may view conversations assigned to them.
fn big_tenant(n: usize) -> String {
    let mut text = String::from(
        "tenant: big
schema: {conversation: [view, export]}
roles:
  agent: {allow: [conversation.view]}
  viewer: {allow: [conversation.view]}
units: [{id: eu}]
everyone:
  - {role: viewer, scope: {relation: assignee}}
members:
",
    );
    for i in 0..n {
        let status = if i % 5 == 0 { "disabled" } else { "active" };
        let bindings = if i % 3 == 0 { "[{role: agent, scope: {unit: eu}}]" } else { "[]" };
        writeln!(text, "  - {{id: m{i:05}, status: {status}, bindings: {bindings}}}").unwrap();
    }
    text
}

fn who(action: &str, unit: &str, assignee: &str, page_size: u32, page_token: &str) -> api::WhoRequest {
    api::WhoRequest {
        tenant: "big".into(),
        action: action.into(),
        resource: Some(api::Resource {
            kind: "conversation".into(),
            id: "c-1".into(),
            unit: unit.into(),
            attrs: [("assignee".to_owned(), api::AttrValue { kind: Some(Kind::Text(assignee.into())) })].into(),
        }),
        context: None,
        page_size,
        page_token: page_token.into(),
        min_revision: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_pages_through_every_allowed_member_in_document_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.yaml"), big_tenant(2600)).unwrap();
    let server = Server::start(dir.path(), &["--admin-listen", "127.0.0.1:0"]);
    let mut inspect = inspector(&server).await;

    // m00001 is active and not an agent: the `everyone` binding alone lets it view.
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = inspect.who(who("conversation.view", "eu", "m00001", 250, &token)).await.unwrap().into_inner();
        assert!(page.principals.len() <= 250);
        pages.push(page.principals);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(pages.len() >= 3, "{} pages", pages.len());
    let got: Vec<String> = pages.concat();

    // The same set, in document order, from Check on every member.
    let (snapshot, _) = load_snapshot(dir.path()).unwrap();
    let tenant = snapshot.tenant("big").unwrap();
    let now = jiff::Timestamp::now();
    let mut want = Vec::new();
    for m in &tenant.roster {
        let req = Request {
            tenant: "big".into(),
            principal: m.id.to_string(),
            action: "conversation.view".into(),
            resource: Resource {
                kind: "conversation".into(),
                id: "c-1".into(),
                unit: "eu".into(),
                attrs: [("assignee".to_owned(), Value::Text("m00001".into()))].into_iter().collect(),
            },
            context: Context::default(),
        };
        if decide(&snapshot, &req.query(), now).unwrap().allowed {
            want.push(m.id.to_string());
        }
    }
    assert_eq!(got, want);
    assert!(got.contains(&"m00001".to_owned()) && !got.contains(&"m00000".to_owned()));

    // The default page is 100 members; the token continues where the page stopped.
    let first = inspect.who(who("conversation.view", "eu", "", 0, "")).await.unwrap().into_inner();
    assert_eq!(first.principals.len(), 100);
    let second = inspect.who(who("conversation.view", "eu", "", 0, &first.next_page_token)).await.unwrap().into_inner();
    assert_eq!(second.principals.first().map(String::as_str), Some(&*want_agents(&want)[100]));

    // Nobody may export.
    let none = inspect.who(who("conversation.export", "eu", "", 1000, "")).await.unwrap().into_inner();
    assert!(none.principals.is_empty());

    // Counted under its own method.
    assert!(server.metric("rolegate_rpc_duration_seconds_count{method=\"Who\"}").await >= 5.0);
}

/// The agents among `allowed` (every third member, not disabled): who views an unassigned
/// conversation of `eu`.
fn want_agents(allowed: &[String]) -> Vec<String> {
    allowed.iter().filter(|id| id[1..].parse::<usize>().is_ok_and(|i| i % 3 == 0 && i % 5 != 0)).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_limits_and_unreached_revisions_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.yaml"), big_tenant(50)).unwrap();
    let server = Server::start(dir.path(), &["--min-revision-wait", "50ms"]);
    let mut inspect = inspector(&server).await;
    let refused = |r: Result<tonic::Response<api::WhoResponse>, tonic::Status>, code: Code, prefix: &str| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().starts_with(prefix), "{}", e.message());
    };
    let page = inspect.who(who("conversation.view", "eu", "", 3, "")).await.unwrap().into_inner();
    assert_eq!(page.principals, ["m00003", "m00006", "m00009"]);
    for bad in ["garbage", "1.0000000000000000", "zz.0123456789abcdef", &"f".repeat(2000)] {
        refused(inspect.who(who("conversation.view", "eu", "", 3, bad)).await, Code::InvalidArgument, "page_token: ");
    }
    // A token belongs to its listing: another resource or action does not take it.
    let mut other = who("conversation.view", "eu", "", 3, &page.next_page_token);
    other.resource.as_mut().unwrap().id = "c-2".into();
    refused(inspect.who(other).await, Code::InvalidArgument, "page_token: ");
    refused(
        inspect.who(who("conversation.view", "eu", "", 1001, "")).await,
        Code::InvalidArgument,
        "page_size: is 1001, the limit is 1000",
    );
    refused(
        inspect.who(who("conversation.veiw", "eu", "", 3, "")).await,
        Code::InvalidArgument,
        "action: unknown action",
    );
    let mut far = who("conversation.view", "eu", "", 3, "");
    far.min_revision = u64::MAX;
    refused(inspect.who(far).await, Code::Unavailable, "");

    let mut explain = to_api(&Request {
        tenant: "big".into(),
        principal: "m00003".into(),
        action: "conversation.view".into(),
        resource: Resource { kind: "conversation".into(), id: "c".into(), ..Default::default() },
        context: Context::default(),
    });
    explain.min_revision = u64::MAX;
    assert_eq!(inspect.explain(explain.clone()).await.unwrap_err().code(), Code::Unavailable);
    explain.min_revision = 0;
    explain.principal = String::new();
    let e = inspect.explain(explain).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "principal: must not be empty"));

    // The Inspector has its own health status.
    let channel = rolegate::cli::connect(&server.addr).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let ask = tonic_health::pb::HealthCheckRequest { service: "rolegate.v1.Inspector".into() };
    let status = health.check(ask).await.unwrap().into_inner().status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}

fn cli(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rolegate")).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_answers_the_same_from_a_directory_and_from_a_server() {
    let server = Server::start(examples(), &[]);
    let dir = examples().to_str().unwrap();
    let who =
        ["who", "--tenant", "meiqia-service-desk", "--action", "conversation.view", "--resource", "conversation:c-9"];
    let who = [&who[..], &["--unit", "support-l2", "--attr", "assignee=ma.rui", "--page-size", "2", "--format", "csv"]]
        .concat();
    let local = cli(&[&who[..], &["--policies", dir]].concat());
    let remote = cli(&[&who[..], &["--server", &server.addr]].concat());
    assert_eq!(local, remote);
    let rows: Vec<&str> = local.lines().collect();
    assert_eq!(rows[0], "member,action,resource");
    assert!(rows.contains(&"ma.rui,conversation.view,conversation:c-9"), "{local}");
    assert!(rows.contains(&"chen.yu,conversation.view,conversation:c-9"), "{local}");
    assert!(!rows.iter().any(|r| r.starts_with("qian.yue,")), "{local}");

    let perms = ["permissions", "--tenant", "meiqia-service-desk", "--principal", "chen.yu", "--kind", "conversation"];
    let local = cli(&[&perms[..], &["--policies", dir]].concat());
    let remote = cli(&[&perms[..], &["--server", &server.addr]].concat());
    let (local, remote): (serde_json::Value, serde_json::Value) =
        (serde_json::from_str(&local).unwrap(), serde_json::from_str(&remote).unwrap());
    assert_eq!(local["grants"], remote["grants"]);
    assert!(local["grants"].as_array().unwrap().len() >= 3, "{local}");

    let explain =
        ["explain", "--tenant", "meiqia-service-desk", "--principal", "chen.yu", "--action", "conversation.view"];
    let explain =
        [&explain[..], &["--resource", "conversation:c-9", "--unit", "finance", "--format", "table"]].concat();
    let local = cli(&[&explain[..], &["--policies", dir]].concat());
    let remote = cli(&[&explain[..], &["--server", &server.addr]].concat());
    assert_eq!(local.lines().skip(1).collect::<Vec<_>>(), remote.lines().skip(1).collect::<Vec<_>>());
    assert!(local.starts_with("deny NO_GRANT"), "{local}");
    assert!(local.contains("does not cover unit `finance`"), "{local}");
}
