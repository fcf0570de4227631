//! A backend listing the conversations a member may view: one `Plan` per page, its filter
//! rendered as the `WHERE` of the backend's own SQL query, never one `Check` per row.
//!
//! Start the server on the examples and have a PostgreSQL at hand, then:
//! `cargo run --example list_conversations -- 127.0.0.1:50051 postgres://postgres@127.0.0.1:54329/postgres chen.yu`
//!
//! It creates and fills the table `example_conversations` (replacing it) so that it runs anywhere.

use rolegate::api::authorizer_client::AuthorizerClient;
use rolegate::api::{Context, PlanRequest};
use rolegate::engine::plan::sql::{self, Mapping, Param};
use tokio_postgres::types::ToSql;

/// The demo rows: id, unit, assignee, subject.
const ROWS: &[(&str, Option<&str>, Option<&str>, &str)] = &[
    ("conv-ps-101", Some("presales"), Some("chen.yu"), "Which plan fits a 20-seat team?"),
    ("conv-ps-102", Some("presales"), Some("lin.qi"), "Volume discount for 200 seats"),
    ("conv-l1-250", Some("support-l1"), Some("vendor.ava"), "Cannot log in after password reset"),
    ("conv-l2-301", Some("support-l2"), Some("ma.rui"), "Webhook retries pile up"),
    ("conv-fin-401", Some("finance"), Some("qian.yue"), "Invoice shows the wrong VAT id"),
    ("conv-new-501", None, None, "Unrouted message from the website widget"),
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:50051".into());
    let dsn = args.next().unwrap_or_else(|| "postgres://postgres@127.0.0.1:54329/postgres".into());
    let member = args.next().unwrap_or_else(|| "chen.yu".into());

    let (db, connection) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    db.batch_execute(
        "DROP TABLE IF EXISTS example_conversations;
         CREATE TABLE example_conversations (id text PRIMARY KEY, unit text, assignee text, subject text NOT NULL)",
    )
    .await?;
    for (id, unit, assignee, subject) in ROWS {
        db.execute("INSERT INTO example_conversations VALUES ($1, $2, $3, $4)", &[id, unit, assignee, subject]).await?;
    }

    // One plan for the page: who may view which conversations, from the same snapshot as Check.
    let mut rolegate = AuthorizerClient::new(rolegate::cli::connect(&addr).await?);
    let plan = rolegate
        .plan(PlanRequest {
            tenant: "meiqia-service-desk".into(),
            principal: member.clone(),
            action: "conversation.view".into(),
            context: Some(Context { client_ip: "10.8.0.12".into(), attrs: Default::default() }),
            min_revision: 0,
        })
        .await?
        .into_inner();
    let (plan, revision) = rolegate::api::plan::response_from_wire(plan)?;

    // Which column holds each resource field; attributes the table lacks are missing on every row.
    let mapping = Mapping::parse("id=id,unit=unit,attrs.assignee=assignee")?;
    let sql = sql::render(&plan.filter, &mapping, 1)?;
    let params: Vec<Box<dyn ToSql + Sync>> = sql
        .params
        .iter()
        .map(|p| -> Box<dyn ToSql + Sync> {
            match p {
                Param::Text(t) => Box::new(t.clone()),
                Param::Number(n) => Box::new(*n),
                Param::Bool(b) => Box::new(*b),
                Param::TextList(l) => Box::new(l.clone()),
            }
        })
        .collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(AsRef::as_ref).collect();
    let query = format!("SELECT id, subject FROM example_conversations WHERE {} ORDER BY id LIMIT 50", sql.clause);
    println!("{member} may view (plan {}, revision {revision}):", plan.reason);
    println!("  WHERE {}", sql.clause);
    for row in db.query(&query, &refs).await? {
        let (id, subject): (String, String) = (row.get(0), row.get(1));
        println!("  {id:<13} {subject}");
    }
    // Reuse the plan no longer than `valid_until` (and the tenant's staleness bound), like a decision.
    Ok(())
}
