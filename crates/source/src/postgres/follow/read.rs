//! Reading one round: which tenants changed since the ids applied, and whether each can be
//! updated member by member or must be read whole. The sidecar's follower and the NATS
//! publisher read the same way; only what they hold of each tenant differs.

use std::collections::{BTreeSet, HashMap, HashSet};

use tokio_postgres::IsolationLevel;

use super::super::rows::{BindingRow, MemberRow, Queries, TenantRows};
use super::{Follower, INCREMENTAL_LIMIT, Session};

/// The rows one round read.
#[derive(Debug, Default)]
pub struct Read {
    /// The revision of every tenant to update.
    pub revisions: HashMap<String, i64>,
    /// Tenants read whole.
    pub full: Vec<String>,
    /// The rows of the tenants read whole.
    pub rows: TenantRows,
    /// Tenants updated member by member.
    pub members: Vec<MemberRead>,
    /// Tenants held that the database no longer has a revision for (it was re-created).
    pub gone: Vec<String>,
}

/// The changed members of one tenant.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MemberRead {
    /// Tenant id.
    pub tenant: String,
    /// Every changed member id; those without a row are gone.
    pub ids: Vec<String>,
    /// The rows of the changed members still there.
    pub rows: Vec<MemberRow>,
    /// Their bindings, by member and position.
    pub bindings: Vec<BindingRow>,
}

/// What a reader holds of one tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// The last change id read for the tenant.
    pub seen: i64,
    /// Whether it can take member-by-member updates (it holds the tenant's last good head);
    /// otherwise any change reads the tenant whole.
    pub incremental: bool,
}

impl Follower {
    /// Reads, in one repeatable-read transaction, what changed for `tenants` (every tenant
    /// when `None`) since the ids applied.
    pub(super) async fn read(
        &self,
        session: &mut Session,
        tenants: Option<&[String]>,
    ) -> Result<Read, tokio_postgres::Error> {
        let held = |t: &str| self.known.get(t).map(|k| Held { seen: k.seen, incremental: k.head.is_some() });
        read(session, tenants, held, || self.known.keys().cloned().collect()).await
    }
}

/// Reads, in one repeatable-read transaction, what changed for `tenants` (every tenant when
/// `None`) since what `held` says of each; `all_held` lists every tenant held, so that those the
/// database no longer has are found when every tenant is read.
pub async fn read(
    session: &mut Session,
    tenants: Option<&[String]>,
    held: impl Fn(&str) -> Option<Held>,
    all_held: impl FnOnce() -> Vec<String>,
) -> Result<Read, tokio_postgres::Error> {
    let Session { client, queries, .. } = session;
    let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
    let mut read = Read::default();
    // Per tenant read change by change: the last id applied, and whether its own log row
    // must still be there (it is unless pruned).
    let mut after: HashMap<String, (i64, bool)> = HashMap::new();
    let revisions = queries.revisions(&tx, tenants).await?;
    if tenants.is_none() {
        let listed: HashSet<&str> = revisions.iter().map(|r| r.tenant.as_str()).collect();
        read.gone = all_held().into_iter().filter(|t| !listed.contains(t.as_str())).collect();
    }
    for r in revisions {
        match held(&r.tenant) {
            Some(k) if k.seen == r.revision => continue,
            // Revisions only grow: a lower one means the database was restored or re-created.
            Some(k) if k.seen > r.revision => read.full.push(r.tenant.clone()),
            Some(k) if k.incremental && r.pruned_to <= k.seen => {
                after.insert(r.tenant.clone(), (k.seen, r.pruned_to < k.seen));
            }
            _ => read.full.push(r.tenant.clone()),
        }
        read.revisions.insert(r.tenant, r.revision);
    }
    for (tenant, ids) in changed_members(queries, &tx, &after).await? {
        match ids {
            Some(ids) if !ids.is_empty() && ids.len() <= INCREMENTAL_LIMIT => {
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                let (members, bindings) = queries.members(&tx, &tenant, &refs).await?;
                read.members.push(MemberRead { tenant, ids: ids.into_iter().collect(), rows: members, bindings });
            }
            _ => read.full.push(tenant),
        }
    }
    if !read.full.is_empty() {
        read.full.sort_unstable();
        read.rows = queries.tenants(&tx, &read.full).await?;
    }
    tx.commit().await?;
    Ok(read)
}

/// The members changed in each tenant of `after` since the id given for it; `None` for a tenant
/// to reload whole (a change other than a member or binding, or a history that no longer holds
/// the change last applied: the database was restored).
async fn changed_members(
    queries: &Queries,
    tx: &tokio_postgres::Transaction<'_>,
    after: &HashMap<String, (i64, bool)>,
) -> Result<HashMap<String, Option<BTreeSet<String>>>, tokio_postgres::Error> {
    let mut keys: HashMap<String, Option<BTreeSet<String>>> =
        after.keys().map(|t| (t.clone(), Some(BTreeSet::new()))).collect();
    if after.is_empty() {
        return Ok(keys);
    }
    let mut unanchored: HashSet<&str> = after.iter().filter(|(_, a)| a.1).map(|(t, _)| t.as_str()).collect();
    let since: Vec<(String, i64)> = after.iter().map(|(t, (seen, _))| (t.clone(), *seen)).collect();
    for c in queries.changes(tx, &since).await? {
        let (Some(slot), Some((seen, _))) = (keys.get_mut(&c.tenant), after.get(&c.tenant)) else { continue };
        if c.id == *seen {
            unanchored.remove(c.tenant.as_str());
            continue;
        }
        match (c.kind.as_str(), slot.as_mut()) {
            ("member" | "binding", Some(ids)) => {
                ids.insert(c.key);
            }
            _ => *slot = None,
        }
    }
    for tenant in unanchored {
        keys.insert(tenant.to_owned(), None);
    }
    Ok(keys)
}
