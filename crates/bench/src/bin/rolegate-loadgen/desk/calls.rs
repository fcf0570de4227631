//! The calls drawn from the benchmark tenant, and each call as a rolegate `Check` or
//! `CheckBatch` request and as a Cerbos `CheckResources` request.

use rolegate::api;

use super::{Desk, Kind, Rng, TEAMS_PER_DEPT, TENANT};

/// One resource and action of a call.
pub struct Item {
    kind: &'static str,
    verb: &'static str,
    id: String,
    team: Option<usize>,
    assignee: Option<usize>,
}

/// One call: a member, their request context and one (`Check`) or more (`CheckBatch`) items.
pub struct Call {
    member: usize,
    ip: String,
    active_conversations: i64,
    /// The items; one for `Check`.
    pub items: Vec<Item>,
}

const CHECK_MIX: &[((&str, &str), u32)] = &[
    (("conversation", "view"), 26),
    (("conversation", "reply"), 16),
    (("conversation", "accept"), 8),
    (("conversation", "transfer"), 4),
    (("conversation", "close"), 5),
    (("conversation", "add_note"), 4),
    (("conversation", "assign"), 3),
    (("conversation", "export"), 2),
    (("customer", "view"), 12),
    (("customer", "edit"), 6),
    (("customer", "export"), 2),
    (("team", "view"), 5),
    (("team", "add_member"), 1),
    (("team", "edit_member"), 1),
    (("quick_reply", "view"), 3),
    (("quick_reply", "edit"), 2),
];

/// An inbox or customer list: mostly views, a few replies and exports.
const BATCH_MIX: &[((&str, &str), u32)] = &[
    (("conversation", "view"), 60),
    (("conversation", "reply"), 15),
    (("conversation", "accept"), 5),
    (("customer", "view"), 15),
    (("customer", "export"), 5),
];

impl Desk {
    /// `n` calls of `items` items each (1: `Check`), reproducible from `seed`.
    pub fn calls(&self, items: usize, n: usize, seed: u64) -> Vec<Call> {
        let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(items as u64));
        let mix = if items == 1 { CHECK_MIX } else { BATCH_MIX };
        (0..n)
            .map(|_| {
                let member = rng.below(self.members.len());
                let ip = match (self.members[member].kind, rng.below(20)) {
                    (Kind::Vendor, 0..=13) => format!("203.0.113.{}", 1 + rng.below(254)),
                    (Kind::Vendor, 14..=16) => format!("2001:db8:abcd::{:x}", 1 + rng.below(0xfffe)),
                    (Kind::Vendor, _) => format!("198.51.100.{}", 1 + rng.below(254)),
                    _ => format!("192.0.2.{}", 1 + rng.below(254)),
                };
                let active_conversations = rng.below(6) as i64;
                let items = (0..items)
                    .map(|_| {
                        let action = *rng.pick(mix);
                        self.item(&mut rng, member, action)
                    })
                    .collect();
                Call { member, ip, active_conversations, items }
            })
            .collect()
    }

    fn item(&self, rng: &mut Rng, member: usize, (kind, verb): (&'static str, &'static str)) -> Item {
        let own = self.members[member].team;
        let roll = rng.unit();
        let team = match own {
            Some(t) if roll < 0.55 => t,
            Some(t) if roll < 0.70 => {
                let dept = t / TEAMS_PER_DEPT;
                dept * TEAMS_PER_DEPT + rng.below(TEAMS_PER_DEPT)
            }
            _ => rng.below(self.teams.len()),
        };
        let (id, team, assignee) = match kind {
            "team" => (self.teams[team].id.clone(), Some(team), None),
            "quick_reply" => (format!("qr-{}", rng.below(500)), (rng.below(2) == 0).then_some(team), None),
            _ => {
                let id = format!("{}-{}", if kind == "customer" { "cust" } else { "conv" }, rng.below(1_000_000));
                let roll = rng.unit();
                let assignee = match () {
                    _ if verb == "accept" && roll < 0.8 => None,
                    _ if roll < 0.5 => Some(member),
                    _ if roll < 0.9 => Some(self.by_team[team][rng.below(self.by_team[team].len())]),
                    _ => None,
                };
                (id, Some(team), assignee)
            }
        };
        Item { kind, verb, id, team, assignee }
    }
}

