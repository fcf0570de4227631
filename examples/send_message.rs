//! A backend asking rolegate before sending a message, and honouring the decision:
//! `mask` fields are hidden, `review` holds the message, `cache_until` bounds local caching.
//!
//! Start the server on the examples, then:
//! `cargo run --example send_message -- 127.0.0.1:50051`

use std::collections::HashMap;

use rolegate::api::{
    AttrValue, CheckRequest, Context, Resource, attr_value::Kind, authorizer_client::AuthorizerClient,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:50051".into());
    let mut client = AuthorizerClient::new(rolegate::cli::connect(&addr).await?);
    let text = |s: &str| AttrValue { kind: Some(Kind::Text(s.into())) };
    let request = CheckRequest {
        tenant: "meiqia-service-desk".into(),
        principal: "chen.yu".into(),
        action: "conversation.reply".into(),
        resource: Some(Resource {
            kind: "conversation".into(),
            id: "c-1".into(),
            unit: "presales".into(),
            attrs: HashMap::from([("assignee".to_owned(), text("chen.yu"))]),
        }),
        context: Some(Context { client_ip: "10.8.0.12".into(), attrs: HashMap::new() }),
        min_revision: 0,
    };
    let response = client.check(request).await?.into_inner();
    let Some(decision) = response.decision else { anyhow::bail!("server sent no decision") };
    if !decision.allowed {
        // Offer an access request when the member may ask for the action.
        let offer = if decision.requestable { " (an access request can be offered)" } else { "" };
        println!("not sending: {}{offer}", decision.reason().as_str_name());
        return Ok(());
    }
    let mut message = HashMap::from([("body", "Your order has shipped"), ("phone", "+86 138 0000 0000")]);
    for field in &decision.mask {
        if let Some(v) = message.get_mut(field.as_str()) {
            *v = "***";
        }
    }
    if decision.review {
        println!("holding the message for review: {message:?}");
    } else {
        println!("sending: {message:?}");
    }
    // Reuse the answer until `cache_until`, never `valid_until`: that only says the policy data
    // cannot change it, while a revocation can land at any moment and must reach this backend
    // within the tenant's `max_staleness`. `cache_until` equal to the decision instant (a
    // tenant's `max_staleness: 0s`) means: do not reuse it at all, ask every time.
    match decision.cache_until {
        Some(t) => {
            println!("reuse this decision until {}s after the epoch (revision {})", t.seconds, response.revision)
        }
        None => println!("do not reuse this decision (revision {})", response.revision),
    }
    Ok(())
}
