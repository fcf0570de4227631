//! The rows of `rolegate.*` as plain data, and the statements that read them. JSON columns are
//! read as their text and instants as microseconds since the epoch, so the reads need no type
//! support beyond text and integers, and numbers keep the spelling they were written with.

use tokio_postgres::{Error, GenericClient, Row, Statement};

use super::schema::Schema;

/// A tenant's slow-changing document.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TenantRow {
    /// Tenant id.
    pub id: String,
    /// YAML: schema, roles, rules, `everyone`, template name.
    pub document: String,
    /// The template the database found in the document (its generated column).
    pub template: Option<String>,
}

/// A template document.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TemplateRow {
    /// Template name.
    pub name: String,
    /// YAML: schema, roles, rules, `everyone`.
    pub document: String,
}

/// A unit of a tenant's organisation tree.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct UnitRow {
    /// Tenant id.
    pub tenant: String,
    /// Unit id.
    pub id: String,
    /// Parent unit.
    pub parent: Option<String>,
    /// Free text.
    pub description: Option<String>,
}

/// A member of a tenant.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MemberRow {
    /// Tenant id.
    pub tenant: String,
    /// Member id.
    pub id: String,
    /// `active` or `disabled`.
    pub status: String,
    /// Expiry, microseconds since the epoch.
    pub expires: Option<i64>,
    /// Units the member belongs to.
    pub units: Vec<String>,
    /// Attributes: a JSON object, as text.
    pub attrs: String,
    /// Free text.
    pub description: Option<String>,
}

/// A binding of a member, in the member's document order.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BindingRow {
    /// Tenant id.
    pub tenant: String,
    /// Member id.
    pub member: String,
    /// Explicit binding id.
    pub id: Option<String>,
    /// Role name.
    pub role: String,
    /// Scope: JSON text, `"tenant"` or `{"unit": "…"}` and so on.
    pub scope: String,
    /// Window start, microseconds since the epoch.
    pub from: Option<i64>,
    /// Window end, microseconds since the epoch.
    pub until: Option<i64>,
    /// Condition: JSON text.
    pub when: Option<String>,
    /// Free text.
    pub description: Option<String>,
}

/// A tenant's revision and how far its change log was pruned.
#[derive(Clone, Debug)]
pub struct RevisionRow {
    /// Tenant id.
    pub tenant: String,
    /// Id of the tenant's last change.
    pub revision: i64,
    /// Changes up to this id may be gone from the change log.
    pub pruned_to: i64,
}

/// One change-log entry.
#[derive(Clone, Debug)]
pub struct ChangeRow {
    /// Tenant id.
    pub tenant: String,
    /// Change id.
    pub id: i64,
    /// `tenant`, `template`, `unit`, `member` or `binding`.
    pub kind: String,
    /// Tenant, template, unit or member id (a binding's member).
    pub key: String,
}

/// Every row of some tenants, read in one snapshot.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct TenantRows {
    /// The tenants' documents.
    pub tenants: Vec<TenantRow>,
    /// The templates they name.
    pub templates: Vec<TemplateRow>,
    /// Their units, by tenant then id.
    pub units: Vec<UnitRow>,
    /// Their members, by tenant then id.
    pub members: Vec<MemberRow>,
    /// Their bindings, by tenant, member and position.
    pub bindings: Vec<BindingRow>,
}

const MEMBER_COLUMNS: &str =
    "tenant, id, status, (extract(epoch FROM expires) * 1000000)::int8, units, attrs::text, description";
const BINDING_COLUMNS: &str = "tenant, member, id, role, scope::text, (extract(epoch FROM \"from\") * 1000000)::int8, \
     (extract(epoch FROM until) * 1000000)::int8, \"when\"::text, description";

/// The statements, prepared once per connection.
#[derive(Clone, Debug)]
pub struct Queries {
    digest: Statement,
    revisions: Statement,
    revisions_of: Statement,
    changes: Statement,
    tenant_ids: Statement,
    tenants: Statement,
    templates: Statement,
    units: Statement,
    members: Statement,
    bindings: Statement,
    members_by_id: Statement,
    bindings_by_member: Statement,
}

impl Queries {
    /// Prepares every statement on `client`, for the tables of `schema`.
    pub async fn prepare(client: &impl GenericClient, schema: &Schema) -> Result<Queries, Error> {
        let sql = |text: &str| schema.sql(text).into_owned();
        let revisions = sql("SELECT tenant, revision, pruned_to FROM rolegate.tenant_revisions");
        Ok(Queries {
            digest: client
                .prepare(&sql("SELECT count(*), coalesce(sum(revision), 0)::text FROM rolegate.tenant_revisions"))
                .await?,
            revisions: client.prepare(&revisions).await?,
            revisions_of: client.prepare(&format!("{revisions} WHERE tenant = ANY($1)")).await?,
            changes: client
                .prepare(&sql("SELECT c.tenant, c.id, c.kind, c.key FROM rolegate.change_log c \
                     JOIN unnest($1::text[], $2::int8[]) AS a (tenant, after) ON c.tenant = a.tenant AND c.id >= a.after \
                     ORDER BY c.id"))
                .await?,
            tenant_ids: client.prepare(&sql("SELECT id FROM rolegate.tenants ORDER BY id")).await?,
            tenants: client
                .prepare(&sql("SELECT id, document, template FROM rolegate.tenants WHERE id = ANY($1) ORDER BY id"))
                .await?,
            templates: client
                .prepare(&sql("SELECT name, document FROM rolegate.templates WHERE name = ANY($1) ORDER BY name"))
                .await?,
            units: client
                .prepare(&sql("SELECT tenant, id, parent, description FROM rolegate.units WHERE tenant = ANY($1) ORDER BY tenant, id"))
                .await?,
            members: client
                .prepare(&sql(&format!(
                    "SELECT {MEMBER_COLUMNS} FROM rolegate.members WHERE tenant = ANY($1) ORDER BY tenant, id"
                )))
                .await?,
            bindings: client
                .prepare(&sql(&format!(
                    "SELECT {BINDING_COLUMNS} FROM rolegate.bindings WHERE tenant = ANY($1) ORDER BY tenant, member, position"
                )))
                .await?,
            members_by_id: client
                .prepare(&sql(&format!(
                    "SELECT {MEMBER_COLUMNS} FROM rolegate.members WHERE tenant = $1 AND id = ANY($2) ORDER BY id"
                )))
                .await?,
            bindings_by_member: client
                .prepare(&sql(&format!(
                    "SELECT {BINDING_COLUMNS} FROM rolegate.bindings WHERE tenant = $1 AND member = ANY($2) \
                     ORDER BY member, position"
                )))
                .await?,
        })
    }

