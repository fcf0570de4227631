//! `rolegate history --source DSN [--tenant T] [--member M] [--since …]` (docs/operations.md,
//! "Trace with history"): who changed whose access, when, and at which revision.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value as Json, json};

use crate::source::postgres::history::{self, Change, Filter};
use crate::source::postgres::schema::Schema;

/// Arguments of `rolegate history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The database, `postgres://user@host:5432/db`.
    #[arg(long, env = "ROLEGATE_SOURCE")]
    pub source: String,
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this member's own row and bindings.
    #[arg(long)]
    pub member: Option<String>,
    /// Only changes since an RFC 3339 instant, or within a duration back from now (`7d`, `12h`, `30m`).
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many changes, the newest.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// The schema to read (a candidate policy's, made by `migrate --schema`).
    #[arg(long, default_value = "rolegate", value_parser = Schema::parse)]
    pub schema: Schema,
}

/// Runs `rolegate history`.
pub fn run(args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let filter = Filter {
        tenant: args.tenant.clone(),
        member: args.member.clone(),
        since: args.since.as_deref().map(since).transpose()?,
        limit: i64::from(args.limit),
        schema: args.schema.clone(),
    };
    let changes = crate::cli::runtime()?.block_on(history::read(&args.source, &filter))?;
    for c in &changes {
        if args.json {
            println!("{}", serde_json::to_string(&to_json(c))?);
        } else {
            println!("{}  rev {}  {}  {}  {}", c.at, c.revision, c.actor, c.tenant, summary(c));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn since(s: &str) -> anyhow::Result<jiff::Timestamp> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 =
        n.parse().with_context(|| format!("--since: `{s}` is neither an RFC 3339 instant nor `7d`, `12h`, `30m`"))?;
    let secs = match unit {
        "d" => n * 86_400,
        "h" => n * 3600,
        "m" => n * 60,
        _ => bail!("--since: `{s}` is neither an RFC 3339 instant nor `7d`, `12h`, `30m`"),
    };
    Ok(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs))
}

fn to_json(c: &Change) -> Json {
    json!({
        "at": c.at.to_string(), "revision": c.revision, "actor": c.actor, "tenant": c.tenant,
        "kind": c.kind, "key": c.key, "op": c.op, "before": c.before, "after": c.after,
        "summary": summary(c),
    })
}

/// The fields of a row worth naming, as `name value`.
fn fields(row: &Json, names: &[&str]) -> String {
    let shown: Vec<String> = names
        .iter()
        .filter_map(|n| row.get(*n).filter(|v| !v.is_null()).map(|v| format!("{n} {}", plain(v))))
        .collect();
    shown.join(", ")
}

fn plain(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What changed between two versions of a row, over `names`: `status active -> disabled`.
fn changed(before: &Json, after: &Json, names: &[&str]) -> String {
    let diffs: Vec<String> = names
        .iter()
        .filter(|n| before.get(**n) != after.get(**n))
        .map(|n| {
            let show = |r: &Json| r.get(*n).filter(|v| !v.is_null()).map_or("none".to_owned(), plain);
            format!("{n} {} -> {}", show(before), show(after))
        })
        .collect();
    if diffs.is_empty() { "no field a decision reads".to_owned() } else { diffs.join("; ") }
}

/// One line describing the change in the policy's own names.
pub fn summary(c: &Change) -> String {
    let (what, names): (String, &[&str]) = match c.kind.as_str() {
        "member" => (format!("member `{}`", c.key), &["status", "expires", "units", "attrs"]),
        "binding" => {
            let id = c.after.as_ref().or(c.before.as_ref()).and_then(|r| r.get("id")).filter(|v| !v.is_null());
            let named = id.map(|i| format!(" `{}`", plain(i))).unwrap_or_default();
            (format!("binding{named} of `{}`", c.key), &["role", "scope", "from", "until", "when"])
        }
        "unit" => (format!("unit `{}`", c.key), &["parent"]),
        "template" => (format!("template `{}`", c.key), &[]),
        _ => ("tenant document".to_owned(), &[]),
    };
    match (c.op.as_str(), &c.before, &c.after) {
        ("insert", _, Some(after)) if !names.is_empty() => format!("{what} added: {}", fields(after, names)),
        ("delete", Some(before), _) if !names.is_empty() => format!("{what} removed: {}", fields(before, names)),
        ("update", Some(before), Some(after)) if !names.is_empty() => {
            format!("{what}: {}", changed(before, after, names))
        }
        ("insert", ..) => format!("{what} added"),
        ("delete", ..) => format!("{what} removed"),
        _ => format!("{what} changed"),
    }
}
