//! `rolegate diff OLD NEW` and `rolegate diff --source DSN NEW` (docs/operations.md, "Changing
//! policies safely"): what a policy change grants and takes away, as text, Markdown or JSON,
//! with `--fail-on` exit codes for CI.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};
use serde_json::{Value as Json, json};

use crate::engine::Snapshot;
use crate::policy::diff::{self, ActionDiff, Diff, Item, MemberDiff, TenantDiff};

/// Arguments of `rolegate diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// `OLD_DIR NEW_DIR`, or only `NEW_DIR` with `--source`.
    #[arg(num_args = 1..=2, required = true)]
    pub dirs: Vec<PathBuf>,
    /// Take the old policies from this PostgreSQL database instead of a directory.
    #[arg(long)]
    pub source: Option<String>,
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit 1 when some member gains access (`grant`), loses it (`revoke`) or either (`any`).
    #[arg(long, value_enum)]
    pub fail_on: Option<FailOn>,
}

/// How `rolegate diff` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Readable text grouped by tenant and member.
    Text,
    /// One JSON document, for tools.
    Json,
    /// Markdown, for a pull-request comment.
    Markdown,
}

/// Which change fails the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Some member gains access.
    #[value(alias = "gained")]
    Grant,
    /// Some member loses access.
    #[value(alias = "lost")]
    Revoke,
    /// Any change of access.
    Any,
}

/// Runs `rolegate diff`.
pub fn run(args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let (old, new) = match (args.dirs.as_slice(), &args.source) {
        ([old, new], None) => (load(old)?, load(new)?),
        ([new], Some(dsn)) => (load_source(dsn)?, load(new)?),
        ([_, _], Some(_)) => bail!("give either OLD_DIR NEW_DIR or --source DSN NEW_DIR"),
        _ => bail!("give OLD_DIR NEW_DIR, or --source DSN NEW_DIR"),
    };
    let d = diff::diff(&old, &new, args.tenant.as_deref());
    match args.format {
        Format::Text => print!("{}", text(&d)),
        Format::Markdown => print!("{}", markdown(&d)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&to_json(&d))?),
    }
    let failed = match args.fail_on {
        None => false,
        Some(FailOn::Grant) => d.gains(),
        Some(FailOn::Revoke) => d.loses(),
        Some(FailOn::Any) => d.gains() || d.loses(),
    };
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Loads a policy directory that must have no error: a diff of a broken policy would mislead.
pub fn load(dir: &Path) -> anyhow::Result<Snapshot> {
    let (snapshot, loaded) = crate::cli::load_snapshot(dir)?;
    let errors: Vec<String> = loaded.diagnostics().iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect();
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("{e}");
        }
        bail!("{} has {} errors; fix them before comparing", dir.display(), errors.len());
    }
    Ok(snapshot)
}

fn load_source(dsn: &str) -> anyhow::Result<Snapshot> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("rolegate-diff-{}-{nanos}", std::process::id()));
    let exported = crate::cli::runtime()?.block_on(crate::source::postgres::transfer::export(dsn, &dir));
    let loaded = exported.and_then(|_| load(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    loaded
}

fn verdict(gained: bool, lost: bool) -> &'static str {
    match (gained, lost) {
        (true, true) => "gains and loses",
        (true, false) => "gains",
        (false, true) => "loses",
        (false, false) => "changes",
    }
}

fn member_heading(m: &MemberDiff) -> String {
    match &m.status {
        Some((old, new)) => format!("member `{}`: {old} -> {new}", m.member),
        None => format!("member `{}`", m.member),
    }
}

fn action_lines(a: &ActionDiff, indent: &str, out: &mut String) {
    let _ = writeln!(out, "{indent}{} {}", a.action, verdict(a.gained, a.lost));
    for i in &a.removed {
        let _ = writeln!(out, "{indent}  - {i}");
    }
    for i in &a.added {
        let _ = writeln!(out, "{indent}  + {i}");
    }
    if a.reordered {
        let _ = writeln!(out, "{indent}  ~ same bindings and rules in another order: the deciding one may differ");
    }
}

fn summary(d: &Diff) -> String {
    if d.is_empty() {
        return "no change\n".to_owned();
    }
    let members: Vec<&MemberDiff> = d.tenants.iter().flat_map(|t| &t.members).collect();
    let count = |f: fn(&MemberDiff) -> bool| members.iter().filter(|m| f(m)).count();
    let gain = count(|m| m.status_gained || m.actions.iter().any(|a| a.gained));
    let lose = count(|m| m.status_lost || m.actions.iter().any(|a| a.lost));
    format!(
        "{} tenants changed, {} members affected: {gain} gain access, {lose} lose access\n",
        d.tenants.len(),
        members.len()
    )
}

/// The readable text form: tenants, their document changes, then each member's actions.
pub fn text(d: &Diff) -> String {
    let mut out = String::new();
    for t in &d.tenants {
        let _ = writeln!(out, "tenant `{}`", t.tenant);
        for n in &t.notes {
            let _ = writeln!(out, "  {n}");
        }
        for m in &t.members {
            let _ = writeln!(out, "  {}", member_heading(m));
            for a in &m.actions {
                action_lines(a, "    ", &mut out);
            }
        }
    }
    out.push_str(&summary(d));
    out
}

