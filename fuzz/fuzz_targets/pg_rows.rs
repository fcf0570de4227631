//! The PostgreSQL row → document path: tenant, template, unit, member and binding rows with
//! arbitrary text in every column (documents, JSON attributes, scopes, conditions, instants) go
//! through `rolegate_source::postgres::build` exactly as the follower applies them: the head, the
//! base tenant, every member, then a change to the first member. A bad row must be a finding
//! naming the row, never a panic.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use rolegate_source::postgres::build;
use rolegate_source::postgres::rows::{BindingRow, MemberRow, TemplateRow, TenantRow, UnitRow};

#[derive(Arbitrary, Debug)]
struct Rows {
    document: String,
    template: Option<String>,
    units: Vec<(String, Option<String>)>,
    members: Vec<Member>,
}

#[derive(Arbitrary, Debug)]
struct Member {
    id: String,
    status: String,
    expires: Option<i64>,
    units: Vec<String>,
    attrs: String,
    bindings: Vec<Binding>,
}

#[derive(Arbitrary, Debug)]
struct Binding {
    id: Option<String>,
    role: String,
    scope: String,
    from: Option<i64>,
    until: Option<i64>,
    when: Option<String>,
}

const TENANT: &str =
    "tenant: t\nschema:\n  conversation: [view, reply]\nroles:\n  agent: {allow: [conversation.view]}\n";

libfuzzer_sys::fuzz_target!(|rows: Rows| {
    // Half the time a known-good document, so the member rows reach the compiler.
    let document = if rows.document.len() % 2 == 0 { TENANT.to_owned() } else { rows.document.clone() };
    let template_rows: Vec<TemplateRow> =
        rows.template.iter().map(|t| TemplateRow { name: "base".to_owned(), document: t.clone() }).collect();
    let templates = build::templates(&template_rows);
    let tenant =
        TenantRow { id: "t".to_owned(), document, template: rows.template.as_ref().map(|_| "base".to_owned()) };
    let units: Vec<UnitRow> = rows
        .units
        .iter()
        .take(8)
        .map(|(id, parent)| UnitRow {
            tenant: "t".to_owned(),
            id: id.clone(),
            parent: parent.clone(),
            description: None,
        })
        .collect();
    let members: Vec<MemberRow> = rows
        .members
        .iter()
        .take(8)
        .map(|m| MemberRow {
            tenant: "t".to_owned(),
            id: m.id.clone(),
            status: m.status.clone(),
            expires: m.expires,
            units: m.units.clone(),
            attrs: m.attrs.clone(),
            description: None,
        })
        .collect();
    let bindings: Vec<BindingRow> = rows
        .members
        .iter()
        .take(8)
        .flat_map(|m| {
            m.bindings.iter().take(4).map(|b| BindingRow {
                tenant: "t".to_owned(),
                member: m.id.clone(),
                id: b.id.clone(),
                role: b.role.clone(),
                scope: b.scope.clone(),
                from: b.from,
                until: b.until,
                when: b.when.clone(),
                description: None,
            })
        })
        .collect();
    let mut by_member: HashMap<&str, Vec<&BindingRow>> = HashMap::new();
    for b in &bindings {
        by_member.entry(b.member.as_str()).or_default().push(b);
    }
    let unit_refs: Vec<&UnitRow> = units.iter().collect();
    let Ok(head) = build::head(&tenant, &unit_refs, &templates) else { return };
    let member_refs: Vec<&MemberRow> = members.iter().collect();
    let Ok(built) = build::tenant(&head, &member_refs, &by_member, 7) else { return };
    // INVARIANT: every rejected member is a named finding, and the tenant is still served.
    for (id, diags) in &built.rejected {
        assert!(!diags.is_empty(), "member `{id}` rejected without a finding");
    }
    rolegate_fuzz::probe(&built.tenant);
    if let Ok(base) = build::base(&head, 8) {
        let first: Vec<&MemberRow> = members.iter().take(1).collect();
        let removed: Vec<&str> = members.iter().skip(1).take(1).map(|m| m.id.as_str()).collect();
        if let Ok(updated) = build::update(&head, &base, &first, &removed, &by_member, 8) {
            rolegate_fuzz::probe(&updated.tenant);
        }
    }
});
