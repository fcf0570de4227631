//! The command line (docs/api.md, "Command line"): `validate`, `test`, `check`, `plan`, `console` and `serve`; `migrate`, `import` and
//! `export` for the PostgreSQL source.

mod diff;
mod history;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use jiff::Timestamp;

use crate::api;
use crate::engine::{Attrs, Context, Request, Resource, decide};
use crate::policy::parse::scalar_value;
use crate::source::files;
use crate::source::postgres::schema::Schema;
use crate::source::postgres::transfer as pg;
use crate::suite;

mod inspect;
mod plan;
mod publish;

/// rolegate: authorization decisions for customer-messaging and CRM backends.
#[derive(Debug, Parser)]
#[command(name = "rolegate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a policy directory: every error and warning; exit 1 on errors.
    Validate {
        /// The policy directory.
        dir: PathBuf,
        /// Also report what the change from this policy directory does to access (for a pull
        /// request: the base branch's policies).
        #[arg(long)]
        base: Option<PathBuf>,
    },
    /// Run the policy tests (`*_test.yaml`) under a directory.
    Test {
        /// The policy directory.
        dir: PathBuf,
    },
    /// Decide one request and print the decision as JSON.
    Check(Box<CheckArgs>),
    /// Which resources of a kind a member may act on: the Plan filter, optionally as SQL.
    Plan(Box<plan::PlanArgs>),
    /// Why a request is allowed or denied: the decision with the steps that made it.
    Explain(Box<inspect::ExplainArgs>),
    /// What a member may do: every grant with its scope, binding, role and window.
    Permissions(Box<inspect::PermissionsArgs>),
    /// Who may do an action on a resource: every member Check allows, in document order.
    Who(Box<inspect::WhoArgs>),
    /// Show what a policy change grants and takes away, member by member.
    Diff(Box<diff::DiffArgs>),
    /// List who changed what in PostgreSQL: members, bindings, units, tenants, templates.
    History(Box<history::HistoryArgs>),
    /// Browse tenants, members and their access in a read-only local web app.
    Console(Box<rolegate_console::Args>),
    /// Serve `rolegate.v1.Authorizer` over gRPC.
    Serve(Box<crate::server::config::RawServe>),
    /// Publish the PostgreSQL change log to NATS JetStream, for sidecars following `nats://…`.
    Publish(Box<publish::PublishArgs>),
    /// Create or upgrade the PostgreSQL schema; safe to run again.
    Migrate {
        /// The database, `postgres://user@host:5432/db`.
        #[arg(long)]
        dsn: String,
        /// The schema to create or upgrade: another name holds a candidate policy for
        /// `serve --shadow-schema`.
        #[arg(long, default_value = "rolegate", value_parser = Schema::parse)]
        schema: Schema,
    },
    /// Load a policy directory into PostgreSQL, replacing the rows of each tenant in it.
    Import {
        /// The policy directory.
        dir: PathBuf,
        /// The database, `postgres://user@host:5432/db`.
        #[arg(long)]
        to: String,
        /// The schema to load into (a candidate policy's, made by `migrate --schema`).
        #[arg(long, default_value = "rolegate", value_parser = Schema::parse)]
        schema: Schema,
    },
    /// Write the policies held in PostgreSQL as a policy directory.
    Export {
        /// The database, `postgres://user@host:5432/db`.
        #[arg(long)]
        from: String,
        /// The directory to write.
        dir: PathBuf,
        /// The schema to read (a candidate policy's, made by `migrate --schema`).
        #[arg(long, default_value = "rolegate", value_parser = Schema::parse)]
        schema: Schema,
    },
}

/// Arguments of `rolegate check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Decide locally on this policy directory.
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
    /// Action, `kind.verb`.
    #[arg(long)]
    pub action: String,
    /// The resource as `KIND:ID`.
    #[arg(long)]
    pub resource: String,
    /// The resource's unit.
    #[arg(long, default_value = "")]
    pub unit: String,
    /// A resource attribute `name=value`; `name=[a,b]` is a list. Repeatable.
    #[arg(long = "attr")]
    pub attrs: Vec<String>,
    /// A context attribute `name=value`. Repeatable.
    #[arg(long = "ctx")]
    pub ctx: Vec<String>,
    /// The end user's IP address.
    #[arg(long)]
    pub ip: Option<String>,
    /// Decide at this instant (RFC 3339) instead of now.
    #[arg(long)]
    pub now: Option<String>,
    /// With `--server`: connect over TLS, trusting this certificate authority (PEM).
    #[arg(long, requires = "server")]
    pub tls_ca: Option<PathBuf>,
    /// With `--tls-ca`: the client certificate (PEM) for a server requiring one.
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The key of `--tls-cert` (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// With `--tls-ca`: the name the server's certificate must carry, when not the address's host.
    #[arg(long, requires = "tls_ca")]
    pub tls_server_name: Option<String>,
}