/// The Markdown form, for a pull-request comment.
pub fn markdown(d: &Diff) -> String {
    let mut out = String::from("## Policy change\n\n");
    for t in &d.tenants {
        let _ = writeln!(out, "### Tenant `{}`\n", t.tenant);
        for n in &t.notes {
            let _ = writeln!(out, "- {n}");
        }
        if !t.notes.is_empty() {
            out.push('\n');
        }
        for m in &t.members {
            let _ = writeln!(out, "#### {}\n", member_heading(m));
            out.push_str("```diff\n");
            for a in &m.actions {
                action_lines(a, "", &mut out);
            }
            out.push_str("```\n\n");
        }
    }
    out.push_str(&summary(d));
    out
}

fn item_json(i: &Item) -> Json {
    let mut j = match i {
        Item::Deny(d) => json!({"kind": "deny", "rule": d.id, "alert": d.alert}),
        Item::Grant(g) => json!({
            "kind": if g.allows { "grant" } else { "requestable" },
            "binding": g.id, "role": g.role, "everyone": g.everyone,
            "scope": g.reach.to_string(),
            "from": g.from.map(|t| t.to_string()), "until": g.until.map(|t| t.to_string()),
        }),
        Item::Obligation(o) => json!({
            "kind": if o.effect == crate::engine::Effect::Review { "review" } else { "mask" },
            "rule": o.id, "fields": o.fields, "alert": o.alert,
        }),
    };
    let when = match i {
        Item::Deny(d) => &d.when,
        Item::Grant(g) => &g.when,
        Item::Obligation(o) => &o.when,
    };
    j["when"] = when.as_ref().map(ToString::to_string).into();
    j["text"] = i.to_string().into();
    j
}

fn tenant_json(t: &TenantDiff) -> Json {
    let members: Vec<Json> = t
        .members
        .iter()
        .map(|m| {
            let actions: Vec<Json> = m
                .actions
                .iter()
                .map(|a| {
                    json!({
                        "action": a.action, "gained": a.gained, "lost": a.lost, "reordered": a.reordered,
                        "removed": a.removed.iter().map(item_json).collect::<Vec<_>>(),
                        "added": a.added.iter().map(item_json).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "member": m.member,
                "status": m.status.as_ref().map(|(o, n)| json!({"old": o.to_string(), "new": n.to_string()})),
                "gained": m.status_gained || m.actions.iter().any(|a| a.gained),
                "lost": m.status_lost || m.actions.iter().any(|a| a.lost),
                "actions": actions,
            })
        })
        .collect();
    json!({"tenant": t.tenant, "notes": t.notes, "members": members})
}

/// The JSON form, for tools.
pub fn to_json(d: &Diff) -> Json {
    json!({
        "gains": d.gains(),
        "losses": d.loses(),
        "tenants": d.tenants.iter().map(tenant_json).collect::<Vec<_>>(),
    })
}

/// `rolegate validate DIR --base OLD_DIR`: what the change from `base` does, tenant by tenant,
/// naming each template whose change widens access and the tenants it reaches.
pub fn impact(base: &Path, dir: &Path) -> anyhow::Result<()> {
    let (old, new) = (load(base)?, load(dir)?);
    let d = diff::diff(&old, &new, None);
    let (_, loaded) = crate::cli::load_snapshot(dir)?;
    let templates = |root: &Path| -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let listing = crate::source::files::scan(root)?;
        Ok(listing
            .documents
            .iter()
            .filter_map(|f| Some((f.template.clone()?, std::fs::read(&f.path).unwrap_or_default())))
            .collect())
    };
    let (old_tpl, new_tpl) = (templates(base)?, templates(dir)?);
    let changed = |name: &str| {
        let find = |all: &[(String, Vec<u8>)]| all.iter().find(|(n, _)| n == name).map(|(_, b)| b.clone());
        find(&old_tpl) != find(&new_tpl)
    };
    let mut widened: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    println!("impact against {}:", base.display());
    if d.is_empty() {
        println!("  no change of access");
    }
    for t in &d.tenants {
        let template = loaded.tenants.iter().find(|o| o.name == t.tenant).and_then(|o| o.template.clone());
        let gain = t.members.iter().filter(|m| m.status_gained || m.actions.iter().any(|a| a.gained)).count();
        let lose = t.members.iter().filter(|m| m.status_lost || m.actions.iter().any(|a| a.lost)).count();
        let via = match &template {
            Some(name) if changed(name) => {
                if gain > 0 {
                    widened.entry(name.clone()).or_default().push(t.tenant.clone());
                }
                format!(" (template `{name}` changed)")
            }
            _ => String::new(),
        };
        println!("  tenant `{}`{via}: {gain} members gain access, {lose} lose access", t.tenant);
    }
    for (name, tenants) in &widened {
        println!("warning: template `{name}` widens access in tenants {}", tenants.join(", "));
    }
    Ok(())
}
