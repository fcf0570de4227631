//! A gRPC request body as the server receives it: decoding by the server's own decoder
//! (`convert::wire`), which must accept, refuse and read it exactly as the generated decoder
//! does, conversion with the request limits, and a decision on the example policies, for Check
//! and CheckBatch. The first byte picks which; the rest is the message. Seeds:
//! corpus/check_request (encoded example requests).
#![no_main]

use prost::Message;
use rolegate_api::convert::wire::{BatchCall, CheckCall, FromWire};
use rolegate_api::convert::{self, Limits};
use rolegate_api::{CheckBatchRequest, CheckRequest};
use rolegate_engine::{Query, decide};

/// INVARIANT: the server's decoder accepts what the generated one accepts, and nothing else.
fn decoded<T: FromWire, G: Message + Default>(body: &[u8]) -> Option<(T, G)> {
    match (T::decode(body), G::decode(body)) {
        (Ok(ours), Ok(generated)) => Some((ours, generated)),
        (Err(_), Err(_)) => None,
        (ours, generated) => panic!("the decoders disagree: ours {:?}, generated {:?}", ours.err(), generated.err()),
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((which, body)) = data.split_first() else { return };
    let snapshot = rolegate_fuzz::example_snapshot();
    let l = Limits::default();
    if which % 2 == 0 {
        let Some((CheckCall { tenant, principal, action, resource, context, min_revision: _ }, generated)) =
            decoded::<CheckCall, CheckRequest>(body)
        else {
            return;
        };
        let generated = CheckCall::from(generated);
        // INVARIANT: both read the same request, as the limits see it.
        assert_eq!((&tenant, &principal, &action), (&generated.tenant, &generated.principal, &generated.action));
        let same = |r: Option<convert::RawResource>| l.resource(&|| "resource".into(), r);
        assert_eq!(same(resource.clone()), same(generated.resource));
        assert_eq!(l.context("context", context.clone()), l.context("context", generated.context));
        let (Ok(()), Ok(()), Ok(())) =
            (l.id("tenant", &tenant), l.id("principal", &principal), l.id("action", &action))
        else {
            return;
        };
        let (Ok(resource), Ok(context)) = (l.resource(&|| "resource".into(), resource), l.context("context", context))
        else {
            return;
        };
        let q =
            Query { tenant: &tenant, principal: &principal, action: &action, resource: &resource, context: &context };
        if let Ok(d) = decide(snapshot, &q, rolegate_fuzz::now()) {
            let wire = convert::decision(&d);
            // INVARIANT: the decision survives the trip to the wire and back.
            let back = convert::decision_from_wire(wire).expect("a decision the server sends can be read back");
            assert_eq!(back.allowed, d.allowed);
        }
    } else {
        let Some((BatchCall { tenant, principal, context, min_revision: _, items }, generated)) =
            decoded::<BatchCall, CheckBatchRequest>(body)
        else {
            return;
        };
        let generated = BatchCall::from(generated);
        assert_eq!((&tenant, &principal, items.len()), (&generated.tenant, &generated.principal, generated.items.len()));
        assert_eq!(l.context("context", context.clone()), l.context("context", generated.context));
        if items.len() > l.max_batch_items || l.id("tenant", &tenant).is_err() || l.id("principal", &principal).is_err()
        {
            return;
        }
        let Ok(context) = l.context("context", context) else { return };
        for (i, ((action, resource), (_, generated))) in items.into_iter().zip(generated.items).enumerate() {
            let resource = l.resource(&|| format!("items[{i}].resource"), resource);
            assert_eq!(resource, l.resource(&|| format!("items[{i}].resource"), generated));
            let Ok(resource) = resource else { continue };
            let q = Query {
                tenant: &tenant,
                principal: &principal,
                action: &action,
                resource: &resource,
                context: &context,
            };
            let _ = decide(snapshot, &q, rolegate_fuzz::now());
        }
    }
});