impl CheckArgs {
    /// Builds the request these arguments describe.
    pub fn request(&self) -> anyhow::Result<Request> {
        let Some((kind, id)) = self.resource.split_once(':') else {
            bail!("--resource must be `KIND:ID`, got `{}`", self.resource);
        };
        let client_ip = match &self.ip {
            Some(ip) => Some(ip.parse().with_context(|| format!("--ip: invalid IP address `{ip}`"))?),
            None => None,
        };
        Ok(Request {
            tenant: self.tenant.clone(),
            principal: self.principal.clone(),
            action: self.action.clone(),
            resource: Resource {
                kind: kind.into(),
                id: id.into(),
                unit: self.unit.clone(),
                attrs: attrs(&self.attrs, "--attr")?,
            },
            context: Context { client_ip, attrs: attrs(&self.ctx, "--ctx")? },
        })
    }

    /// The instant to decide at.
    pub fn now(&self) -> anyhow::Result<Timestamp> {
        match &self.now {
            Some(s) => s.parse().with_context(|| format!("--now: invalid RFC 3339 instant `{s}`")),
            None => Ok(Timestamp::now()),
        }
    }
}

fn attrs(items: &[String], flag: &str) -> anyhow::Result<Attrs> {
    let mut out = Attrs::default();
    for item in items {
        let Some((k, v)) = item.split_once('=') else { bail!("{flag} must be `name=value`, got `{item}`") };
        let value = match v.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            Some(list) => crate::engine::Value::List(
                list.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
            ),
            None => scalar_value(v, true),
        };
        out.insert(k, value);
    }
    Ok(out)
}

impl Cli {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Validate { dir, base } => {
                let code = validate(&dir)?;
                if let Some(base) = base {
                    diff::impact(&base, &dir)?;
                }
                Ok(code)
            }
            Command::Test { dir } => test(&dir),
            Command::Check(args) => match &args.server {
                Some(addr) => runtime()?.block_on(check_server(&args, addr)),
                None => check(&args),
            },
            Command::Plan(args) => plan::run(&args),
            Command::Diff(args) => diff::run(&args),
            Command::History(args) => history::run(&args),
            Command::Explain(args) => inspect::explain(&args),
            Command::Permissions(args) => inspect::permissions(&args),
            Command::Who(args) => inspect::who(&args),
            Command::Console(args) => rolegate_console::run(&args),
            Command::Serve(raw) => serve(&raw),
            Command::Publish(args) => publish::run(&args),
            Command::Migrate { dsn, schema } => runtime()?.block_on(pg::migrate_command(&dsn, &schema)),
            Command::Import { dir, to, schema } => runtime()?.block_on(pg::import_command(&dir, &to, &schema)),
            Command::Export { from, dir, schema } => runtime()?.block_on(pg::export_command(&from, &dir, &schema)),
        }
    }
}

pub use rolegate_source::dir::load_snapshot;

