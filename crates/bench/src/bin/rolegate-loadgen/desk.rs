//! The benchmark tenant: a large copy of `examples/meiqia-service-desk.yaml` on the same template,
//! with the same kinds of members (admins, team admins, agents, outsourced vendor seats, interns,
//! observers, a service account, disabled accounts) spread over many teams, and the calls drawn
//! from it, encoded for rolegate and described for Cerbos.
//!
//! Everything is derived from `(members, seed)`, so the policy files, the rolegate requests and the
//! Cerbos requests agree without being passed between processes. The tenant is built here; the
//! calls drawn from it are in `desk/calls.rs`.

// Loaded by `#[path]`, this file looks for modules beside itself, not in `desk/`.
#[path = "desk/calls.rs"]
mod calls;

use std::fmt::Write as _;
use std::path::Path;

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
    /// comment, the description and the description of one member (the first member but one),
    /// so that a rewrite is what an edit is: the whole file written again with one member
    /// changed, and the same decisions.
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
        for (i, m) in self.members.iter().enumerate() {
            self.member_yaml(&mut y, m);
            if i == 1 {
                let _ = writeln!(y, "    description: edited in variant {variant}");
            }
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
