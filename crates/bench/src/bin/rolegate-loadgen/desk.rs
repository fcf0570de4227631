//! The benchmark tenant: a large copy of `examples/meiqia-service-desk.yaml` on the same template,
//! with the same kinds of members (admins, team admins, agents, outsourced vendor seats, interns,
//! observers, a service account, disabled accounts) spread over many teams, and the calls drawn
//! from it, encoded for rolegate and described for Cerbos.
//!
//! Everything is derived from `(members, seed)`, so the policy files, the rolegate requests and the
//! Cerbos requests agree without being passed between processes.

use std::fmt::Write as _;
use std::path::Path;

use rolegate::api;

/// The tenant id of the benchmark copy.
pub const TENANT: &str = "meiqia-service-desk";
const TEMPLATE: &str = include_str!("../../../../../examples/templates/customer-service-desk.yaml");
const TEAMS_PER_DEPT: usize = 8;
const VENDOR_NETS: &str = r#"[203.0.113.0/24, "2001:db8:abcd::/48"]"#;

/// A department: a unit of the Meiqia tree, parent of generated teams.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dept {
    Presales,
    SupportL1,
    SupportL2,
    Finance,
}

impl Dept {
    const ALL: [Dept; 4] = [Dept::Presales, Dept::SupportL1, Dept::SupportL2, Dept::Finance];

    /// The department unit and its ancestors, nearest first.
    fn path(self) -> &'static [&'static str] {
        match self {
            Dept::Presales => &["presales", "service-center"],
            Dept::SupportL1 => &["support-l1", "tech-support", "service-center"],
            Dept::SupportL2 => &["support-l2", "tech-support", "service-center"],
            Dept::Finance => &["finance", "service-center"],
        }
    }

    fn function(self) -> &'static str {
        match self {
            Dept::Presales => "sales",
            Dept::SupportL1 | Dept::SupportL2 => "support",
            Dept::Finance => "finance",
        }
    }
}

/// What a member is, which fixes their bindings (rolegate) and roles (Cerbos).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    SuperAdmin,
    SystemAdmin,
    Observer,
    CrmSync,
    TeamAdmin,
    Agent,
    /// A pre-sales agent who also reads technical support's conversations.
    SupportReader,
    Vendor,
    Intern,
    Disabled,
}

struct Member {
    id: String,
    kind: Kind,
    team: Option<usize>,
}

struct Team {
    id: String,
    dept: Dept,
}

/// The generated tenant.
pub struct Desk {
    teams: Vec<Team>,
    members: Vec<Member>,
    by_team: Vec<Vec<usize>>,
}

/// splitmix64: small, fast and reproducible across platforms.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a, T>(&mut self, weighted: &'a [(T, u32)]) -> &'a T {
        let total: u32 = weighted.iter().map(|(_, w)| w).sum();
        let mut roll = self.below(total as usize) as u32;
        for (item, w) in weighted {
            if roll < *w {
                return item;
            }
            roll -= w;
        }
        &weighted[0].0
    }
}

