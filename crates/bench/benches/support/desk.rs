//! The benchmark tenant: a service desk of any size, shared by the engine and inspector benches.

use std::fmt::Write as _;

use rolegate::policy;

const UNITS: usize = 100;

/// A service-desk tenant: 100 units in a 3-level tree, agents on relation scope, team admins on
/// their units, outsourced agents with a deny and a mask rule.
pub fn desk_yaml(name: &str, members: usize) -> String {
    let mut s = format!(
        "tenant: {name}
schema:
  conversation: [view, reply, assign, transfer, close, export]
  customer: [view, edit, export]
  settings: [view, edit]
roles:
  agent: {{allow: [conversation.view, conversation.reply, conversation.close, customer.view]}}
  team_admin: {{extends: [agent], allow: [conversation.assign, conversation.transfer, settings.view]}}
  admin: {{allow: [\"*\"], except: [settings.edit], requestable: [settings.edit, customer.export]}}
rules:
  - {{id: outsourced-no-export, effect: deny, actions: [\"*.export\"], when: {{principal: {{employment: outsourced}}}}, alert: true}}
  - {{id: outsourced-mask, effect: mask, fields: [phone, email], actions: [customer.view, conversation.view], when: {{principal: {{employment: outsourced}}}}}}
units:
"
    );
    for u in 0..UNITS {
        let parent = match u {
            0 => String::new(),
            1..=9 => ", parent: u0".to_owned(),
            _ => format!(", parent: u{}", u % 9 + 1),
        };
        let _ = writeln!(s, "  - {{id: u{u}{parent}}}");
    }
    s.push_str("members:\n");
    for m in 0..members {
        let unit = m % UNITS;
        let (role, scope) = match m % 50 {
            0 => ("team_admin", "own_units"),
            1 => ("admin", "tenant"),
            _ => ("agent", "{relation: assignee}"),
        };
        let employment = if m % 10 == 3 { "outsourced" } else { "employee" };
        let _ = writeln!(
            s,
            "  - {{id: m{m}, units: [u{unit}], attrs: {{employment: {employment}, level: {}}}, bindings: [{{role: {role}, scope: {scope}}}]}}",
            m % 3
        );
    }
    s
}

pub fn compile(name: &str, members: usize) -> rolegate::engine::Tenant {
    let (doc, diags) = policy::parse_str("bench.yaml", &desk_yaml(name, members), None);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    policy::compile(&doc.unwrap(), None, 1).unwrap()
}
