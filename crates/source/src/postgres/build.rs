//! Rows → policy documents → compiled tenants. Pure: no database and no runtime, so every
//! validation a row goes through is the one a policy file goes through.
//!
//! A tenant's document and unit rows make its *head* (a [`Document`] without members); each member
//! row with its binding rows is rendered as a JSON object, which is YAML, and parsed by the policy
//! parser. Findings name the row: `postgres:members/acme/rep-1`, `postgres:units/acme/sales-eu`,
//! `postgres:tenants/acme` (with line and column in the tenant's document).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;

use super::rows::{BindingRow, MemberRow, TemplateRow, TenantRow, UnitRow};
use super::yaml_text::quote;
use rolegate_engine::Tenant;
use rolegate_policy::compile::{compile_members_isolated, rejection};
use rolegate_policy::diag::{Diagnostic, Loc, Report, Spanned};
use rolegate_policy::document::{Document, MemberDoc, UnitDoc};
use rolegate_policy::{MemberChange, compile, find_template, parse, yaml};

/// The label of a row in findings: `postgres:<table>/<key>`.
pub fn label(table: &str, key: &str) -> Arc<str> {
    Arc::from(format!("postgres:{table}/{key}"))
}

/// A tenant's document with its units, and its template: everything but the members. Kept by
/// the source so a member change can be compiled against it.
#[derive(Clone, Debug)]
pub struct Head {
    /// The tenant document; its `units` come from the unit rows, its `members` are empty.
    pub doc: Arc<Document>,
    /// The template it names.
    pub template: Option<Arc<Document>>,
}

/// Parsed templates by name; a template that fails to parse keeps its findings.
pub type Templates = HashMap<String, Result<Arc<Document>, Vec<Diagnostic>>>;

/// Parses template rows.
pub fn templates(rows: &[TemplateRow]) -> Templates {
    rows.iter()
        .map(|t| {
            let mut report = Report::new(label("templates", &t.name));
            let doc = parse::document(&mut report, &t.document, Some(&t.name));
            let parsed = match doc {
                Some(doc) if !report.has_errors() => Ok(Arc::new(doc)),
                _ => Err(report.diags),
            };
            (t.name.clone(), parsed)
        })
        .collect()
}

/// Parses a tenant row and adds its unit rows.
pub fn head(row: &TenantRow, units: &[&UnitRow], templates: &Templates) -> Result<Head, Vec<Diagnostic>> {
    let mut report = Report::new(label("tenants", &row.id));
    let Some(mut doc) = parse::document(&mut report, &row.document, None).filter(|_| !report.has_errors()) else {
        return Err(report.diags);
    };
    let first = Loc { line: 1, col: 1 };
    if doc.name.value != row.id {
        let msg = format!("the document names tenant `{}`, its row is tenant `{}`", doc.name.value, row.id);
        report.error(doc.name.at, "tenant", msg);
    }
    if !doc.units.is_empty() || !doc.members.is_empty() {
        let msg = "units and members are rows of `rolegate.units` and `rolegate.members`, not part of the document";
        report.error(first, "", msg);
    }
    let named = doc.template.as_ref().map(|t| t.value.as_str());
    if named != row.template.as_deref() {
        let at = doc.template.as_ref().map_or(first, |t| t.at);
        let msg =
            "write `template: NAME` on a line of its own at the top level, so that template changes reach the tenant";
        report.error(at, "template", msg);
    }
    let get = |n: &str| templates.get(n).cloned();
    let template = match find_template(&mut report, &doc, get, templates.keys().map(String::as_str)) {
        Ok(Some(Ok(t))) => Some(t),
        Ok(Some(Err(diags))) => {
            report.diags.extend(diags);
            None
        }
        Ok(None) | Err(_) => None,
    };
    if report.has_errors() {
        return Err(report.diags);
    }
    doc.units = units
        .iter()
        .map(|u| UnitDoc {
            id: Spanned { value: u.id.clone(), at: Loc::default() },
            parent: u.parent.as_ref().map(|p| Spanned { value: p.clone(), at: Loc::default() }),
        })
        .collect();
    Ok(Head { doc: Arc::new(doc), template })
}

