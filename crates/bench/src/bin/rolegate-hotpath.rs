//! rolegate-hotpath: what one call costs the server, counted rather than timed.
//!
//! It runs `rolegate serve`'s server (`rolegate::server::run` with its defaults: decision log on,
//! metrics on) or the empty baseline server in this process, on a one-worker runtime of its own,
//! and sends it a fixed number of calls (pre-encoded bodies, a fixed number in flight) from a
//! client on the main thread. A counting global allocator counts the allocations made on every
//! thread but the client's, so the figure is the server's allocations per call. Run under
//! `valgrind --tool=callgrind --separate-threads=yes`, the threads other than the first (the
//! client) hold the server's instructions; `scripts/bench-hotpath.sh` takes the difference of two
//! call counts, so loading the policies and starting up cancel out. Both measures are exact on a
//! busy machine, where wall-clock throughput is not.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use prost::bytes::{Buf as _, BufMut as _, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};

// A binary's root file looks for modules beside itself; this one lives in the baseline's folder.
#[path = "rolegate-baseline/empty.rs"]
mod empty;

/// Counts allocations (and reallocations) made outside the client thread.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the client thread, whose allocations are not the server's.
    static CLIENT: Cell<bool> = const { Cell::new(false) };
}

fn count(size: usize) {
    if !CLIENT.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(size as u64, Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only
// atomics and a const-initialised thread local (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: forwarded with the caller's pointer and layouts.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// `rolegate serve` (in this process).
    Rolegate,
    /// The empty server.
    Baseline,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    Tcp,
    Unix,
}

/// Counts the server's allocations per call (and, under callgrind, its instructions).
#[derive(Parser)]
#[command(name = "rolegate-hotpath", about = "Allocations and instructions per call of rolegate and the empty server")]
struct Args {
    /// The server.
    #[arg(long, value_enum, default_value_t = Target::Rolegate)]
    target: Target,
    /// The policy directory (`rolegate-loadgen tenant`).
    #[arg(long)]
    policies: PathBuf,
    /// gRPC-framed request bodies, sent in turn (`rolegate-loadgen body --all`).
    #[arg(long)]
    bodies: PathBuf,
    /// The method the bodies are for.
    #[arg(long, default_value = "/rolegate.v1.Authorizer/Check")]
    path: String,
    /// Measured calls.
    #[arg(long, default_value_t = 20_000)]
    calls: u64,
    /// Calls sent before counting.
    #[arg(long, default_value_t = 2_000)]
    warmup: u64,
    /// Calls in flight.
    #[arg(long, default_value_t = 16)]
    in_flight: u64,
    /// How the client connects.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
    /// rolegate's `--decision-log`: `off`, or a file (default: a file beside the socket, so
    /// every deny is logged as with the default `stdout`).
    #[arg(long)]
    decision_log: Option<String>,
    /// rolegate's `--shadow-policies`: also decide sampled calls on this candidate policy
    /// directory. The counted calls end once the shadow thread has caught up, so its work is in
    /// the figures.
    #[arg(long)]
    shadow_policies: Option<PathBuf>,
    /// rolegate's `--shadow-sample`, 0 to 1 [default: 1].
    #[arg(long)]
    shadow_sample: Option<String>,
    /// The target's name in the JSON line.
    #[arg(long)]
    name: Option<String>,
}

fn main() -> ExitCode {
    CLIENT.with(|c| c.set(true));
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rolegate-hotpath: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let bodies = read_frames(&args.bodies)?;
    let dir = std::env::temp_dir().join(format!("rolegate-hotpath-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let addr = match args.transport {
        Transport::Unix => format!("unix:{}", dir.join("grpc.sock").display()),
        Transport::Tcp => {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.to_string()
        }
    };
    let log = args.decision_log.clone().unwrap_or_else(|| dir.join("decisions.jsonl").display().to_string());
    let metrics = start_server(&args, &addr, &log)?;

    let client = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let path = PathAndQuery::try_from(args.path.clone())?;
    let result = client.block_on(drive(&args, &addr, path, bodies, &metrics));
    let _ = std::fs::remove_dir_all(&dir);
    let (before, after, elapsed) = result?;
    let calls = args.calls as f64;
    let name = args.name.clone().unwrap_or_else(|| {
        match args.target {
            Target::Rolegate => "rolegate",
            Target::Baseline => "baseline",
        }
        .into()
    });
    let line = serde_json::json!({
        "kind": "hotpath",
        "target": name,
        "path": args.path,
        "transport": match args.transport { Transport::Tcp => "tcp", Transport::Unix => "unix" },
        "calls": args.calls,
        "in_flight": args.in_flight,
        "allocs_per_call": (after.0 - before.0) as f64 / calls,
        "alloc_bytes_per_call": (after.1 - before.1) as f64 / calls,
        "seconds": elapsed.as_secs_f64(),
        "shadow_compared": metrics.shadow.compared.load(Relaxed),
        "shadow_dropped": metrics.shadow.dropped_total(),
    });
    println!("{line}");
    Ok(())
}

/// Starts the server on its own thread with a one-worker runtime, as a sidecar pinned to one core.
/// Returns its metrics.
fn start_server(args: &Args, addr: &str, log: &str) -> anyhow::Result<std::sync::Arc<rolegate::telemetry::Metrics>> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("server").enable_all().build()?;
    let metrics = std::sync::Arc::new(rolegate::telemetry::Metrics::default());
    let _otel = runtime.block_on(async { rolegate::telemetry::init(metrics.clone()) });
    let (addr, forever) = (addr.to_owned(), std::future::pending::<()>());
    match args.target {
        Target::Baseline => {
            runtime.spawn(async move {
                if let Err(e) = empty::serve(&addr, forever).await {
                    eprintln!("rolegate-hotpath: the empty server failed: {e:#}");
                }
            });
        }
        Target::Rolegate => {
            let raw = rolegate::server::config::RawServe {
                policies: Some(args.policies.display().to_string()),
                listen: vec![addr],
                decision_log: Some(log.to_owned()),
                shadow_policies: args.shadow_policies.as_ref().map(|p| p.display().to_string()),
                shadow_sample: args.shadow_sample.clone(),
                ..Default::default()
            };
            let cfg = raw.resolve().map_err(|e| anyhow::anyhow!("{}", e.join("; ")))?;
            let decision_log = match cfg.decision_log.clone() {
                Some(target) => Some(rolegate::telemetry::DecisionLog::start(
                    target,
                    cfg.decision_log_queue,
                    cfg.decision_log_allow_rate,
                    metrics.clone(),
                )?),
                None => None,
            };
            let telemetry =
                std::sync::Arc::new(rolegate::telemetry::Telemetry { metrics: metrics.clone(), decision_log });
            runtime.spawn(async move {
                if let Err(e) = rolegate::server::run(cfg, telemetry, forever).await {
                    eprintln!("rolegate-hotpath: rolegate failed: {e:#}");
                }
            });
        }
    }
    // The runtime lives as long as the process; the process exits when the client is done.
    std::mem::forget(runtime);
    Ok(metrics)
}

/// Connects, waits until the server answers, sends the warm-up calls, then the counted ones.
/// Returns the allocation counters before and after the counted calls, and their wall time.
async fn drive(
    args: &Args,
    addr: &str,
    path: PathAndQuery,
    bodies: Vec<Bytes>,
    metrics: &rolegate::telemetry::Metrics,
) -> anyhow::Result<((u64, u64), (u64, u64), Duration)> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let channel = loop {
        match rolegate::cli::connect(addr).await {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => return Err(e.context("the server never listened")),
        }
    };
    let first = bodies.first().cloned().context("no request bodies")?;
    loop {
        match call(channel.clone(), path.clone(), first.clone()).await {
            Ok(_) => break,
            // UNAVAILABLE until the policies are loaded; under valgrind on a busy machine the
            // first call may also outlast the client's timeout.
            Err(s)
                if matches!(s.code(), Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded)
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => anyhow::bail!("the server does not answer {path}: {:?}: {}", s.code(), s.message()),
        }
    }
    let bodies = std::sync::Arc::new(bodies);
    send(&channel, &path, &bodies, args.warmup, args.in_flight).await?;
    if args.shadow_policies.is_some() {
        shadow_caught_up(metrics).await;
    }
    let before = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    let start = Instant::now();
    send(&channel, &path, &bodies, args.calls, args.in_flight).await?;
    if args.shadow_policies.is_some() {
        shadow_caught_up(metrics).await;
    }
    let elapsed = start.elapsed();
    let after = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    Ok((before, after, elapsed))
}

