//! Reading the change history (docs/operations.md, "Trace with history"): who changed which
//! tenant, member, binding, unit or template row, when, at which revision, with the row before
//! and after. Written by the triggers of `migrations/0002_change_history.sql`.

use super::schema::Schema;
use super::{migrate, transfer};

/// Which history rows to read.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this member's own row and bindings.
    pub member: Option<String>,
    /// Only changes at or after this instant (RFC 3339).
    pub since: Option<jiff::Timestamp>,
    /// At most this many rows, the newest (returned oldest first).
    pub limit: i64,
    /// The schema whose history to read.
    pub schema: Schema,
}

/// One recorded write.
#[derive(Clone, Debug)]
pub struct Change {
    /// The change id: the tenant revision the write made.
    pub revision: i64,
    /// Tenant id.
    pub tenant: String,
    /// `tenant`, `template`, `unit`, `member` or `binding`.
    pub kind: String,
    /// The row's id (a binding: its member).
    pub key: String,
    /// `insert`, `update` or `delete`.
    pub op: String,
    /// Who wrote it: `rolegate.actor`, else the database role.
    pub actor: String,
    /// The row before, as JSON text.
    pub before: Option<serde_json::Value>,
    /// The row after, as JSON text.
    pub after: Option<serde_json::Value>,
    /// When it was written.
    pub at: jiff::Timestamp,
}

/// Reads the history rows matching `filter` from the database at `dsn`, oldest first.
pub async fn read(dsn: &str, filter: &Filter) -> anyhow::Result<Vec<Change>> {
    let client = transfer::connect(dsn).await?;
    migrate::require_current(&client, &filter.schema).await?;
    let since = filter.since.map(|t| t.to_string());
    let rows = client
        .query(
            &*filter.schema.sql(
                "SELECT id, tenant, kind, key, op, actor, before::text, after::text,
                    (extract(epoch FROM at) * 1000000)::bigint
             FROM (SELECT * FROM rolegate.change_history
                   WHERE ($1::text IS NULL OR tenant = $1)
                     AND ($2::text IS NULL OR (kind IN ('member', 'binding') AND key = $2))
                     AND ($3::text IS NULL OR at >= $3::text::timestamptz)
                   ORDER BY seq DESC LIMIT $4) newest
             ORDER BY seq",
            ),
            &[&filter.tenant, &filter.member, &since, &filter.limit],
        )
        .await?;
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    rows.iter()
        .map(|r| {
            let micros: i64 = r.try_get(8)?;
            Ok(Change {
                revision: r.try_get(0)?,
                tenant: r.try_get(1)?,
                kind: r.try_get(2)?,
                key: r.try_get(3)?,
                op: r.try_get(4)?,
                actor: r.try_get(5)?,
                before: json(r.try_get(6)?),
                after: json(r.try_get(7)?),
                at: jiff::Timestamp::from_microsecond(micros).unwrap_or_default(),
            })
        })
        .collect()
}