    /// The number of tenants with a revision and the sum of their revisions: revisions only
    /// grow, so the sum changes with any change.
    pub async fn digest(&self, c: &impl GenericClient) -> Result<(i64, String), Error> {
        let row = c.query_one(&self.digest, &[]).await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Every tenant's revision, or only those of `tenants`.
    pub async fn revisions(
        &self,
        c: &impl GenericClient,
        tenants: Option<&[String]>,
    ) -> Result<Vec<RevisionRow>, Error> {
        let rows = match tenants {
            None => c.query(&self.revisions, &[]).await?,
            Some(t) => c.query(&self.revisions_of, &[&t]).await?,
        };
        rows.iter()
            .map(|r| Ok(RevisionRow { tenant: r.try_get(0)?, revision: r.try_get(1)?, pruned_to: r.try_get(2)? }))
            .collect()
    }

    /// The changes of each tenant from the id given for it on (that id included, so that a
    /// reader can tell whether the log still holds the change it applied last), in id order.
    pub async fn changes(&self, c: &impl GenericClient, after: &[(String, i64)]) -> Result<Vec<ChangeRow>, Error> {
        let (tenants, ids): (Vec<&str>, Vec<i64>) = after.iter().map(|(t, id)| (t.as_str(), *id)).unzip();
        let rows = c.query(&self.changes, &[&tenants, &ids]).await?;
        rows.iter()
            .map(|r| {
                Ok(ChangeRow { tenant: r.try_get(0)?, id: r.try_get(1)?, kind: r.try_get(2)?, key: r.try_get(3)? })
            })
            .collect()
    }

    /// Every tenant id.
    pub async fn tenant_ids(&self, c: &impl GenericClient) -> Result<Vec<String>, Error> {
        c.query(&self.tenant_ids, &[]).await?.iter().map(|r| r.try_get(0)).collect()
    }

    /// Every row of `tenants` and of the templates they name.
    pub async fn tenants(&self, c: &impl GenericClient, ids: &[String]) -> Result<TenantRows, Error> {
        let tenants: Vec<TenantRow> = c
            .query(&self.tenants, &[&ids])
            .await?
            .iter()
            .map(|r| Ok(TenantRow { id: r.try_get(0)?, document: r.try_get(1)?, template: r.try_get(2)? }))
            .collect::<Result<_, Error>>()?;
        let mut names: Vec<&str> = tenants.iter().filter_map(|t| t.template.as_deref()).collect();
        names.sort_unstable();
        names.dedup();
        let templates = c
            .query(&self.templates, &[&names])
            .await?
            .iter()
            .map(|r| Ok(TemplateRow { name: r.try_get(0)?, document: r.try_get(1)? }))
            .collect::<Result<_, Error>>()?;
        let units = c
            .query(&self.units, &[&ids])
            .await?
            .iter()
            .map(|r| {
                Ok(UnitRow {
                    tenant: r.try_get(0)?,
                    id: r.try_get(1)?,
                    parent: r.try_get(2)?,
                    description: r.try_get(3)?,
                })
            })
            .collect::<Result<_, Error>>()?;
        let members = c.query(&self.members, &[&ids]).await?.iter().map(member).collect::<Result<_, Error>>()?;
        let bindings = c.query(&self.bindings, &[&ids]).await?.iter().map(binding).collect::<Result<_, Error>>()?;
        Ok(TenantRows { tenants, templates, units, members, bindings })
    }

    /// Some members of one tenant with their bindings; members without a row are gone.
    pub async fn members(
        &self,
        c: &impl GenericClient,
        tenant: &str,
        ids: &[&str],
    ) -> Result<(Vec<MemberRow>, Vec<BindingRow>), Error> {
        let members =
            c.query(&self.members_by_id, &[&tenant, &ids]).await?.iter().map(member).collect::<Result<_, _>>()?;
        let bindings =
            c.query(&self.bindings_by_member, &[&tenant, &ids]).await?.iter().map(binding).collect::<Result<_, _>>()?;
        Ok((members, bindings))
    }
}

fn member(r: &Row) -> Result<MemberRow, Error> {
    Ok(MemberRow {
        tenant: r.try_get(0)?,
        id: r.try_get(1)?,
        status: r.try_get(2)?,
        expires: r.try_get(3)?,
        units: r.try_get(4)?,
        attrs: r.try_get(5)?,
        description: r.try_get(6)?,
    })
}

fn binding(r: &Row) -> Result<BindingRow, Error> {
    Ok(BindingRow {
        tenant: r.try_get(0)?,
        member: r.try_get(1)?,
        id: r.try_get(2)?,
        role: r.try_get(3)?,
        scope: r.try_get(4)?,
        from: r.try_get(5)?,
        until: r.try_get(6)?,
        when: r.try_get(7)?,
        description: r.try_get(8)?,
    })
}