fn validate(dir: &Path) -> anyhow::Result<ExitCode> {
    let (snapshot, loaded) = load_snapshot(dir)?;
    let diags = loaded.diagnostics();
    for d in &diags {
        println!("{d}");
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    // Files that could not even be read as a document name no tenant; count them apart.
    let mut broken: Vec<&str> = loaded.other.iter().filter(|d| d.is_error()).map(|d| &*d.file).collect();
    broken.sort_unstable();
    broken.dedup();
    println!(
        "{} tenants loaded, {} failed, {} other files with errors; {errors} errors, {} warnings",
        snapshot.len(),
        loaded.tenants.len() - snapshot.len(),
        broken.len(),
        diags.len() - errors
    );
    Ok(if errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn test(dir: &Path) -> anyhow::Result<ExitCode> {
    let (snapshot, loaded) = load_snapshot(dir)?;
    for d in loaded.diagnostics().iter().filter(|d| d.is_error()) {
        println!("{d}");
    }
    let listing = files::scan(dir)?;
    let mut outcome = suite::Outcome::default();
    for path in &listing.tests {
        let label = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => suite::run_file(&mut outcome, &snapshot, &label, &text),
            Err(e) => outcome.failures.push(format!("{label}: cannot read file: {e}")),
        }
    }
    for f in &outcome.failures {
        println!("FAIL {f}");
    }
    let failed = outcome.failures.len() + usize::from(loaded.error_count() > 0);
    println!("{} passed, {} failed", outcome.passed, outcome.failures.len());
    Ok(if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let request = args.request()?;
    let now = args.now()?;
    let Some(dir) = &args.policies else { bail!("give --policies DIR") };
    let (snapshot, loaded) = load_snapshot(dir)?;
    for d in loaded.diagnostics().iter().filter(|d| d.is_error()) {
        eprintln!("{d}");
    }
    let revision = snapshot.tenant(&request.tenant).map_or(0, |t| t.revision);
    match decide(&snapshot, &request.query(), now) {
        Ok(d) => {
            let mut json = decision_json(&d);
            json["revision"] = revision.into();
            println!("{}", serde_json::to_string_pretty(&json)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

/// The runtime every command runs on; `serve` adds its request threads' hooks.
fn runtime_builder() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    builder
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(runtime_builder().build()?)
}

fn serve(raw: &crate::server::config::RawServe) -> anyhow::Result<ExitCode> {
    let cfg = match raw.resolve() {
        Ok(cfg) => cfg,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    // While a reload runs, the request threads get the core as soon as a call wakes them
    // (crates/source/src/sched.rs).
    let runtime = runtime_builder()
        .on_thread_start(crate::source::sched::register_request_thread)
        .on_thread_stop(crate::source::sched::unregister_request_thread)
        .build()?;
    runtime.block_on(async move {
        use crate::telemetry::{DecisionLog, Metrics, Telemetry};
        let metrics = std::sync::Arc::new(Metrics::default());
        let guard = crate::telemetry::init(metrics.clone());
        let decision_log = match cfg.decision_log.clone() {
            Some(target) => Some(
                DecisionLog::start(target, cfg.decision_log_queue, cfg.decision_log_allow_rate, metrics.clone())
                    .context("cannot open the decision log")?,
            ),
            None => None,
        };
        let telemetry = std::sync::Arc::new(Telemetry { metrics, decision_log });
        let served = crate::server::run(cfg, telemetry, crate::server::shutdown_signal()).await;
        guard.shutdown().await;
        served
    })?;
    Ok(ExitCode::SUCCESS)
}

pub use rolegate_api::client::connect;

pub use rolegate_api::convert::request as to_api;

async fn check_server(args: &CheckArgs, addr: &str) -> anyhow::Result<ExitCode> {
    if args.now.is_some() {
        bail!("--now applies only with --policies: a server decides at its own clock");
    }
    let request = args.request()?;
    let tls = args.tls_ca.clone().map(|ca| rolegate_api::client::ClientTls {
        ca,
        identity: args.tls_cert.clone().zip(args.tls_key.clone()),
        server_name: args.tls_server_name.clone(),
    });
    let channel = rolegate_api::client::connect_with(addr, tls.as_ref()).await?;
    let mut client = api::authorizer_client::AuthorizerClient::new(channel);
    match client.check(to_api(&request)).await {
        Ok(resp) => {
            let api::CheckResponse { decision, revision } = resp.into_inner();
            let d = rolegate_api::convert::decision_from_wire(decision.unwrap_or_default())
                .map_err(|e| anyhow::anyhow!("the server answered {}: {}", e.field, e.message))?;
            let mut json = decision_json(&d);
            json["revision"] = revision.into();
            println!("{}", serde_json::to_string_pretty(&json)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(status) => {
            eprintln!("error: {}: {}", status.code(), status.message());
            Ok(ExitCode::from(2))
        }
    }
}

/// A decision as JSON, the shape `rolegate check` prints.
pub fn decision_json(d: &rolegate_engine::Decision) -> serde_json::Value {
    serde_json::json!({
        "allowed": d.allowed,
        "reason": d.reason.as_str(),
        "rule": d.rule.as_deref(),
        "mask": d.mask.iter().map(|m| m.as_ref()).collect::<Vec<_>>(),
        "review": d.review,
        "requestable": d.requestable,
        "alert": d.alert,
        "message": d.message.as_deref(),
        "valid_until": d.valid_until.map(|t| t.to_string()),
        "cache_until": d.cache_until.map(|t| t.to_string()),
    })
}