/// Parses a member row with its binding rows, in order, through the policy parser.
pub fn member(row: &MemberRow, bindings: &[&BindingRow]) -> Result<MemberDoc, Vec<Diagnostic>> {
    let mut report = Report::new(label("members", &format!("{}/{}", row.tenant, row.id)));
    let text = member_json(row, bindings, &mut report);
    let doc = yaml::parse(&mut report, &text).and_then(|node| parse::member(&mut report, &node, ""));
    match doc {
        Some(doc) if !report.has_errors() => Ok(doc),
        _ => Err(report.diags),
    }
}

/// The member as a JSON object: the form of a member in a policy document.
fn member_json(row: &MemberRow, bindings: &[&BindingRow], report: &mut Report) -> String {
    let mut s = format!("{{\"id\": {}, \"status\": {}", quote(&row.id), quote(&row.status));
    instant(&mut s, "expires", row.expires, report, "expires");
    let units: Vec<String> = row.units.iter().map(|u| quote(u)).collect();
    s.push_str(&format!(", \"units\": [{}], \"attrs\": {}, \"bindings\": [", units.join(", "), row.attrs));
    for (k, b) in bindings.iter().enumerate() {
        if k > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!("{{\"role\": {}, \"scope\": {}", quote(&b.role), b.scope));
        if let Some(id) = &b.id {
            s.push_str(&format!(", \"id\": {}", quote(id)));
        }
        instant(&mut s, "from", b.from, report, &format!("bindings[{k}].from"));
        instant(&mut s, "until", b.until, report, &format!("bindings[{k}].until"));
        if let Some(when) = &b.when {
            s.push_str(&format!(", \"when\": {when}"));
        }
        s.push('}');
    }
    s.push_str("]}");
    s
}

fn instant(s: &mut String, key: &str, micros: Option<i64>, report: &mut Report, path: &str) {
    let Some(us) = micros else { return };
    match Timestamp::from_microsecond(us) {
        Ok(ts) => s.push_str(&format!(", \"{key}\": \"{ts}\"")),
        Err(_) => report.error(Loc::default(), path, "instant is outside the years -9999 to 9999"),
    }
}

/// A tenant compiled from rows, and the members it serves as invalid because their rows were
/// rejected (by member id, with the findings, each naming its row).
#[derive(Debug)]
pub struct Built {
    /// The tenant.
    pub tenant: Tenant,
    /// Members denied everything until their rows are fixed.
    pub rejected: BTreeMap<String, Vec<Diagnostic>>,
}

/// Compiles a head without members: fails when the tenant document, its template or a unit row
/// is wrong, which no member can be served without.
pub fn base(head: &Head, revision: u64) -> Result<Tenant, Vec<Diagnostic>> {
    let tenant = &head.doc.name.value;
    compile(&head.doc, head.template.as_deref(), revision)
        .map_err(|d| relabel(d, "units", "units", tenant, &unit_ids(&head.doc)))
}

/// Compiles a whole tenant from its head and every member row (bindings grouped by member).
pub fn tenant(
    head: &Head,
    members: &[&MemberRow],
    bindings: &HashMap<&str, Vec<&BindingRow>>,
    revision: u64,
) -> Result<Built, Vec<Diagnostic>> {
    update(head, &base(head, revision)?, members, &[], bindings, revision)
}

/// Applies changed members (`put`) and deleted ones (`removed`) to the tenant compiled from
/// `head`: only those members are compiled. A member whose rows fail is served as invalid
/// (denied everything) and reported in [`Built::rejected`]; the other changes apply.
pub fn update(
    head: &Head,
    base: &Tenant,
    put: &[&MemberRow],
    removed: &[&str],
    bindings: &HashMap<&str, Vec<&BindingRow>>,
    revision: u64,
) -> Result<Built, Vec<Diagnostic>> {
    let mut rejected = BTreeMap::new();
    let mut docs = Vec::with_capacity(put.len());
    let mut unparsed: Vec<(&str, String)> = Vec::new();
    for row in put {
        match member(row, bindings.get(row.id.as_str()).map_or(&[], Vec::as_slice)) {
            Ok(doc) => docs.push(doc),
            Err(d) => {
                unparsed.push((row.id.as_str(), rejection(&row.id, &d)));
                rejected.insert(row.id.clone(), d);
            }
        }
    }
    let mut changes: Vec<MemberChange<'_>> = docs.iter().map(MemberChange::Put).collect();
    changes.extend(unparsed.iter().map(|(id, why)| MemberChange::Invalid { id, why }));
    changes.extend(removed.iter().map(|id| MemberChange::Remove(id)));
    let ids: Vec<&str> = changes
        .iter()
        .map(|c| match c {
            MemberChange::Put(m) => m.id.value.as_str(),
            MemberChange::Remove(id) | MemberChange::Invalid { id, .. } => id,
        })
        .collect();
    let tenant = &head.doc.name.value;
    let isolated = compile_members_isolated(&head.doc, head.template.as_deref(), base, &changes, revision)
        .map_err(|d| relabel(d, "members", "members", tenant, &ids))?;
    for (i, findings) in isolated.rejected {
        if let Some(id) = ids.get(i) {
            rejected.insert((*id).to_owned(), relabel(findings, "members", "members", tenant, &ids));
        }
    }
    Ok(Built { tenant: isolated.tenant, rejected })
}

