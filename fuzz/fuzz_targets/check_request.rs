//! A gRPC request body as the server receives it: protobuf decoding, conversion with the request
//! limits, and a decision on the example policies, for Check and CheckBatch. The first byte picks
//! which; the rest is the message. Seeds: corpus/check_request (encoded example requests).
#![no_main]

use prost::Message;
use rolegate_api::convert::{self, Limits};
use rolegate_api::{CheckBatchRequest, CheckRequest};
use rolegate_engine::{Query, decide};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((which, body)) = data.split_first() else { return };
    let snapshot = rolegate_fuzz::example_snapshot();
    let l = Limits::default();
    if which % 2 == 0 {
        let Ok(CheckRequest { tenant, principal, action, resource, context, min_revision: _ }) =
            CheckRequest::decode(body)
        else {
            return;
        };
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
        let Ok(CheckBatchRequest { tenant, principal, context, min_revision: _, items }) =
            CheckBatchRequest::decode(body)
        else {
            return;
        };
        if items.len() > l.max_batch_items || l.id("tenant", &tenant).is_err() || l.id("principal", &principal).is_err()
        {
            return;
        }
        let Ok(context) = l.context("context", context) else { return };
        for (i, item) in items.into_iter().enumerate() {
            let rolegate_api::BatchItem { action, resource } = item;
            let Ok(resource) = l.resource(&|| format!("items[{i}].resource"), resource) else { continue };
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
