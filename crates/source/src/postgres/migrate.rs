//! The database schema as versioned migrations kept in the repository (`migrations/*.sql`),
//! applied in order by `rolegate migrate`. Each migration runs once, in one transaction with its
//! record in `rolegate.schema_migrations`; concurrent runs wait for each other. The same
//! migrations build a candidate policy's tables in another schema ([`Schema`]).

use tokio_postgres::Client;

use super::schema::Schema;

/// Every migration, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "policy_rows", include_str!("../../../../migrations/0001_policy_rows.sql")),
    (2, "change_history", include_str!("../../../../migrations/0002_change_history.sql")),
];

/// An arbitrary constant: the advisory lock that serializes concurrent migrators.
const LOCK: i64 = 0x726f_6c65_6761_7465;

/// Applies the migrations `schema` lacks and returns their versions.
pub async fn migrate(client: &mut Client, schema: &Schema) -> Result<Vec<i32>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK]).await?;
    tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", schema.ident())).await?;
    tx.batch_execute(&schema.sql(
        "CREATE TABLE IF NOT EXISTS rolegate.schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    ))
    .await?;
    let done: Vec<i32> = tx
        .query(&*schema.sql("SELECT version FROM rolegate.schema_migrations"), &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        tx.batch_execute(&schema.sql(sql)).await?;
        let record = schema.sql("INSERT INTO rolegate.schema_migrations (version, name) VALUES ($1, $2)");
        tx.execute(&*record, &[version, name]).await?;
        applied.push(*version);
    }
    tx.commit().await?;
    Ok(applied)
}

/// The newest migration applied to `schema`, or `None` when the schema is missing.
pub async fn current(client: &Client, schema: &Schema) -> Result<Option<i32>, tokio_postgres::Error> {
    let exists = schema.sql("SELECT to_regclass('rolegate.schema_migrations') IS NOT NULL");
    let exists: bool = client.query_one(&*exists, &[]).await?.try_get(0)?;
    if !exists {
        return Ok(None);
    }
    client.query_one(&*schema.sql("SELECT max(version) FROM rolegate.schema_migrations"), &[]).await?.try_get(0)
}

/// Fails unless `schema` is at the version this binary was built for.
pub async fn require_current(client: &Client, schema: &Schema) -> anyhow::Result<()> {
    let want = MIGRATIONS.last().map_or(0, |m| m.0);
    let flag = if schema.is_default() { String::new() } else { format!(" --schema {schema}") };
    match current(client, schema).await? {
        Some(v) if v >= want => Ok(()),
        Some(v) => anyhow::bail!(
            "the {schema} schema is at version {v}, this binary needs {want}: run `rolegate migrate{flag}`"
        ),
        None => anyhow::bail!("the database has no {schema} schema: run `rolegate migrate --dsn DSN{flag}` first"),
    }
}