fn unit_ids(doc: &Document) -> Vec<&str> {
    doc.units.iter().map(|u| u.id.value.as_str()).collect()
}

/// Points findings about `list[i]` at row `ids[i]` of `table`.
fn relabel(diags: Vec<Diagnostic>, list: &str, table: &str, tenant: &str, ids: &[&str]) -> Vec<Diagnostic> {
    diags
        .into_iter()
        .map(|mut d| {
            let parsed = d.key.strip_prefix(list).and_then(|r| r.strip_prefix('[')).and_then(|r| r.split_once(']'));
            if let Some((i, rest)) = parsed
                && let Some(id) = i.parse::<usize>().ok().and_then(|i| ids.get(i))
            {
                let rest = rest.strip_prefix('.').unwrap_or(rest).to_owned();
                d.file = label(table, &format!("{tenant}/{id}"));
                d.key = rest;
                d.at = Loc::default();
            }
            d
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant_row(doc: &str) -> TenantRow {
        TenantRow { id: "acme".into(), document: doc.into(), template: None }
    }

    fn unit(id: &str, parent: Option<&str>) -> UnitRow {
        UnitRow { tenant: "acme".into(), id: id.into(), parent: parent.map(Into::into), description: None }
    }

    fn member_row(id: &str, attrs: &str) -> MemberRow {
        MemberRow {
            tenant: "acme".into(),
            id: id.into(),
            status: "active".into(),
            expires: Some(1_900_000_000_000_000),
            units: vec!["eu".into()],
            attrs: attrs.into(),
            description: None,
        }
    }

    fn binding(member: &str, role: &str, scope: &str, when: Option<&str>) -> BindingRow {
        BindingRow {
            tenant: "acme".into(),
            member: member.into(),
            id: None,
            role: role.into(),
            scope: scope.into(),
            from: None,
            until: Some(1_950_000_000_000_000),
            when: when.map(Into::into),
            description: None,
        }
    }

    const DOC: &str = "tenant: acme\nschema: {conversation: [view]}\nroles: {agent: {allow: [conversation.view]}}\n";

    #[test]
    fn member_rows_compile_like_the_same_member_in_a_document() {
        let units = [unit("eu", None)];
        let head = head(&tenant_row(DOC), &units.iter().collect::<Vec<_>>(), &Templates::new()).unwrap();
        let rows = [member_row("rep", r#"{"level": 3, "code": "3"}"#)];
        let b = binding("rep", "agent", r#"{"relation": "assignee"}"#, Some(r#"{"context": {"n": {"lt": 3}}}"#));
        let bindings = HashMap::from([("rep", vec![&b])]);
        let built = tenant(&head, &rows.iter().collect::<Vec<_>>(), &bindings, 7).unwrap();
        assert!(built.rejected.is_empty(), "{:?}", built.rejected);
        let t = built.tenant;
        assert_eq!(t.revision, 7);
        assert_eq!(t.member_count(), 1);
        let doc = member(&rows[0], &[&b]).unwrap();
        assert_eq!(doc.expires.map(|e| e.to_string()).as_deref(), Some("2030-03-17T17:46:40Z"));
        assert_eq!(doc.attrs.get("level"), Some(&rolegate_engine::Value::Int(3)));
        assert_eq!(doc.attrs.get("code"), Some(&rolegate_engine::Value::Text("3".into())));
        assert_eq!(doc.bindings[0].until.map(|e| e.to_string()).as_deref(), Some("2031-10-17T10:40:00Z"));
    }

    #[test]
    fn findings_name_the_row_they_come_from() {
        let units = [unit("eu", None), unit("eu-west", Some("europe"))];
        let err = head(&tenant_row(DOC), &units.iter().collect::<Vec<_>>(), &Templates::new())
            .and_then(|h| tenant(&h, &[], &HashMap::new(), 1))
            .unwrap_err();
        assert_eq!(err[0].to_string(), "postgres:units/acme/eu-west: error: parent: unknown unit `europe`");

        let units = [unit("eu", None)];
        let head = head(&tenant_row(DOC), &units.iter().collect::<Vec<_>>(), &Templates::new()).unwrap();
        let rows = [member_row("ok", "{}"), member_row("rep", r#"{"id": "x"}"#)];
        let b = binding("rep", "agnet", r#""tenant""#, None);
        let bad_scope = binding("ok", "agent", r#""everywhere""#, None);
        let bindings = HashMap::from([("rep", vec![&b]), ("ok", vec![&bad_scope])]);
        let built = tenant(&head, &rows.iter().collect::<Vec<_>>(), &bindings, 2).unwrap();
        let lines: Vec<String> = built.rejected.values().flatten().map(|d| format!("{} {}", d.file, d.key)).collect();
        assert_eq!(lines, ["postgres:members/acme/ok bindings[0].scope", "postgres:members/acme/rep attrs.id"]);

        let bindings = HashMap::from([("rep", vec![&b])]);
        let rows = [member_row("rep", "{}")];
        let built = tenant(&head, &rows.iter().collect::<Vec<_>>(), &bindings, 2).unwrap();
        assert_eq!(
            built.rejected["rep"][0].to_string(),
            "postgres:members/acme/rep: error: bindings[0].role: unknown role `agnet` (did you mean `agent`?)"
        );
    }

    #[test]
    fn a_member_whose_rows_fail_is_denied_everything_and_spares_the_others() {
        let units = [unit("eu", None)];
        let head = head(&tenant_row(DOC), &units.iter().collect::<Vec<_>>(), &Templates::new()).unwrap();
        let rows = [member_row("ok", "{}"), member_row("bad-attrs", r#"{"id": "x"}"#), member_row("bad-role", "{}")];
        let (good, unknown) =
            (binding("ok", "agent", r#""tenant""#, None), binding("bad-role", "agnet", r#""tenant""#, None));
        let bindings = HashMap::from([("ok", vec![&good]), ("bad-role", vec![&unknown])]);
        let built = tenant(&head, &rows.iter().collect::<Vec<_>>(), &bindings, 3).unwrap();
        assert_eq!(built.rejected.keys().collect::<Vec<_>>(), ["bad-attrs", "bad-role"]);
        let mut snapshot = rolegate_engine::Snapshot::default();
        snapshot.insert(Arc::new(built.tenant));
        let decide = |who: &str| {
            let req = rolegate_engine::Request {
                tenant: "acme".into(),
                principal: who.into(),
                action: "conversation.view".into(),
                resource: rolegate_engine::Resource {
                    kind: "conversation".into(),
                    id: "c".into(),
                    ..Default::default()
                },
                context: rolegate_engine::Context::default(),
            };
            rolegate_engine::decide(&snapshot, &req.query(), Timestamp::UNIX_EPOCH).unwrap()
        };
        assert!(decide("ok").allowed);
        let denied = decide("bad-role");
        assert!(!denied.allowed && denied.reason == rolegate_engine::Reason::NoGrant, "{denied:?}");
        assert_eq!(
            denied.message.as_deref(),
            Some(
                "member `bad-role` is denied everything because its policy input is invalid: bindings[0].role: \
                 unknown role `agnet` (did you mean `agent`?)"
            )
        );
        let message = decide("bad-attrs").message.unwrap_or_default();
        assert!(message.contains("attrs.id"), "{message}");
    }

    #[test]
    fn a_document_must_match_its_row() {
        let bad = TenantRow { id: "acme".into(), document: "tenant: other\ntemplate: x\n".into(), template: None };
        let err = head(&bad, &[], &Templates::new()).unwrap_err();
        let keys: Vec<&str> = err.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["tenant", "template", "template"], "{err:?}");
        let with_members = tenant_row("tenant: acme\nmembers: [{id: m}]\n");
        assert!(head(&with_members, &[], &Templates::new()).unwrap_err()[0].message.contains("rows of"));
    }
}
