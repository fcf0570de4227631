//! `rolegate migrate`, `rolegate import DIR --to DSN` and `rolegate export --from DSN DIR`, each
//! on the `rolegate` schema or, with `--schema NAME`, a candidate policy's.
//!
//! Import validates the whole directory first and imports nothing when it has an error. Each
//! tenant document is split into its document (everything but `units:` and `members:`, comments
//! kept) and rows; the tenant's existing rows are replaced. Export writes templates and tenant
//! documents back, the rows rendered as YAML after the document.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use marked_yaml::Node;
use tokio_postgres::{Client, IsolationLevel, Transaction};

use super::migrate;
use super::rows::{BindingRow, MemberRow, Queries, TenantRows};
use super::schema::Schema;
use super::yaml_text::{json_flow, node_json, quote, scalar, without_rows};
use crate::files;
use rolegate_policy::{self as policy, Report, parse};

pub(crate) async fn connect(dsn: &str) -> anyhow::Result<Client> {
    let cfg = super::Config::from_dsn(dsn, std::time::Duration::from_secs(1)).map_err(anyhow::Error::msg)?;
    let (client, _) =
        super::connect(&cfg).await.with_context(|| format!("cannot connect to postgres {}", cfg.describe()))?;
    Ok(client)
}

/// `rolegate migrate --dsn DSN [--schema NAME]`.
pub async fn migrate_command(dsn: &str, schema: &Schema) -> anyhow::Result<ExitCode> {
    let mut client = connect(dsn).await?;
    let applied = migrate::migrate(&mut client, schema).await.context("migration failed")?;
    let version = migrate::current(&client, schema).await?.unwrap_or(0);
    match applied.as_slice() {
        [] => println!("schema {schema} is up to date at version {version}"),
        v => println!("applied migrations {v:?}; schema {schema} is at version {version}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// One tenant document split into its document text and rows.
struct Split {
    id: String,
    document: String,
    template: Option<String>,
    units: Vec<[Option<String>; 3]>,
    members: Vec<[Option<String>; 6]>,
    bindings: Vec<[Option<String>; 8]>,
}

/// `rolegate import DIR --to DSN [--schema NAME]`.
pub async fn import_command(dir: &Path, dsn: &str, schema: &Schema) -> anyhow::Result<ExitCode> {
    let (_, loaded) = crate::dir::load_snapshot(dir)?;
    let errors: Vec<String> = loaded.diagnostics().iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect();
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("{e}");
        }
        eprintln!("{} errors; nothing imported", errors.len());
        return Ok(ExitCode::FAILURE);
    }
    let listing = files::scan(dir)?;
    let mut templates = Vec::new();
    let mut tenants = Vec::new();
    for file in &listing.documents {
        let text =
            std::fs::read_to_string(&file.path).with_context(|| format!("cannot read {}", file.path.display()))?;
        match &file.template {
            Some(name) => templates.push((name.clone(), text)),
            None => tenants.push(split(&file.path, &text)?),
        }
    }
    let mut client = connect(dsn).await?;
    migrate::require_current(&client, schema).await?;
    let tx = client.transaction().await?;
    for (name, text) in &templates {
        tx.execute(
            &*schema.sql(
                "INSERT INTO rolegate.templates (name, document) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE \
             SET document = EXCLUDED.document WHERE rolegate.templates.document IS DISTINCT FROM EXCLUDED.document",
            ),
            &[name, text],
        )
        .await?;
    }
    let (mut members, mut bindings) = (0, 0);
    for t in &tenants {
        store_tenant(&tx, schema, t).await.with_context(|| format!("cannot import tenant `{}`", t.id))?;
        members += t.members.len();
        bindings += t.bindings.len();
    }
    tx.commit().await?;
    for t in &tenants {
        let revision: i64 =
            client.query_one(&*schema.sql("SELECT rolegate.revision($1)"), &[&t.id]).await?.try_get(0)?;
        println!("tenant {} at revision {revision}", t.id);
    }
    println!(
        "imported {} tenants ({members} members, {bindings} bindings) and {} templates",
        tenants.len(),
        templates.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// The items of a list node, none when it is absent.
fn seq(n: Option<&Node>) -> Vec<&Node> {
    n.and_then(Node::as_sequence).map(|s| s.iter().collect()).unwrap_or_default()
}

fn split(path: &Path, text: &str) -> anyhow::Result<Split> {
    let shown = path.display();
    let mut report = Report::new(std::sync::Arc::from(shown.to_string()));
    let root = policy::yaml::parse(&mut report, text).with_context(|| format!("{shown}: not YAML"))?;
    let map = root.as_mapping().with_context(|| format!("{shown}: not a mapping"))?;
    let str_of = |n: Option<&Node>| n.and_then(Node::as_scalar).map(|s| s.as_str().to_owned());
    let id = str_of(map.get_node("tenant")).with_context(|| format!("{shown}: no `tenant`"))?;
    let document = without_rows(text);
    let head = parse::document(&mut report, &document, None);
    let Some(head) = head.filter(|h| h.units.is_empty() && h.members.is_empty() && h.name.value == id) else {
        bail!("{shown}: cannot separate `units:` and `members:` from the rest; write them as top-level block sections");
    };
    let json = |n: Option<&Node>| {
        n.map(|n| {
            let mut s = String::new();
            node_json(n, &mut s);
            s
        })
    };
    let units = seq(map.get_node("units"))
        .into_iter()
        .filter_map(Node::as_mapping)
        .map(|u| [str_of(u.get_node("id")), str_of(u.get_node("parent")), str_of(u.get_node("description"))])
        .collect();
    let mut members = Vec::new();
    let mut bindings = Vec::new();
    for m in seq(map.get_node("members")).into_iter().filter_map(Node::as_mapping) {
        let member = str_of(m.get_node("id"));
        members.push([
            member.clone(),
            str_of(m.get_node("status")).or(Some("active".to_owned())),
            str_of(m.get_node("expires")),
            json(m.get_node("units")).or(Some("[]".to_owned())),
            json(m.get_node("attrs")).or(Some("{}".to_owned())),
            str_of(m.get_node("description")),
        ]);
        for b in seq(m.get_node("bindings")).into_iter().filter_map(Node::as_mapping) {
            bindings.push([
                member.clone(),
                str_of(b.get_node("id")),
                str_of(b.get_node("role")),
                json(b.get_node("scope")),
                str_of(b.get_node("from")),
                str_of(b.get_node("until")),
                json(b.get_node("when")),
                str_of(b.get_node("description")),
            ]);
        }
    }
    Ok(Split { id, document, template: head.template.map(|t| t.value), units, members, bindings })
}

/// Replaces one tenant's document and rows. Columns travel as text arrays and are cast in SQL,
/// one statement per table.
async fn store_tenant(tx: &Transaction<'_>, schema: &Schema, t: &Split) -> anyhow::Result<()> {
    tx.execute(
        &*schema.sql(
            "INSERT INTO rolegate.tenants (id, document) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE \
         SET document = EXCLUDED.document WHERE rolegate.tenants.document IS DISTINCT FROM EXCLUDED.document",
        ),
        &[&t.id, &t.document],
    )
    .await?;
    let template: Option<String> = tx
        .query_one(&*schema.sql("SELECT template FROM rolegate.tenants WHERE id = $1"), &[&t.id])
        .await?
        .try_get(0)?;
    if template != t.template {
        bail!("write `template: NAME` on a line of its own at the top level of the document");
    }
    tx.execute(&*schema.sql("DELETE FROM rolegate.units WHERE tenant = $1"), &[&t.id]).await?;
    tx.execute(&*schema.sql("DELETE FROM rolegate.members WHERE tenant = $1"), &[&t.id]).await?;
    let col = |rows: &[[Option<String>; 3]], i: usize| rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    tx.execute(
        &*schema.sql("INSERT INTO rolegate.units (tenant, id, parent, description) \
         SELECT $1, u.id, u.parent, u.description FROM unnest($2::text[], $3::text[], $4::text[]) AS u (id, parent, description)"),
        &[&t.id, &col(&t.units, 0), &col(&t.units, 1), &col(&t.units, 2)],
    )
    .await?;
    let col = |rows: &[[Option<String>; 6]], i: usize| rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    tx.execute(
        &*schema.sql(
            "INSERT INTO rolegate.members (tenant, id, status, expires, units, attrs, description) \
         SELECT $1, m.id, m.status, m.expires::timestamptz, ARRAY(SELECT jsonb_array_elements_text(m.units::jsonb)), \
                m.attrs::jsonb, m.description \
         FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) \
              AS m (id, status, expires, units, attrs, description)",
        ),
        &[
            &t.id,
            &col(&t.members, 0),
            &col(&t.members, 1),
            &col(&t.members, 2),
            &col(&t.members, 3),
            &col(&t.members, 4),
            &col(&t.members, 5),
        ],
    )
    .await?;
    let col = |rows: &[[Option<String>; 8]], i: usize| rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    // In document order: positions are drawn as the rows are inserted.
    tx.execute(
        &*schema.sql(
            "INSERT INTO rolegate.bindings (tenant, member, id, role, scope, \"from\", until, \"when\", description) \
         SELECT $1, b.member, b.id, b.role, b.scope::jsonb, b.valid_from::timestamptz, b.valid_until::timestamptz, \
                b.condition::jsonb, b.description \
         FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) \
              WITH ORDINALITY AS b (member, id, role, scope, valid_from, valid_until, condition, description, ord) \
         ORDER BY b.ord",
        ),
        &[
            &t.id,
            &col(&t.bindings, 0),
            &col(&t.bindings, 1),
            &col(&t.bindings, 2),
            &col(&t.bindings, 3),
            &col(&t.bindings, 4),
            &col(&t.bindings, 5),
            &col(&t.bindings, 6),
            &col(&t.bindings, 7),
        ],
    )
    .await?;
    Ok(())
}

/// `rolegate export --from DSN DIR [--schema NAME]`.
pub async fn export_command(dsn: &str, dir: &Path, schema: &Schema) -> anyhow::Result<ExitCode> {
    let (tenants, templates) = export_schema(dsn, schema, dir).await?;
    println!("exported {tenants} tenants and {templates} templates to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes the policies held in PostgreSQL, read in one snapshot, as a policy directory; returns
/// how many tenants and templates it wrote.
pub async fn export(dsn: &str, dir: &Path) -> anyhow::Result<(usize, usize)> {
    export_schema(dsn, &Schema::default(), dir).await
}

/// [`export`] of the policy held in `schema`.
pub async fn export_schema(dsn: &str, schema: &Schema, dir: &Path) -> anyhow::Result<(usize, usize)> {
    let mut client = connect(dsn).await?;
    migrate::require_current(&client, schema).await?;
    let queries = Queries::prepare(&client, schema).await?;
    let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
    let ids = queries.tenant_ids(&tx).await?;
    let templates: Vec<(String, String)> = tx
        .query(&*schema.sql("SELECT name, document FROM rolegate.templates ORDER BY name"), &[])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    std::fs::create_dir_all(dir.join("templates")).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, text) in &templates {
        write(&dir.join("templates").join(file_name(name)?), text)?;
    }
    // One tenant at a time, all in one snapshot.
    for id in &ids {
        let rows = queries.tenants(&tx, std::slice::from_ref(id)).await?;
        for t in &rows.tenants {
            write(&dir.join(file_name(&t.id)?), &render(&t.document, &rows))?;
        }
    }
    tx.commit().await?;
    Ok((ids.len(), templates.len()))
}

fn file_name(id: &str) -> anyhow::Result<String> {
    let safe = !id.starts_with('.') && id.chars().all(|c| c.is_alphanumeric() || "-_.@".contains(c));
    if !safe {
        bail!("cannot name a file after `{id}`: only letters, digits, `-`, `_`, `.` and `@`");
    }
    Ok(format!("{id}.yaml"))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The tenant's document followed by its rows (of this tenant only) as `units:` and `members:`.
fn render(document: &str, rows: &TenantRows) -> String {
    let mut out = document.trim_end().to_owned();
    out.push('\n');
    if !rows.units.is_empty() {
        out.push_str("\nunits:\n");
        for u in &rows.units {
            let mut fields = vec![format!("id: {}", scalar(&u.id))];
            fields.extend(u.parent.as_ref().map(|p| format!("parent: {}", scalar(p))));
            fields.extend(u.description.as_ref().map(|d| format!("description: {}", scalar(d))));
            let _ = writeln!(out, "  - {{{}}}", fields.join(", "));
        }
    }
    let mut bindings: HashMap<&str, Vec<&BindingRow>> = HashMap::new();
    for b in &rows.bindings {
        bindings.entry(b.member.as_str()).or_default().push(b);
    }
    if !rows.members.is_empty() {
        out.push_str("\nmembers:\n");
        for m in &rows.members {
            render_member(&mut out, m, bindings.get(m.id.as_str()).map_or(&[], Vec::as_slice));
        }
    }
    out
}

fn render_member(out: &mut String, m: &MemberRow, bindings: &[&BindingRow]) {
    let _ = writeln!(out, "  - id: {}", scalar(&m.id));
    if let Some(d) = &m.description {
        let _ = writeln!(out, "    description: {}", scalar(d));
    }
    if m.status != "active" {
        let _ = writeln!(out, "    status: {}", scalar(&m.status));
    }
    if let Some(at) = instant(m.expires) {
        let _ = writeln!(out, "    expires: {at}");
    }
    if !m.units.is_empty() {
        let units: Vec<String> = m.units.iter().map(|u| scalar(u)).collect();
        let _ = writeln!(out, "    units: [{}]", units.join(", "));
    }
    if m.attrs != "{}" {
        let _ = writeln!(out, "    attrs: {}", json_flow(&m.attrs));
    }
    if bindings.is_empty() {
        return;
    }
    out.push_str("    bindings:\n");
    for b in bindings {
        let mut fields = Vec::new();
        fields.extend(b.id.as_ref().map(|id| format!("id: {}", scalar(id))));
        fields.push(format!("role: {}", scalar(&b.role)));
        fields.push(format!("scope: {}", json_flow(&b.scope)));
        fields.extend(instant(b.from).map(|at| format!("from: {at}")));
        fields.extend(instant(b.until).map(|at| format!("until: {at}")));
        fields.extend(b.when.as_ref().map(|w| format!("when: {}", json_flow(w))));
        fields.extend(b.description.as_ref().map(|d| format!("description: {}", scalar(d))));
        let _ = writeln!(out, "      - {{{}}}", fields.join(", "));
    }
}

fn instant(micros: Option<i64>) -> Option<String> {
    micros.and_then(|us| jiff::Timestamp::from_microsecond(us).ok()).map(|t| quote(&t.to_string()))
}