impl Desk {
    /// A tenant of about `members` members (at least one per team and the fixed staff).
    pub fn new(members: usize, seed: u64) -> Desk {
        let mut rng = Rng::new(seed);
        let teams: Vec<Team> = Dept::ALL
            .iter()
            .flat_map(|&dept| {
                (1..=TEAMS_PER_DEPT).map(move |i| Team { id: format!("{}-{i:02}", dept.path()[0]), dept })
            })
            .collect();
        let mut out = Vec::new();
        let fixed = [(Kind::SuperAdmin, "head", 2), (Kind::SystemAdmin, "ops", 3), (Kind::Observer, "qa", 8)];
        for (kind, prefix, n) in fixed {
            out.extend((1..=n).map(|i| Member { id: format!("{prefix}-{i}"), kind, team: None }));
        }
        out.push(Member { id: "svc-crm-sync".into(), kind: Kind::CrmSync, team: None });
        for (t, team) in teams.iter().enumerate() {
            out.push(Member { id: format!("lead-{}", team.id), kind: Kind::TeamAdmin, team: Some(t) });
        }
        for i in out.len()..members.max(out.len() + teams.len()) {
            let t = rng.below(teams.len());
            let roll = rng.unit();
            let (kind, prefix) = match teams[t].dept {
                _ if roll < 0.04 => (Kind::Intern, "intern"),
                _ if roll < 0.06 => (Kind::Disabled, "former"),
                Dept::SupportL1 if roll < 0.30 => (Kind::Vendor, "vendor"),
                Dept::Presales if roll < 0.20 => (Kind::SupportReader, "agent"),
                _ => (Kind::Agent, "agent"),
            };
            out.push(Member { id: format!("{prefix}-{i:05}"), kind, team: Some(t) });
        }
        let mut by_team = vec![Vec::new(); teams.len()];
        for (m, member) in out.iter().enumerate() {
            if let Some(t) = member.team {
                by_team[t].push(m);
            }
        }
        Desk { teams, members: out, by_team }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Writes the policy directory: the template and the tenant. `variant` only changes a
    /// comment and the description, so that a rewrite is a real change with the same decisions.
    pub fn write_policies(&self, dir: &Path, variant: u64) -> std::io::Result<()> {
        std::fs::create_dir_all(dir.join("templates"))?;
        std::fs::write(dir.join("templates/customer-service-desk.yaml"), TEMPLATE)?;
        std::fs::write(dir.join(format!("{TENANT}.yaml")), self.policy_yaml(variant))
    }

    fn policy_yaml(&self, variant: u64) -> String {
        let mut y = format!(
            "# Generated by `rolegate-loadgen tenant`: a benchmark copy of examples/meiqia-service-desk.yaml\n\
             # with {} members over {} teams. The vendor seats keep their network allow-list but not their\n\
             # shift schedule, so that decisions do not depend on the hour the benchmark runs.\n\
             tenant: {TENANT}\ntemplate: customer-service-desk\ndescription: Benchmark copy of the Meiqia service desk (variant {variant}).\n\n",
            self.members.len(),
            self.teams.len()
        );
        y.push_str(STATIC_PART);
        y.push_str("\nunits:\n  - {id: service-center}\n  - {id: presales, parent: service-center}\n  - {id: tech-support, parent: service-center}\n  - {id: support-l1, parent: tech-support}\n  - {id: support-l2, parent: tech-support}\n  - {id: finance, parent: service-center}\n");
        for team in &self.teams {
            let _ = writeln!(y, "  - {{id: {}, parent: {}}}", team.id, team.dept.path()[0]);
        }
        y.push_str("\nmembers:\n");
        for m in &self.members {
            self.member_yaml(&mut y, m);
        }
        y.push_str(RULES);
        y
    }

    fn member_yaml(&self, y: &mut String, m: &Member) {
        let team = m.team.map(|t| &self.teams[t]);
        let units = team.map_or("[service-center]".to_owned(), |t| format!("[{}]", t.id));
        let function = team.map(|t| t.dept.function());
        let _ = writeln!(y, "  - id: {}", m.id);
        if m.kind != Kind::CrmSync {
            let _ = writeln!(y, "    units: {units}");
        }
        match (m.kind, function) {
            (Kind::Vendor, Some(f)) => {
                let _ = writeln!(y, "    attrs: {{employment: outsourced, function: {f}}}");
            }
            (Kind::Intern, Some(f)) => {
                let mentor = m.team.map_or("", |t| self.members[self.by_team[t][0]].id.as_str());
                let _ = writeln!(y, "    attrs: {{function: {f}, mentor: {mentor}}}");
                y.push_str("    expires: \"2099-12-31T18:00:00+08:00\"\n");
            }
            (_, Some(f)) => {
                let _ = writeln!(y, "    attrs: {{function: {f}}}");
            }
            _ => {}
        }
        if m.kind == Kind::Disabled {
            y.push_str("    status: disabled\n");
        }
        y.push_str("    bindings:\n");
        let ip = format!("when: {{ip: {VENDOR_NETS}}}");
        let bindings: &[&str] = match m.kind {
            Kind::SuperAdmin => &["{role: super_admin, scope: tenant}"],
            Kind::SystemAdmin => &["{role: system_admin, scope: tenant}"],
            Kind::Observer => &["{role: observer, scope: tenant}"],
            Kind::CrmSync => &["{role: crm_sync, scope: tenant}"],
            Kind::TeamAdmin => {
                &["{role: desk_team_admin, scope: own_units}", "{role: cross_team_viewer, scope: tenant}"]
            }
            Kind::Agent => &["{role: agent, scope: {relation: assignee}}", "{role: queue_picker, scope: own_units}"],
            Kind::SupportReader => &[
                "{role: agent, scope: {relation: assignee}}",
                "{role: queue_picker, scope: own_units}",
                "{role: cross_team_viewer, scope: {unit: tech-support}}",
            ],
            Kind::Vendor => {
                let _ = writeln!(y, "      - {{role: agent, scope: {{relation: assignee}}, {ip}}}");
                let _ = writeln!(y, "      - {{role: queue_picker, scope: own_units, {ip}}}");
                &[]
            }
            Kind::Intern => &[
                "{role: intern, scope: {relation: assignee}}",
                "{role: queue_picker, scope: own_units, when: {context: {active_conversations: {lt: 3}}}}",
            ],
            Kind::Disabled => &["{role: agent, scope: {relation: assignee}}"],
        };
        for b in bindings {
            let _ = writeln!(y, "      - {b}");
        }
    }
}

/// The tenant's own schema and roles, as in `examples/meiqia-service-desk.yaml`.
const STATIC_PART: &str = "schema:
  quick_reply: [view, edit]

roles:
  desk_team_admin: {extends: [team_admin], allow: [quick_reply.edit]}
  intern: {extends: [agent], except: [customer.edit, conversation.transfer]}
  quick_reply_user: {allow: [quick_reply.view]}
  crm_sync: {allow: [customer.view, customer.edit, customer.merge]}

everyone:
  - {role: quick_reply_user, scope: tenant}
";

/// The rules of `examples/meiqia-service-desk.yaml`.
const RULES: &str = r#"
rules:
  - id: outsourced-no-export
    effect: deny
    actions: ["*.export"]
    when: {principal: {employment: outsourced}}
    alert: true
    message: Outsourced agents may not export data; the attempt has been reported to security.
  - id: support-cannot-see-finance
    effect: deny
    actions: ["conversation.*", "customer.*"]
    when: {in_unit: finance, principal: {function: support}}
  - id: settings-change-window
    effect: deny
    actions: [settings.edit, settings.manage_roles, settings.manage_permissions]
    when: {not: {schedule: {tz: Asia/Shanghai, days: [mon, tue, wed, thu, fri], from: "09:00", to: "20:00"}}}
  - id: outsourced-mask-contact
    effect: mask
    actions: [customer.view, conversation.view]
    fields: [phone, email]
    when: {principal: {employment: outsourced}}
  - id: intern-replies-reviewed
    effect: review
    actions: [conversation.reply]
    when: {principal: {mentor: {present: true}}}
"#;

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
