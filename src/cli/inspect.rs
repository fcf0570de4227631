//! `rolegate explain`, `permissions` and `who` (docs/api.md, "Command line"): the Inspector's
//! questions, asked of a policy directory or a running server, printed as JSON, a table or CSV.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use jiff::Timestamp;

use super::{CheckArgs, decision_json, load_snapshot, runtime, to_api};
use crate::api;
use crate::engine::{Context, Decision, Grant, GrantScope, Page, Permissions, Reason, Request, Resource, Step};
use rolegate_api::convert;

/// Output formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// JSON (the default).
    #[default]
    Json,
    /// A readable table.
    Table,
    /// Comma-separated values with a header row, for spreadsheets and access reviews.
    Csv,
}

/// Arguments of `rolegate explain`: those of `check`, and a format.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    check: CheckArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Arguments of `rolegate permissions`.
#[derive(Debug, Args)]
pub struct PermissionsArgs {
    /// Answer locally on this policy directory.
    #[arg(long, required_unless_present = "server", conflicts_with = "server")]
    policies: Option<PathBuf>,
    /// Ask a running server: `host:port` or `unix:PATH`.
    #[arg(long)]
    server: Option<String>,
    /// Tenant id.
    #[arg(long)]
    tenant: String,
    /// Member id; with `--policies`, leave it out for every member (the access-review export).
    #[arg(long)]
    principal: Option<String>,
    /// Only the actions of this resource kind.
    #[arg(long, default_value = "")]
    kind: String,
    /// Answer at this instant (RFC 3339) instead of now; with `--policies` only.
    #[arg(long)]
    now: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Arguments of `rolegate who`.
#[derive(Debug, Args)]
pub struct WhoArgs {
    /// Answer locally on this policy directory.
    #[arg(long, required_unless_present = "server", conflicts_with = "server")]
    policies: Option<PathBuf>,
    /// Ask a running server: `host:port` or `unix:PATH`.
    #[arg(long)]
    server: Option<String>,
    /// Tenant id.
    #[arg(long)]
    tenant: String,
    /// Action, `kind.verb`.
    #[arg(long)]
    action: String,
    /// The resource as `KIND:ID`.
    #[arg(long)]
    resource: String,
    /// The resource's unit.
    #[arg(long, default_value = "")]
    unit: String,
    /// A resource attribute `name=value`; `name=[a,b]` is a list. Repeatable.
    #[arg(long = "attr")]
    attrs: Vec<String>,
    /// A context attribute `name=value`. Repeatable.
    #[arg(long = "ctx")]
    ctx: Vec<String>,
    /// The end user's IP address.
    #[arg(long)]
    ip: Option<String>,
    /// Answer at this instant (RFC 3339) instead of now; with `--policies` only.
    #[arg(long)]
    now: Option<String>,
    /// Members asked for per call; every page is fetched.
    #[arg(long, default_value_t = 1000)]
    page_size: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

fn instant(now: Option<&str>, server: bool) -> anyhow::Result<Timestamp> {
    match now {
        Some(_) if server => bail!("--now applies only with --policies: a server answers at its own clock"),
        Some(s) => s.parse().with_context(|| format!("--now: invalid RFC 3339 instant `{s}`")),
        None => Ok(Timestamp::now()),
    }
}

/// A field of a CSV row, quoted when it must be.
fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

fn csv_row(fields: &[&str]) -> String {
    fields.iter().map(|f| csv(f)).collect::<Vec<_>>().join(",")
}

/// Runs `rolegate explain`.
pub fn explain(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let c = &args.check;
    let request = c.request()?;
    let answer = match &c.server {
        Some(addr) => runtime()?.block_on(explain_server(c, addr, &request))?,
        None => {
            let now = instant(c.now.as_deref(), false)?;
            let Some(dir) = &c.policies else { bail!("give --policies DIR or --server ADDR") };
            let (snapshot, _) = load_snapshot(dir)?;
            let revision = snapshot.tenant(&request.tenant).map_or(0, |t| t.revision);
            crate::engine::explain(&snapshot, &request.query(), now)
                .map(|(d, s)| (d, s, revision))
                .map_err(|e| e.to_string())
        }
    };
    let (d, steps, revision) = match answer {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    print!("{}", render_explain(&d, &steps, revision, args.format)?);
    Ok(ExitCode::SUCCESS)
}

type Explained = Result<(Decision, Vec<Step>, u64), String>;

async fn explain_server(c: &CheckArgs, addr: &str, request: &Request) -> anyhow::Result<Explained> {
    instant(c.now.as_deref(), true)?;
    let tls = c.tls_ca.clone().map(|ca| rolegate_api::client::ClientTls {
        ca,
        identity: c.tls_cert.clone().zip(c.tls_key.clone()),
        server_name: c.tls_server_name.clone(),
    });
    let channel = rolegate_api::client::connect_with(addr, tls.as_ref()).await?;
    let mut client = api::inspector_client::InspectorClient::new(channel);
    match client.explain(to_api(request)).await {
        Ok(resp) => {
            let api::ExplainResponse { decision, revision, steps } = resp.into_inner();
            let wire = |e: convert::Invalid| anyhow::anyhow!("the server answered {}: {}", e.field, e.message);
            let d = convert::decision_from_wire(decision.unwrap_or_default()).map_err(wire)?;
            let steps = steps.into_iter().map(convert::step_from_wire).collect::<Result<Vec<_>, _>>().map_err(wire)?;
            Ok(Ok((d, steps, revision)))
        }
        Err(status) => Ok(Err(format!("{}: {}", status.code(), status.message()))),
    }
}

fn render_explain(d: &Decision, steps: &[Step], revision: u64, format: Format) -> anyhow::Result<String> {
    let mut out = String::new();
    match format {
        Format::Json => {
            let mut json = decision_json(d);
            json["revision"] = revision.into();
            json["steps"] = steps
                .iter()
                .map(|s| serde_json::json!({"kind": s.kind.as_str(), "id": &*s.id, "applies": s.applies, "why": s.why}))
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
        }
        Format::Table => {
            let verdict = if d.allowed { "allow" } else { "deny" };
            writeln!(out, "{verdict} {} {}  (revision {revision})", d.reason, d.rule.as_deref().unwrap_or(""))?;
            for s in steps {
                let mark = if s.applies { "yes" } else { "no" };
                writeln!(out, "  {:<9} {:<28} {:<3}  {}", s.kind.as_str(), s.id, mark, s.why)?;
            }
        }
        Format::Csv => {
            writeln!(out, "kind,id,applies,why")?;
            for s in steps {
                writeln!(
                    out,
                    "{}",
                    csv_row(&[s.kind.as_str(), &s.id, if s.applies { "true" } else { "false" }, &s.why])
                )?;
            }
        }
    }
    Ok(out)
}

/// Runs `rolegate permissions`.
pub fn permissions(args: &PermissionsArgs) -> anyhow::Result<ExitCode> {
    let now = instant(args.now.as_deref(), args.server.is_some())?;
    let answers: Vec<(String, Permissions, u64)> = match (&args.server, &args.principal) {
        (Some(addr), Some(principal)) => {
            let addr = addr.clone();
            match runtime()?.block_on(permissions_server(&addr, &args.tenant, principal, &args.kind))? {
                Ok((p, revision)) => vec![(principal.clone(), p, revision)],
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
        (Some(_), None) => bail!("give --principal: a server lists one member's permissions at a time"),
        (None, principal) => {
            let Some(dir) = &args.policies else { bail!("give --policies DIR or --server ADDR") };
            let (snapshot, _) = load_snapshot(dir)?;
            let Some(tenant) = snapshot.tenant(&args.tenant) else { bail!("unknown tenant `{}`", args.tenant) };
            let ids: Vec<String> = match principal {
                Some(p) => vec![p.clone()],
                None => tenant.roster.iter().map(|m| m.id.to_string()).collect(),
            };
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                match tenant.permissions(&id, &args.kind, now) {
                    Ok(p) => out.push((id, p, tenant.revision)),
                    Err(e) => {
                        eprintln!("error: kind: {e}");
                        return Ok(ExitCode::from(2));
                    }
                }
            }
            out
        }
    };
    print!("{}", render_permissions(&answers, args.format)?);
    Ok(ExitCode::SUCCESS)
}

async fn permissions_server(
    addr: &str,
    tenant: &str,
    principal: &str,
    kind: &str,
) -> anyhow::Result<Result<(Permissions, u64), String>> {
    let mut client = api::inspector_client::InspectorClient::new(super::connect(addr).await?);
    let req = api::PermissionsRequest {
        tenant: tenant.into(),
        principal: principal.into(),
        kind: kind.into(),
        context: None,
        min_revision: 0,
    };
    match client.permissions(req).await {
        Ok(resp) => {
            let api::PermissionsResponse { grants, revision, reason } = resp.into_inner();
            let wire = |e: convert::Invalid| anyhow::anyhow!("the server answered {}: {}", e.field, e.message);
            let grants =
                grants.into_iter().map(convert::grant_from_wire).collect::<Result<Vec<_>, _>>().map_err(wire)?;
            Ok(Ok((Permissions { reason: convert::reason_from_wire(reason), grants }, revision)))
        }
        Err(status) => Ok(Err(format!("{}: {}", status.code(), status.message()))),
    }
}

fn scope_text(s: &GrantScope) -> String {
    match s {
        GrantScope::Tenant => "tenant".to_owned(),
        GrantScope::Units(units) => format!("units {}", units.join(" ")),
        GrantScope::Relation(attr) => format!("relation {attr}"),
    }
}

fn window_text(g: &Grant) -> String {
    match (g.from, g.until) {
        (None, None) => String::new(),
        (f, u) => format!(
            "{}..{}",
            f.map(|t| t.to_string()).unwrap_or_default(),
            u.map(|t| t.to_string()).unwrap_or_default()
        ),
    }
}

fn grant_json(g: &Grant) -> serde_json::Value {
    let scope = match &g.scope {
        GrantScope::Tenant => serde_json::json!({"tenant": true}),
        GrantScope::Units(units) => serde_json::json!({"units": units.iter().map(|u| &**u).collect::<Vec<_>>()}),
        GrantScope::Relation(attr) => serde_json::json!({"relation": &**attr}),
    };
    serde_json::json!({
        "action": &*g.action,
        "scope": scope,
        "conditional": g.conditional,
        "binding": &*g.binding,
        "role": &*g.role,
        "from": g.from.map(|t| t.to_string()),
        "until": g.until.map(|t| t.to_string()),
        "requestable": g.requestable,
        "deny_rules": g.deny_rules.iter().map(|r| &**r).collect::<Vec<_>>(),
    })
}

fn render_permissions(answers: &[(String, Permissions, u64)], format: Format) -> anyhow::Result<String> {
    let mut out = String::new();
    let reason = |p: &Permissions| p.reason.map(Reason::as_str);
    match format {
        Format::Json => {
            let one = |(member, p, revision): &(String, Permissions, u64)| {
                serde_json::json!({
                    "principal": member,
                    "reason": reason(p),
                    "revision": revision,
                    "grants": p.grants.iter().map(grant_json).collect::<Vec<_>>(),
                })
            };
            let json = match answers {
                [single] => one(single),
                many => many.iter().map(one).collect(),
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
        }
        Format::Table => {
            for (member, p, revision) in answers {
                writeln!(
                    out,
                    "{member} (revision {revision}){}",
                    reason(p).map(|r| format!(": {r}")).unwrap_or_default()
                )?;
                for g in &p.grants {
                    let mut flags = Vec::new();
                    if g.requestable {
                        flags.push("requestable".to_owned());
                    }
                    if g.conditional {
                        flags.push("conditional".to_owned());
                    }
                    flags.extend(g.deny_rules.iter().map(|r| format!("deny:{r}")));
                    let window = window_text(g);
                    writeln!(
                        out,
                        "  {:<28} {:<36} {:<24} {:<18} {window} {}",
                        g.action,
                        scope_text(&g.scope),
                        g.binding,
                        g.role,
                        flags.join(" ")
                    )?;
                }
            }
        }
        Format::Csv => {
            writeln!(out, "member,action,scope,binding,role,from,until,conditional,requestable,deny_rules")?;
            for (member, p, _) in answers {
                for g in &p.grants {
                    let from = g.from.map(|t| t.to_string()).unwrap_or_default();
                    let until = g.until.map(|t| t.to_string()).unwrap_or_default();
                    let deny: Vec<&str> = g.deny_rules.iter().map(|r| &**r).collect();
                    let row = csv_row(&[
                        member,
                        &g.action,
                        &scope_text(&g.scope),
                        &g.binding,
                        &g.role,
                        &from,
                        &until,
                        if g.conditional { "true" } else { "false" },
                        if g.requestable { "true" } else { "false" },
                        &deny.join(" "),
                    ]);
                    writeln!(out, "{row}")?;
                }
            }
        }
    }
    Ok(out)
}

impl WhoArgs {
    fn resource(&self) -> anyhow::Result<Resource> {
        let Some((kind, id)) = self.resource.split_once(':') else {
            bail!("--resource must be `KIND:ID`, got `{}`", self.resource);
        };
        Ok(Resource {
            kind: kind.into(),
            id: id.into(),
            unit: self.unit.clone(),
            attrs: super::attrs(&self.attrs, "--attr")?,
        })
    }

    fn context(&self) -> anyhow::Result<Context> {
        let client_ip = match &self.ip {
            Some(ip) => Some(ip.parse().with_context(|| format!("--ip: invalid IP address `{ip}`"))?),
            None => None,
        };
        Ok(Context { client_ip, attrs: super::attrs(&self.ctx, "--ctx")? })
    }
}

/// Runs `rolegate who`: every page, concatenated.
pub fn who(args: &WhoArgs) -> anyhow::Result<ExitCode> {
    let now = instant(args.now.as_deref(), args.server.is_some())?;
    let resource = args.resource()?;
    let context = args.context()?;
    let found = match &args.server {
        Some(addr) => runtime()?.block_on(who_server(args, addr, resource, context))?,
        None => {
            let Some(dir) = &args.policies else { bail!("give --policies DIR or --server ADDR") };
            let (snapshot, _) = load_snapshot(dir)?;
            match snapshot.tenant(&args.tenant) {
                None => Ok((Vec::new(), 0)),
                Some(t) => {
                    let size = usize::try_from(args.page_size.max(1)).unwrap_or(usize::MAX);
                    let mut all = Vec::new();
                    let mut token = String::new();
                    loop {
                        match t.who(&args.action, &resource, &context, now, Page { token: &token, size }) {
                            Ok(page) => {
                                all.extend(page.principals.iter().map(|p| p.to_string()));
                                match page.next_page_token {
                                    Some(next) => token = next,
                                    None => break Ok((all, t.revision)),
                                }
                            }
                            Err(e) => break Err(format!("action: {e}")),
                        }
                    }
                }
            }
        }
    };
    let (members, revision) = match found {
        Ok(found) => found,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut out = String::new();
    match args.format {
        Format::Json => {
            let json = serde_json::json!({"principals": members, "revision": revision});
            writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
        }
        Format::Table => {
            for m in &members {
                writeln!(out, "{m}")?;
            }
            writeln!(out, "({} members may {} {}; revision {revision})", members.len(), args.action, args.resource)?;
        }
        Format::Csv => {
            writeln!(out, "member,action,resource")?;
            for m in &members {
                writeln!(out, "{}", csv_row(&[m, &args.action, &args.resource]))?;
            }
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

async fn who_server(
    args: &WhoArgs,
    addr: &str,
    resource: Resource,
    context: Context,
) -> anyhow::Result<Result<(Vec<String>, u64), String>> {
    let mut client = api::inspector_client::InspectorClient::new(super::connect(addr).await?);
    let wire = to_api(&Request { resource, context, ..Default::default() });
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let req = api::WhoRequest {
            tenant: args.tenant.clone(),
            action: args.action.clone(),
            resource: wire.resource.clone(),
            context: wire.context.clone(),
            page_size: args.page_size,
            page_token: token.clone(),
            min_revision: 0,
        };
        match client.who(req).await {
            Ok(resp) => {
                let api::WhoResponse { principals, next_page_token, revision } = resp.into_inner();
                all.extend(principals);
                if next_page_token.is_empty() {
                    return Ok(Ok((all, revision)));
                }
                token = next_page_token;
            }
            Err(status) => return Ok(Err(format!("{}: {}", status.code(), status.message()))),
        }
    }
}