/// Waits until the shadow thread has compared (or dropped) every queued call: its count holds
/// still for 200 ms, or 120 s have passed.
async fn shadow_caught_up(metrics: &rolegate::telemetry::Metrics) {
    let seen = || metrics.shadow.compared.load(Relaxed) + metrics.shadow.dropped_total();
    let (deadline, mut last, mut still) = (Instant::now() + Duration::from_secs(120), seen(), 0);
    while still < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = seen();
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
}

/// Sends `calls` calls, `in_flight` at a time; any failed call fails the run.
async fn send(
    channel: &Channel,
    path: &PathAndQuery,
    bodies: &std::sync::Arc<Vec<Bytes>>,
    calls: u64,
    in_flight: u64,
) -> anyhow::Result<()> {
    let workers = in_flight.clamp(1, calls.max(1));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (channel, path, bodies) = (channel.clone(), path.clone(), bodies.clone());
        // Worker `w` sends calls w, w + workers, ...: `calls` in all.
        let mine = calls / workers + u64::from(w < calls % workers);
        tasks.push(tokio::spawn(async move {
            for i in 0..mine {
                let body = bodies[((w + i * workers) % bodies.len() as u64) as usize].clone();
                call(channel.clone(), path.clone(), body).await?;
            }
            Ok::<_, Status>(())
        }));
    }
    for t in tasks {
        t.await?.map_err(|s| anyhow::anyhow!("a call failed: {:?}: {}", s.code(), s.message()))?;
    }
    Ok(())
}

async fn call(channel: Channel, path: PathAndQuery, body: Bytes) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
    grpc.unary(tonic::Request::new(body), path, RawCodec).await.map(tonic::Response::into_inner)
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

/// Passes already-encoded protobuf messages through tonic's framing untouched.
#[derive(Clone, Copy, Debug, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
