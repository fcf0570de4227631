//! An AuthZEN request body as the HTTP listener receives it: JSON parsing, every endpoint's reading
//! of it (evaluation, evaluations with defaults and semantics, both searches), the request limits
//! and a decision on the example policies. The first byte picks the tenant. Seeds:
//! corpus/authzen_body (the interop Todo suite's requests and the README's).
#![no_main]

use rolegate_api::authzen;
use rolegate_api::convert::{self, Limits};
use rolegate_engine::{Query, decide};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((which, body)) = data.split_first() else { return };
    let Ok(object) = authzen::body(body) else { return };
    let snapshot = rolegate_fuzz::example_snapshot();
    let tenants = ["authzen-todo", "meiqia-service-desk", "whatsapp-business", "nobody"];
    let tenant = tenants[usize::from(*which) % tenants.len()];
    let l = Limits::default();
    let mut items = Vec::new();
    if let Ok(item) = authzen::evaluation(&object) {
        items.push(item);
    }
    if let Ok(Some((batch, _semantic))) = authzen::evaluations(&object, l.max_batch_items) {
        // INVARIANT: the item limit holds before anything is decided.
        assert!(batch.len() <= l.max_batch_items);
        items.extend(batch);
    }
    if let Ok(search) = authzen::subject_search(&object) {
        items.push(search.item);
    }
    let _ = authzen::action_search(&object);
    for item in items {
        let (Ok(()), Ok(resource), Ok(context)) = (
            l.id("action", &item.action),
            l.resource(&|| "resource".into(), item.resource),
            l.context("context", item.context),
        ) else {
            continue;
        };
        let q =
            Query { tenant, principal: &item.principal, action: &item.action, resource: &resource, context: &context };
        if let Ok(d) = decide(snapshot, &q, rolegate_fuzz::now()) {
            let wire = convert::decision(&d);
            // INVARIANT: every decision has an AuthZEN form, and it says what the decision says.
            let json = serde_json::to_value(authzen::decision(&wire, 1)).expect("a decision serializes");
            assert_eq!(json["decision"], serde_json::Value::Bool(d.allowed));
        }
    }
});