fn text(s: impl Into<String>) -> api::AttrValue {
    api::AttrValue { kind: Some(api::attr_value::Kind::Text(s.into())) }
}

impl Desk {
    fn resource(&self, item: &Item) -> api::Resource {
        let mut attrs = std::collections::HashMap::new();
        if let Some(a) = item.assignee {
            attrs.insert("assignee".to_owned(), text(&self.members[a].id));
        }
        let unit = item.team.map_or(String::new(), |t| self.teams[t].id.clone());
        api::Resource { kind: item.kind.into(), id: item.id.clone(), unit, attrs }
    }

    fn context(call: &Call) -> api::Context {
        let int = api::AttrValue { kind: Some(api::attr_value::Kind::Int(call.active_conversations)) };
        api::Context { client_ip: call.ip.clone(), attrs: [("active_conversations".to_owned(), int)].into() }
    }

    /// The call as a rolegate `Check` request (its first item).
    pub fn check_request(&self, call: &Call) -> api::CheckRequest {
        let item = &call.items[0];
        api::CheckRequest {
            tenant: TENANT.into(),
            principal: self.members[call.member].id.clone(),
            action: format!("{}.{}", item.kind, item.verb),
            resource: Some(self.resource(item)),
            context: Some(Self::context(call)),
            min_revision: 0,
        }
    }

    /// The call as a rolegate `CheckBatch` request.
    pub fn batch_request(&self, call: &Call) -> api::CheckBatchRequest {
        api::CheckBatchRequest {
            tenant: TENANT.into(),
            principal: self.members[call.member].id.clone(),
            context: Some(Self::context(call)),
            min_revision: 0,
            items: call
                .items
                .iter()
                .map(|i| api::BatchItem { action: format!("{}.{}", i.kind, i.verb), resource: Some(self.resource(i)) })
                .collect(),
        }
    }

    /// The call as a Cerbos `CheckResources` request in its JSON form: the principal carries
    /// the roles its bindings stand for and the attributes Cerbos needs (Cerbos holds no member
    /// directory), each resource the path of its unit to the root (Cerbos has no unit tree).
    pub fn cerbos_request(&self, call: &Call) -> serde_json::Value {
        let m = &self.members[call.member];
        let team = m.team.map(|t| &self.teams[t]);
        let roles: &[&str] = match m.kind {
            Kind::SuperAdmin => &["super_admin"],
            Kind::SystemAdmin => &["system_admin"],
            Kind::Observer => &["observer"],
            Kind::CrmSync => &["crm_sync"],
            Kind::TeamAdmin => &["team_admin", "cross_team_viewer"],
            Kind::Agent | Kind::Disabled => &["agent", "queue_picker"],
            Kind::SupportReader => &["agent", "queue_picker", "support_reader"],
            Kind::Vendor => &["vendor_agent", "vendor_queue_picker"],
            Kind::Intern => &["intern", "intern_queue_picker"],
        };
        let units: Vec<&str> = match (m.kind, team) {
            (Kind::CrmSync, _) => vec![],
            (_, Some(t)) => vec![t.id.as_str()],
            (_, None) => vec!["service-center"],
        };
        let principal = serde_json::json!({
            "id": m.id,
            "roles": roles,
            "attr": {
                "units": units,
                "function": team.map_or("", |t| t.dept.function()),
                "employment": if m.kind == Kind::Vendor { "outsourced" } else { "employee" },
                "status": if m.kind == Kind::Disabled { "disabled" } else { "active" },
                "ip": call.ip,
                "active_conversations": call.active_conversations,
            },
        });
        let resources: Vec<_> = call
            .items
            .iter()
            .map(|i| {
                let mut path: Vec<&str> = Vec::new();
                if let Some(t) = i.team {
                    path.push(&self.teams[t].id);
                    path.extend(self.teams[t].dept.path());
                }
                let assignee = i.assignee.map_or("", |a| self.members[a].id.as_str());
                serde_json::json!({
                    "actions": [i.verb],
                    "resource": {"kind": i.kind, "id": i.id, "attr": {"unit_path": path, "assignee": assignee}},
                })
            })
            .collect();
        serde_json::json!({"principal": principal, "resources": resources})
    }
}
