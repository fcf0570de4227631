//! `rolegate plan` (docs/api.md, "Command line"): the filter of a Plan, from a policy directory or
//! a running server, as JSON, a readable tree, or a PostgreSQL `WHERE` fragment.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use jiff::Timestamp;

use crate::api;
use crate::engine::plan::sql::{self, Mapping, Param};
use crate::engine::{Context, Field, FieldOp, Filter, Plan, Value};

/// Output formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// JSON (the default).
    #[default]
    Json,
    /// A readable tree.
    Table,
}

/// Arguments of `rolegate plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Plan locally on this policy directory.
    #[arg(long, required_unless_present = "server", conflicts_with = "server")]
    pub policies: Option<PathBuf>,
    /// Ask a running server: `host:port` or `unix:PATH`.
    #[arg(long)]
    pub server: Option<String>,
    /// Tenant id.
    #[arg(long)]
    pub tenant: String,
    /// Member id.
    #[arg(long)]
    pub principal: String,
    /// Action, `kind.verb`: the kind of the resources planned for.
    #[arg(long)]
    pub action: String,
    /// A context attribute `name=value`. Repeatable.
    #[arg(long = "ctx", visible_alias = "context")]
    pub ctx: Vec<String>,
    /// The end user's IP address.
    #[arg(long)]
    pub ip: Option<String>,
    /// Plan at this instant (RFC 3339) instead of now; with `--policies` only.
    #[arg(long)]
    pub now: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Also render the filter as a PostgreSQL `WHERE` fragment with this column mapping:
    /// `FIELD=COLUMN[:TYPE],...`, e.g. `id=id,unit=unit,attrs.tags=tags:text[]`.
    #[arg(long)]
    pub sql: Option<String>,
    /// With `--server`: connect over TLS, trusting this certificate authority (PEM).
    #[arg(long, requires = "server")]
    pub tls_ca: Option<PathBuf>,
    /// With `--tls-ca`: the client certificate (PEM) for a server requiring one.
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The key of `--tls-cert` (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl PlanArgs {
    fn context(&self) -> anyhow::Result<Context> {
        let client_ip = match &self.ip {
            Some(ip) => Some(ip.parse().with_context(|| format!("--ip: invalid IP address `{ip}`"))?),
            None => None,
        };
        Ok(Context { client_ip, attrs: super::attrs(&self.ctx, "--ctx")? })
    }
}

/// Runs `rolegate plan`.
pub fn run(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let mapping = args.sql.as_deref().map(Mapping::parse).transpose().context("--sql")?;
    let planned = match &args.server {
        Some(addr) => super::runtime()?.block_on(from_server(args, addr))?,
        None => local(args)?,
    };
    let (plan, revision) = match planned {
        Ok(p) => p,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let rendered = mapping.map(|m| sql::render(&plan.filter, &m, 1)).transpose()?;
    match args.format {
        Format::Json => {
            let mut json = serde_json::json!({
                "reason": plan.reason.as_str(),
                "valid_until": plan.valid_until.map(|t| t.to_string()),
                "revision": revision,
                "filter": filter_json(&plan.filter),
            });
            if let Some(s) = &rendered {
                json["sql"] = serde_json::json!({ "where": s.clause, "params": s.params.iter().map(param_json).collect::<Vec<_>>() });
            }
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        Format::Table => {
            println!("reason       {}", plan.reason);
            println!("valid_until  {}", plan.valid_until.map_or_else(|| "-".to_owned(), |t| t.to_string()));
            println!("revision     {revision}");
            println!("filter");
            let mut out = String::new();
            tree(&plan.filter, 1, &mut out);
            print!("{out}");
            if let Some(s) = &rendered {
                println!("sql          WHERE {}", s.clause);
                for (i, p) in s.params.iter().enumerate() {
                    println!("  ${}         {}", i + 1, param_json(p));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

type Planned = Result<(Plan, u64), String>;

fn local(args: &PlanArgs) -> anyhow::Result<Planned> {
    let Some(dir) = &args.policies else { bail!("give --policies DIR or --server ADDR") };
    let now = match &args.now {
        Some(s) => s.parse().with_context(|| format!("--now: invalid RFC 3339 instant `{s}`"))?,
        None => Timestamp::now(),
    };
    let context = args.context()?;
    let (snapshot, loaded) = super::load_snapshot(dir)?;
    for d in loaded.diagnostics().iter().filter(|d| d.is_error()) {
        eprintln!("{d}");
    }
    let revision = snapshot.tenant(&args.tenant).map_or(0, |t| t.revision);
    Ok(crate::engine::plan(&snapshot, &args.tenant, &args.principal, &args.action, &context, now)
        .map(|p| (p, revision))
        .map_err(|e| e.to_string()))
}

async fn from_server(args: &PlanArgs, addr: &str) -> anyhow::Result<Planned> {
    if args.now.is_some() {
        bail!("--now applies only with --policies: a server plans at its own clock");
    }
    let context = args.context()?;
    let tls = args.tls_ca.clone().map(|ca| rolegate_api::client::ClientTls {
        ca,
        identity: args.tls_cert.clone().zip(args.tls_key.clone()),
        server_name: None,
    });
    let channel = rolegate_api::client::connect_with(addr, tls.as_ref()).await?;
    let mut client = api::authorizer_client::AuthorizerClient::new(channel);
    let wire_context = super::to_api(&crate::engine::Request { context, ..Default::default() }).context;
    let req = api::PlanRequest {
        tenant: args.tenant.clone(),
        principal: args.principal.clone(),
        action: args.action.clone(),
        context: wire_context,
        min_revision: 0,
    };
    match client.plan(req).await {
        Ok(resp) => rolegate_api::plan::response_from_wire(resp.into_inner())
            .map(Ok)
            .map_err(|e| anyhow::anyhow!("the server answered {}: {}", e.field, e.message)),
        Err(status) => Ok(Err(format!("{}: {}", status.code(), status.message()))),
    }
}

fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Text(t) => t.as_str().into(),
        Value::Int(i) => (*i).into(),
        Value::Flag(b) => (*b).into(),
        Value::Number(n) => (*n).into(),
        Value::List(l) => l.clone().into(),
    }
}

fn param_json(p: &Param) -> serde_json::Value {
    match p {
        Param::Text(t) => t.as_str().into(),
        Param::Number(n) => (*n).into(),
        Param::Bool(b) => (*b).into(),
        Param::TextList(l) => l.clone().into(),
    }
}

/// A filter as JSON: `{"constant": b}`, `{"all": [...]}`, `{"any": [...]}`, `{"not": f}`, or a
/// test `{"field": "unit", "one_of": [...]}`.
pub fn filter_json(f: &Filter) -> serde_json::Value {
    use serde_json::json;
    match f {
        Filter::Constant(b) => json!({ "constant": b }),
        Filter::All(items) => json!({ "all": items.iter().map(filter_json).collect::<Vec<_>>() }),
        Filter::Any(items) => json!({ "any": items.iter().map(filter_json).collect::<Vec<_>>() }),
        Filter::Not(inner) => json!({ "not": filter_json(inner) }),
        Filter::Test(t) => {
            let (op, arg) = op_parts(&t.op);
            json!({ "field": t.field.to_string(), op: arg })
        }
    }
}

fn op_parts(op: &FieldOp) -> (&'static str, serde_json::Value) {
    match op {
        FieldOp::Equals(v) => ("equals", value_json(v)),
        FieldOp::OneOf(values) => ("one_of", values.clone().into()),
        FieldOp::Lt(x) => ("lt", (*x).into()),
        FieldOp::Le(x) => ("le", (*x).into()),
        FieldOp::Gt(x) => ("gt", (*x).into()),
        FieldOp::Ge(x) => ("ge", (*x).into()),
        FieldOp::Contains(s) => ("contains", s.as_str().into()),
        FieldOp::Present(p) => ("present", (*p).into()),
        FieldOp::SameAs(other) => ("same_as", Field::to_string(other).into()),
    }
}

fn tree(f: &Filter, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    let _ = match f {
        Filter::Constant(b) => writeln!(out, "{pad}{b}"),
        Filter::All(items) | Filter::Any(items) => {
            let _ = writeln!(out, "{pad}{}", if matches!(f, Filter::All(_)) { "all of" } else { "any of" });
            items.iter().for_each(|i| tree(i, depth + 1, out));
            Ok(())
        }
        Filter::Not(inner) => {
            let _ = writeln!(out, "{pad}not");
            tree(inner, depth + 1, out);
            Ok(())
        }
        Filter::Test(t) => {
            let (op, arg) = op_parts(&t.op);
            writeln!(out, "{pad}{} {op} {arg}", t.field)
        }
    };
}
