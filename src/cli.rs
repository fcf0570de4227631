//! The command line (DESIGN §7): `validate`, `test`, `check` and `serve`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use jiff::Timestamp;

use crate::engine::{Attrs, Context, Request, Resource, Snapshot, decide};
use crate::policy::{self, parse::scalar_value};
use crate::suite;

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
    },
    /// Run the policy tests (`*_test.yaml`) under a directory.
    Test {
        /// The policy directory.
        dir: PathBuf,
    },
    /// Decide one request and print the decision as JSON.
    Check(Box<CheckArgs>),
}

/// Arguments of `rolegate check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Decide locally on this policy directory.
    #[arg(long, required = true)]
    pub policies: Option<PathBuf>,
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
            Command::Validate { dir } => validate(&dir),
            Command::Test { dir } => test(&dir),
            Command::Check(args) => check(&args),
        }
    }
}

/// Loads every good tenant of `dir` into a snapshot; also returns the load report.
pub fn load_snapshot(dir: &Path) -> anyhow::Result<(Snapshot, policy::Loaded)> {
    let mut loaded =
        policy::load_dir(dir, Timestamp::now(), |_| 1).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut snapshot = Snapshot::default();
    for t in &mut loaded.tenants {
        if let Some(tenant) = t.tenant.take() {
            snapshot.insert(Arc::new(tenant));
        }
    }
    Ok((snapshot, loaded))
}

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
    let listing = policy::scan(dir)?;
    let outcome = suite::run_files(&snapshot, &listing.tests);
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
            let mut json = d.to_json();
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
