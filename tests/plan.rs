//! `Authorizer.Plan` against a real `rolegate serve`: on every example tenant the filter it sends
//! holds for a resource exactly when Check allows it; caller errors are `INVALID_ARGUMENT` naming
//! the field; `min_revision` is honoured; plans are counted.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use rolegate::api::{self, PlanRequest, PlanResponse};
use rolegate::engine::{Filter, Reason, Resource};
use rolegate::server::authorizer::NOW_HEADER;
use rolegate::suite;
use support::server::{Server, desk, reply};
use tonic::Code;
use tonic::transport::Channel;

type Client = api::authorizer_client::AuthorizerClient<Channel>;

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
}

fn at<T>(msg: T, now: &jiff::Timestamp) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(NOW_HEADER, now.to_string().parse().unwrap());
    req
}

async fn plan(client: &mut Client, req: PlanRequest, now: &jiff::Timestamp) -> Result<PlanResponse, tonic::Status> {
    client.plan(at(req, now)).await.map(tonic::Response::into_inner)
}

fn plan_request(tenant: &str, principal: &str, action: &str, context: Option<api::Context>) -> PlanRequest {
    PlanRequest { tenant: tenant.into(), principal: principal.into(), action: action.into(), context, min_revision: 0 }
}

/// Every case of the examples' policy tests, grouped by tenant.
fn cases() -> BTreeMap<String, Vec<suite::Case>> {
    let mut out: BTreeMap<String, Vec<suite::Case>> = BTreeMap::new();
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with("_test.yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for case in suite::parse(&path.to_string_lossy(), &text).unwrap().cases {
            out.entry(case.request.tenant.clone()).or_default().push(case);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_every_example_tenant_the_plan_holds_exactly_where_check_allows() {
    let server = Server::start(examples(), &["--allow-now-header"]);
    let mut client = server.client().await;
    let (snapshot, _) = rolegate::cli::load_snapshot(examples()).unwrap();
    let cases = cases();
    assert!(cases.len() >= 4, "expected the four example tenants, found {:?}", cases.keys());
    let (mut compared, mut allowed) = (0, 0);
    for (tenant, tenant_cases) in &cases {
        let t = snapshot.tenant(tenant).unwrap();
        let mut members: Vec<String> = t.members.keys().map(|m| m.to_string()).collect();
        members.sort();
        members.push("nobody".into());
        // Every member plans every case's action and context, and the filter is compared with
        // Check on every resource of that kind the tenant's cases name.
        for case in tenant_cases.iter().filter(|c| c.expect != suite::Expect::Invalid) {
            let req = &case.request;
            let resources: Vec<&Resource> =
                tenant_cases.iter().map(|c| &c.request.resource).filter(|r| r.kind == req.resource.kind).collect();
            let context = rolegate::cli::to_api(req).context;
            for member in &members {
                let got = plan(&mut client, plan_request(tenant, member, &req.action, context.clone()), &case.now)
                    .await
                    .unwrap_or_else(|e| panic!("{tenant} {member} {}: {e}", req.action));
                let (p, revision) = api::plan::response_from_wire(got).unwrap();
                assert!(revision > 0);
                let items = resources
                    .iter()
                    .map(|r| {
                        let one = rolegate::engine::Request { resource: (*r).clone(), ..req.clone() };
                        let api::CheckRequest { action, resource, .. } = rolegate::cli::to_api(&one);
                        api::BatchItem { action, resource }
                    })
                    .collect();
                let batch = api::CheckBatchRequest {
                    tenant: tenant.clone(),
                    principal: member.clone(),
                    context: context.clone(),
                    min_revision: 0,
                    items,
                };
                let decisions = client.check_batch(at(batch, &case.now)).await.unwrap().into_inner().decisions;
                for (r, d) in resources.iter().zip(&decisions) {
                    assert_eq!(
                        p.filter.matches(r),
                        d.allowed,
                        "{tenant}: {member} {} at {} on {r:?}\nfilter {:#?}\ncheck {d:?}",
                        req.action,
                        case.now,
                        p.filter
                    );
                    compared += 1;
                    allowed += usize::from(d.allowed);
                }
                if member == "nobody" {
                    assert_eq!((p.filter, p.reason), (Filter::Constant(false), Reason::UnknownPrincipal));
                }
            }
        }
    }
    eprintln!("{compared} resources compared, {allowed} allowed");
    assert!(allowed > 50 && allowed < compared, "{allowed} of {compared} allowed: too few to tell");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_errors_are_invalid_argument_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client().await;
    let now = jiff::Timestamp::now();
    let bad_ip = Some(api::Context { client_ip: "300.1.2.3".into(), attrs: Default::default() });
    let cases = [
        (plan_request("", "rep", "conversation.view", None), "tenant: must not be empty"),
        (plan_request("desk", "", "conversation.view", None), "principal: must not be empty"),
        (plan_request("desk", "rep", "", None), "action: must not be empty"),
        (
            plan_request("desk", "rep", "conversation.veiw", None),
            "action: unknown action `conversation.veiw` for tenant `desk` (did you mean `conversation.view`?)",
        ),
        (
            plan_request("desk", "rep", "conversation.view", bad_ip),
            "context.client_ip: `300.1.2.3` is not an IP address",
        ),
        (
            plan_request("desk", &"p".repeat(2000), "conversation.view", None),
            "principal: is 2000 bytes, the limit is 1024",
        ),
    ];
    for (req, want) in cases {
        let err = plan(&mut client, req, &now).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{want}");
        assert_eq!(err.message(), want);
    }
    // Not errors: an unknown tenant and a disabled member are plans that allow nothing.
    let unknown = plan(&mut client, plan_request("shop", "rep", "conversation.view", None), &now).await.unwrap();
    assert_eq!(unknown.reason, api::Reason::UnknownTenant as i32);
    assert_eq!(unknown.filter.unwrap().node, Some(api::filter::Node::Constant(false)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_revision_is_honoured_and_a_revocation_reaches_the_next_plan() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let server = Server::start(dir.path(), &["--min-revision-wait", "300ms", "--admin-listen", "127.0.0.1:0"]);
    let mut client = server.client().await;
    let now = jiff::Timestamp::now();
    let rev = client.check(reply("rep", 0)).await.unwrap().into_inner().revision;
    let before = plan(&mut client, plan_request("desk", "rep", "conversation.reply", None), &now).await.unwrap();
    assert_eq!(before.reason, api::Reason::Granted as i32);
    assert_eq!(before.revision, rev);
    let (p, _) = api::plan::response_from_wire(before).unwrap();
    assert_eq!(p.filter, plan_filter_for_rep());

    desk(dir.path(), "disabled");
    let mut req = plan_request("desk", "rep", "conversation.reply", None);
    req.min_revision = rev + 1;
    let after = support::wait_until("a plan at the next revision", std::time::Duration::from_secs(10), async || {
        plan(&mut client.clone(), req.clone(), &now).await.ok()
    })
    .await;
    assert!(after.revision > rev);
    assert_eq!(after.reason, api::Reason::PrincipalDisabled as i32);
    assert_eq!(after.filter.unwrap().node, Some(api::filter::Node::Constant(false)));

    req.min_revision = after.revision + 100;
    let err = plan(&mut client, req, &now).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains(&(after.revision + 100).to_string()), "{}", err.message());

    let metrics = server.metrics().await;
    for line in [
        "rolegate_decisions_total{method=\"Plan\",result=\"allow\",reason=\"GRANTED\"} 1",
        "rolegate_decisions_total{method=\"Plan\",result=\"deny\",reason=\"PRINCIPAL_DISABLED\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing `{line}` in\n{metrics}");
    }
}

/// The filter of `rep`'s `conversation.reply` in tenant `desk`: conversations assigned to them.
fn plan_filter_for_rep() -> Filter {
    use rolegate::engine::{Field, FieldOp, Value};
    let assignee = || Field::Attr("assignee".into());
    Filter::any([
        Filter::test(assignee(), FieldOp::Equals(Value::Text("rep".into()))),
        Filter::test(assignee(), FieldOp::Contains("rep".into())),
    ])
}
