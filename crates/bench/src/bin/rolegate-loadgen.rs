//! rolegate-loadgen: the load generator of `scripts/bench.sh`.
//!
//! It writes the benchmark tenant (a large copy of the Meiqia service desk), the matching Cerbos
//! requests, and drives rolegate, the empty baseline server or Cerbos with the same calls, closed
//! loop (maximum throughput) or open loop at a fixed rate; `table` turns the JSON lines of a
//! whole run into the comparison table.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use prost::Message as _;
use prost::bytes::{Buf as _, Bytes};
use tonic::codegen::http::uri::PathAndQuery;

// A binary's root file looks for modules beside itself; these live in the folder named after it.
#[path = "rolegate-loadgen/desk.rs"]
mod desk;
#[path = "rolegate-loadgen/load.rs"]
mod load;
#[path = "rolegate-loadgen/report.rs"]
mod report;
#[path = "rolegate-loadgen/table.rs"]
mod table;

use desk::Desk;
use load::{Answer, Plan};

#[derive(Parser)]
#[command(name = "rolegate-loadgen", about = "Load generator for rolegate benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the benchmark tenant into a policy directory.
    Tenant {
        #[command(flatten)]
        desk: DeskArgs,
        /// The policy directory.
        #[arg(long)]
        out: PathBuf,
        /// Changes the description only: a rewrite with the same decisions.
        #[arg(long, default_value_t = 0)]
        variant: u64,
    },
    /// Print the calls as Cerbos `CheckResources` requests in JSON, one a line.
    CerbosRequests(Pool),
    /// Ask a rolegate server the first calls of the pool and print each as a Cerbos request with
    /// rolegate's decisions, one JSON line each (the input of `scripts/bench/cerbos.mjs verify`).
    Sample {
        #[command(flatten)]
        pool: Pool,
        /// rolegate's address.
        #[arg(long)]
        addr: String,
        /// How many calls.
        #[arg(long, default_value_t = 300)]
        count: usize,
    },
    /// Write the first call of the pool as a gRPC-framed body, for h2load.
    Body {
        #[command(flatten)]
        pool: Pool,
        /// The output file.
        #[arg(long)]
        out: PathBuf,
        /// Also write the same call as an AuthZEN Access Evaluation body (JSON) here, and print
        /// its tenant (the `check` workload only).
        #[arg(long)]
        authzen_out: Option<PathBuf>,
        /// Write every call of the pool, one frame after another (for `rolegate-hotpath`).
        #[arg(long)]
        all: bool,
    },
    /// Run load against a server and print a JSON line (stdout) and a summary (stderr).
    Run(Box<RunArgs>),
    /// Replace a file by rename at a fixed interval, alternating between the given contents, as an
    /// editor or a ConfigMap update does; prints how many rewrites it made. One process for the
    /// whole phase: a shell loop would spawn `cp` and `mv` each time, and that CPU would show in
    /// the server's latency as if the reload cost it.
    Rewrite {
        /// The file replaced.
        #[arg(long)]
        file: PathBuf,
        /// The contents, in turn (each a file read once at start).
        #[arg(long = "from", required = true)]
        from: Vec<PathBuf>,
        /// Milliseconds between rewrites.
        #[arg(long, default_value_t = 100)]
        every_ms: u64,
        /// Seconds to keep rewriting.
        #[arg(long)]
        seconds: f64,
    },
    /// Print the comparison table of a results file (JSON lines).
    Table {
        /// The results file.
        results: PathBuf,
        /// Print nothing; exit 1 when a run had failed calls or a server/workload pair is missing.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Args, Clone)]
struct DeskArgs {
    /// Members of the benchmark tenant.
    #[arg(long, default_value_t = 5000)]
    members: usize,
    /// Seed of everything generated.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Args, Clone)]
struct Pool {
    #[command(flatten)]
    desk: DeskArgs,
    /// The calls.
    #[arg(long, value_enum, default_value_t = Workload::Check)]
    workload: Workload,
    /// Distinct calls, sent in turn.
    #[arg(long, default_value_t = 4096)]
    pool: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// `Check`: one decision a call.
    Check,
    /// `CheckBatch` of 10 items.
    Batch10,
    /// `CheckBatch` of 100 items.
    Batch100,
}

impl Workload {
    fn items(self) -> usize {
        match self {
            Workload::Check => 1,
            Workload::Batch10 => 10,
            Workload::Batch100 => 100,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Workload::Check => "check",
            Workload::Batch10 => "batch10",
            Workload::Batch100 => "batch100",
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    pool: Pool,
    /// `host:port` or `unix:PATH`.
    #[arg(long)]
    addr: String,
    /// The target's name in the results.
    #[arg(long, default_value = "rolegate")]
    target: String,
    /// Send these gRPC-framed Cerbos `CheckResources` bodies (written by
    /// `scripts/bench/cerbos.mjs encode`) instead of rolegate requests.
    #[arg(long)]
    cerbos_bodies: Option<PathBuf>,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Calls in flight per connection (closed loop).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Open loop at this many calls per second, latency counted from each call's due time.
    #[arg(long)]
    rate: Option<f64>,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds run before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// `steady`, or `reload` while the policy directory is being rewritten.
    #[arg(long, default_value = "steady")]
    phase: String,
    /// Repetition number, for the results.
    #[arg(long, default_value_t = 0)]
    repeat: u32,
    /// Read one answer in this many (counts allows, checks the answers decode).
    #[arg(long, default_value_t = 4)]
    inspect_every: u64,
    /// The server's process id, when it runs on this machine: its CPU time per call over the
    /// measured window is reported beside the throughput.
    #[arg(long)]
    server_pid: Option<u32>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rolegate-loadgen: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Tenant { desk, out, variant } => {
            let d = Desk::new(desk.members, desk.seed);
            d.write_policies(&out, variant).with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!("wrote tenant `{}` with {} members into {}", desk::TENANT, d.len(), out.display());
        }
        Command::CerbosRequests(pool) => {
            let d = Desk::new(pool.desk.members, pool.desk.seed);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for call in d.calls(pool.workload.items(), pool.pool, pool.desk.seed) {
                writeln!(out, "{}", d.cerbos_request(&call))?;
            }
            out.flush()?;
        }
        Command::Sample { pool, addr, count } => runtime()?.block_on(sample(&pool, &addr, count))?,
        Command::Body { pool, out, authzen_out, all } => {
            let bodies = rolegate_bodies(&pool, if all { usize::MAX } else { 1 });
            let body = bodies.first().cloned().unwrap_or_default();
            if let Some(path) = authzen_out {
                anyhow::ensure!(matches!(pool.workload, Workload::Check), "--authzen-out needs the check workload");
                let req = rolegate::api::CheckRequest::decode(body.clone()).context("decode the check request")?;
                std::fs::write(&path, rolegate::api::authzen::evaluation_body(&req).to_string())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("{}", req.tenant);
            }
            let mut framed = Vec::new();
            for body in &bodies {
                framed.push(0u8);
                framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
                framed.extend_from_slice(body);
            }
            std::fs::write(&out, framed).with_context(|| format!("cannot write {}", out.display()))?;
        }
        Command::Run(args) => return runtime()?.block_on(run_load(*args)),
        Command::Rewrite { file, from, every_ms, seconds } => rewrite(&file, &from, every_ms, seconds)?,
        Command::Table { results, check } => {
            let text =
                std::fs::read_to_string(&results).with_context(|| format!("cannot read {}", results.display()))?;
            if check {
                let problems = table::problems(&text);
                for p in &problems {
                    eprintln!("rolegate-loadgen: {p}");
                }
                return Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
            }
            print!("{}", table::render(&text));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `rewrite` command: a rename every `every_ms` on a fixed schedule for `seconds`.
fn rewrite(file: &std::path::Path, from: &[PathBuf], every_ms: u64, seconds: f64) -> anyhow::Result<()> {
    let contents = from
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let name = file.file_name().context("--file names no file")?.to_string_lossy();
    let tmp = file.with_file_name(format!(".{name}.rewrite"));
    let every = Duration::from_millis(every_ms.max(1));
    let start = std::time::Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut n = 0u64;
    let mut next = start;
    while next < end {
        std::fs::write(&tmp, &contents[n as usize % contents.len()])
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, file).with_context(|| format!("cannot rename onto {}", file.display()))?;
        n += 1;
        next += every;
        std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
    }
    eprintln!("rewrote {} {n} times in {:.1} s", file.display(), start.elapsed().as_secs_f64());
    Ok(())
}

/// One thread: the load generator runs pinned to one core, and a single-threaded runtime spares
/// every call the cross-thread wake-ups (tens of µs each) of a work-stealing one.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// The pool's calls encoded as rolegate requests.
fn rolegate_bodies(pool: &Pool, limit: usize) -> Vec<Bytes> {
    let d = Desk::new(pool.desk.members, pool.desk.seed);
    let calls = d.calls(pool.workload.items(), pool.pool.min(limit).max(1), pool.desk.seed);
    calls
        .iter()
        .map(|c| match pool.workload {
            Workload::Check => d.check_request(c).encode_to_vec().into(),
            _ => d.batch_request(c).encode_to_vec().into(),
        })
        .collect()
}

/// Splits a file of gRPC frames (flag byte, big-endian length, message) into messages.
fn read_frames(path: &PathBuf) -> anyhow::Result<Vec<Bytes>> {
    let mut buf = Bytes::from(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?);
    let mut out = Vec::new();
    while buf.has_remaining() {
        anyhow::ensure!(buf.remaining() >= 5, "{}: truncated frame header", path.display());
        let _flag = buf.get_u8();
        let len = buf.get_u32() as usize;
        anyhow::ensure!(buf.remaining() >= len, "{}: truncated frame", path.display());
        out.push(buf.split_to(len));
    }
    anyhow::ensure!(!out.is_empty(), "{}: no frames", path.display());
    Ok(out)
}

async fn run_load(args: RunArgs) -> anyhow::Result<ExitCode> {
    let items = args.pool.workload.items() as u64;
    let (path, bodies, answer) = match &args.cerbos_bodies {
        Some(file) => ("/cerbos.svc.v1.CerbosService/CheckResources", read_frames(file)?, Answer::Opaque),
        None if items == 1 => ("/rolegate.v1.Authorizer/Check", rolegate_bodies(&args.pool, usize::MAX), Answer::Check),
        None => ("/rolegate.v1.Authorizer/CheckBatch", rolegate_bodies(&args.pool, usize::MAX), Answer::Batch),
    };
    let plan = Plan {
        addr: args.addr.clone(),
        path: PathAndQuery::from_static(path),
        bodies: Arc::new(bodies),
        items,
        answer,
        connections: args.connections.max(1),
        concurrency: args.concurrency.max(1),
        rate: args.rate.filter(|r| *r > 0.0),
        duration: Duration::from_secs_f64(args.duration),
        warmup: Duration::from_secs_f64(args.warmup),
        inspect_every: args.inspect_every,
        server_pid: args.server_pid,
    };
    let stats = load::run(&plan).await?;
    let labels = report::Labels {
        target: args.target.clone(),
        workload: args.pool.workload.name().into(),
        phase: args.phase.clone(),
        repeat: args.repeat,
    };
    let line = report::line(&labels, &plan, &stats);
    println!("{line}");
    eprintln!("{}", report::human(&line));
    Ok(ExitCode::SUCCESS)
}

async fn sample(pool: &Pool, addr: &str, count: usize) -> anyhow::Result<()> {
    use rolegate::api::authorizer_client::AuthorizerClient;
    let d = Desk::new(pool.desk.members, pool.desk.seed);
    let mut client = AuthorizerClient::new(rolegate::cli::connect(addr).await?);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for call in d.calls(pool.workload.items(), pool.pool.min(count), pool.desk.seed) {
        let decisions = if pool.workload == Workload::Check {
            let r = client.check(d.check_request(&call)).await?.into_inner();
            r.decision.into_iter().collect()
        } else {
            client.check_batch(d.batch_request(&call)).await?.into_inner().decisions
        };
        let expect: Vec<bool> = decisions.iter().map(|x| x.allowed).collect();
        let why: Vec<String> = decisions.iter().map(|x| format!("{:?} {}", x.reason(), x.rule)).collect();
        anyhow::ensure!(
            expect.len() == call.items.len(),
            "rolegate answered {} decisions for {}",
            expect.len(),
            call.items.len()
        );
        let line = serde_json::json!({"request": d.cerbos_request(&call), "expect": expect, "rolegate": why});
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}
