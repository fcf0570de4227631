//! The database schema as versioned migrations kept in the repository (`migrations/*.sql`),
//! applied in order by `rolegate migrate`. Each migration runs once, in one transaction with its
//! record in `rolegate.schema_migrations`; concurrent runs wait for each other.

use tokio_postgres::Client;

/// Every migration, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "policy_rows", include_str!("../../../../migrations/0001_policy_rows.sql")),
    (2, "change_history", include_str!("../../../../migrations/0002_change_history.sql")),
];

/// An arbitrary constant: the advisory lock that serializes concurrent migrators.
const LOCK: i64 = 0x726f_6c65_6761_7465;

/// Applies the migrations the database lacks and returns their versions.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK]).await?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS rolegate;
         CREATE TABLE IF NOT EXISTS rolegate.schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM rolegate.schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO rolegate.schema_migrations (version, name) VALUES ($1, $2)", &[version, name]).await?;
        applied.push(*version);
    }
    tx.commit().await?;
    Ok(applied)
}

/// The newest migration applied, or `None` when the schema is missing.
pub async fn current(client: &Client) -> Result<Option<i32>, tokio_postgres::Error> {
    let exists: bool =
        client.query_one("SELECT to_regclass('rolegate.schema_migrations') IS NOT NULL", &[]).await?.try_get(0)?;
    if !exists {
        return Ok(None);
    }
    client.query_one("SELECT max(version) FROM rolegate.schema_migrations", &[]).await?.try_get(0)
}

/// Fails unless the schema is at the version this binary was built for.
pub async fn require_current(client: &Client) -> anyhow::Result<()> {
    let want = MIGRATIONS.last().map_or(0, |m| m.0);
    match current(client).await? {
        Some(v) if v >= want => Ok(()),
        Some(v) => {
            anyhow::bail!("the rolegate schema is at version {v}, this binary needs {want}: run `rolegate migrate`")
        }
        None => anyhow::bail!("the database has no rolegate schema: run `rolegate migrate --dsn DSN` first"),
    }
}
