//! The load engine: pre-encoded request bodies sent as unary gRPC calls over N HTTP/2 connections,
//! either closed-loop (M calls in flight per connection, as fast as answers come: the maximum
//! throughput) or open-loop at a fixed rate (latency counted from the instant each call was due,
//! so a slow server cannot hide queueing by slowing the client down: no coordinated omission).
//!
//! The same engine drives every target: the bodies and the method path are its only inputs, so
//! rolegate, the empty server and Cerbos pay the same client cost per call.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use prost::Message as _;
use prost::bytes::{Buf as _, BufMut as _, Bytes};
use rolegate::api;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Status, codegen::http::uri::PathAndQuery};

/// Passes already-encoded protobuf messages through tonic's framing untouched.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

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

/// How to read a response, to count allows and denies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `rolegate.v1.CheckResponse`.
    Check,
    /// `rolegate.v1.CheckBatchResponse`.
    Batch,
    /// Not read (Cerbos; its decisions are verified before timing instead).
    Opaque,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// `host:port` or `unix:PATH`.
    pub addr: String,
    /// The method, e.g. `/rolegate.v1.Authorizer/Check`.
    pub path: PathAndQuery,
    /// Encoded request messages, sent in turn.
    pub bodies: Arc<Vec<Bytes>>,
    /// Decisions per call.
    pub items: u64,
    /// How to read answers.
    pub answer: Answer,
    /// HTTP/2 connections.
    pub connections: usize,
    /// Calls in flight per connection (closed loop).
    pub concurrency: usize,
    /// Calls per second (open loop); `None` is closed loop.
    pub rate: Option<f64>,
    /// Measured time.
    pub duration: Duration,
    /// Time run before measuring.
    pub warmup: Duration,
    /// Read one answer in this many.
    pub inspect_every: u64,
    /// The server's process, when it runs on this machine: its CPU time over the measured window
    /// is reported (a server's capacity on its core does not depend on whether the load
    /// generator, on the other core, keeps up).
    pub server_pid: Option<u32>,
}

/// CPU time used over the measured window, of the server process and of this load generator.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    /// The server's, all threads; `None` without a `server_pid` or when it could not be read.
    pub server: Option<Duration>,
    /// This process's, all threads.
    pub client: Option<Duration>,
}

/// What was measured.
pub struct Stats {
    /// Latency in nanoseconds.
    pub latency: Histogram<u64>,
    /// Completed calls (ok or not) started inside the measured window.
    pub calls: u64,
    /// Failed calls by gRPC code.
    pub errors: BTreeMap<String, u64>,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Decisions read and how many allowed.
    pub read: u64,
    /// Allowed among `read`.
    pub allowed: u64,
    /// Lowest and highest snapshot revision seen.
    pub revisions: Option<(u64, u64)>,
    /// Open loop: how late the pacer released calls, in nanoseconds.
    pub pacer_lag: Option<Histogram<u64>>,
    /// Length of the measured window.
    pub window: Duration,
    /// CPU time used during the window.
    pub cpu: Cpu,
}

fn histogram() -> Histogram<u64> {
    #[expect(clippy::unwrap_used, reason = "constant, valid bounds")]
    Histogram::new_with_bounds(1, 120_000_000_000, 3).unwrap()
}

impl Stats {
    fn new() -> Stats {
        Stats {
            latency: histogram(),
            calls: 0,
            errors: BTreeMap::new(),
            first_error: None,
            read: 0,
            allowed: 0,
            revisions: None,
            pacer_lag: None,
            window: Duration::ZERO,
            cpu: Cpu::default(),
        }
    }

    fn merge(&mut self, o: Stats) {
        let _ = self.latency.add(&o.latency);
        self.calls += o.calls;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.first_error = self.first_error.take().or(o.first_error);
        self.read += o.read;
        self.allowed += o.allowed;
        self.revisions = match (self.revisions, o.revisions) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (a, b) => a.or(b),
        };
    }

    fn record(&mut self, latency: Duration, result: &Result<Bytes, Status>, answer: Answer, read: bool) {
        self.calls += 1;
        self.latency.saturating_record(latency.as_nanos().max(1) as u64);
        match result {
            Err(status) => {
                *self.errors.entry(format!("{:?}", status.code())).or_default() += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(format!("{:?}: {}", status.code(), status.message()));
                }
            }
            Ok(body) if read => self.read_answer(body, answer),
            Ok(_) => {}
        }
    }

    fn read_answer(&mut self, body: &Bytes, answer: Answer) {
        let (decisions, revision) = match answer {
            Answer::Opaque => return,
            Answer::Check => match api::CheckResponse::decode(body.clone()) {
                Ok(r) => (r.decision.into_iter().collect(), r.revision),
                Err(_) => (Vec::new(), 0),
            },
            Answer::Batch => match api::CheckBatchResponse::decode(body.clone()) {
                Ok(r) => (r.decisions, r.revision),
                Err(_) => (Vec::new(), 0),
            },
        };
        if decisions.is_empty() {
            *self.errors.entry("UndecodableAnswer".into()).or_default() += 1;
        }
        self.read += decisions.len() as u64;
        self.allowed += decisions.iter().filter(|d| d.allowed).count() as u64;
        self.revisions = Some(self.revisions.map_or((revision, revision), |(a, b)| (a.min(revision), b.max(revision))));
    }
}

/// Sends one call; a call still unanswered after 10 s counts as failed.
async fn call(channel: Channel, path: PathAndQuery, body: Bytes) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    let send = async {
        grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        grpc.unary(tonic::Request::new(body), path, RawCodec).await.map(tonic::Response::into_inner)
    };
    tokio::time::timeout(Duration::from_secs(10), send)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("no answer within 10 s")))
}

/// Opens the connections and checks that the target answers the first body.
async fn connect(plan: &Plan) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections.max(1) {
        channels.push(rolegate::cli::connect(&plan.addr).await?);
    }
    let first = plan.bodies.first().cloned().ok_or_else(|| anyhow::anyhow!("no request bodies"))?;
    if let Err(status) = call(channels[0].clone(), plan.path.clone(), first).await {
        anyhow::bail!("`{}` does not answer {}: {:?}: {}", plan.addr, plan.path, status.code(), status.message());
    }
    Ok(channels)
}

/// Runs the plan.
pub async fn run(plan: &Plan) -> anyhow::Result<Stats> {
    let channels = connect(plan).await?;
    let start = Instant::now();
    let measure = start + plan.warmup;
    let end = measure + plan.duration;
    let pid = plan.server_pid;
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(measure.into()).await;
        let before = (pid.and_then(cpu_time), cpu_time(std::process::id()));
        tokio::time::sleep_until(end.into()).await;
        let after = (pid.and_then(cpu_time), cpu_time(std::process::id()));
        let used = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
        Cpu { server: used(before.0, after.0), client: used(before.1, after.1) }
    });
    let mut stats = match plan.rate {
        None => closed_loop(plan, &channels, measure, end).await?,
        Some(rate) => open_loop(plan, &channels, rate, (start, measure, end)).await?,
    };
    stats.window = plan.duration;
    stats.cpu = cpu.await?;
    Ok(stats)
}

/// User and system CPU time of process `pid`, all its threads (`/proc/PID/stat`, in clock ticks).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: state is the
    // first, utime the 12th, stime the 13th.
    let mut after = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: u64 = after.nth(11)?.parse().ok()?;
    let stime: u64 = after.next()?.parse().ok()?;
    // SAFETY: sysconf reads a constant of the system; it takes no pointer.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    Some(Duration::from_nanos((utime + stime) * 1_000_000_000 / hz))
}

async fn closed_loop(plan: &Plan, channels: &[Channel], measure: Instant, end: Instant) -> anyhow::Result<Stats> {
    let workers = channels.len() * plan.concurrency.max(1);
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let (channel, plan) = (channels[w % channels.len()].clone(), plan.clone());
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::new();
            let n = plan.bodies.len();
            // Spread the workers over the pool so that they do not send the same body together.
            let mut i = w * n / workers;
            let mut seen = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let result = call(channel.clone(), plan.path.clone(), plan.bodies[i % n].clone()).await;
                let t1 = Instant::now();
                i += 1;
                if t0 >= measure {
                    seen += 1;
                    stats.record(t1 - t0, &result, plan.answer, seen.is_multiple_of(plan.inspect_every.max(1)));
                }
            }
            stats
        }));
    }
    let mut total = Stats::new();
    for t in tasks {
        total.merge(t.await?);
    }
    Ok(total)
}

/// Releases call slots at their due instants from a dedicated thread: tokio's timer has a 1 ms
/// granularity, far coarser than the latencies measured here.
fn pacer(rate: f64, start: Instant, end: Instant, tx: tokio::sync::mpsc::UnboundedSender<Instant>) -> Histogram<u64> {
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack (default 50 µs).
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut lag = histogram();
    for i in 0u32.. {
        let due = start + period * i;
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        lag.saturating_record(due.elapsed().as_nanos().max(1) as u64);
        if tx.send(due).is_err() {
            break;
        }
    }
    lag
}

async fn open_loop(
    plan: &Plan,
    channels: &[Channel],
    rate: f64,
    (start, measure, end): (Instant, Instant, Instant),
) -> anyhow::Result<Stats> {
    const MAX_IN_FLIGHT: u32 = 20_000;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let pacer = std::thread::spawn(move || pacer(rate, start, end, tx));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT as usize));
    let shards: Vec<_> = channels.iter().map(|_| Arc::new(Mutex::new(Stats::new()))).collect();
    let mut i = 0usize;
    while let Some(due) = rx.recv().await {
        // Waiting here for a free slot is part of the measured latency: it is counted from `due`.
        let permit = slots.clone().acquire_owned().await?;
        let c = i % channels.len();
        let (channel, shard, path) = (channels[c].clone(), shards[c].clone(), plan.path.clone());
        let body = plan.bodies[i % plan.bodies.len()].clone();
        let (answer, read) = (plan.answer, (i as u64).is_multiple_of(plan.inspect_every.max(1)));
        i += 1;
        tokio::spawn(async move {
            let result = call(channel, path, body).await;
            let latency = due.elapsed();
            if due >= measure
                && let Ok(mut s) = shard.lock()
            {
                s.record(latency, &result, answer, read);
            }
            drop(permit);
        });
    }
    let _all_done = slots.acquire_many(MAX_IN_FLIGHT).await?;
    let mut total = Stats::new();
    for shard in shards {
        let s =
            std::mem::replace(&mut *shard.lock().map_err(|_| anyhow::anyhow!("a call task panicked"))?, Stats::new());
        total.merge(s);
    }
    total.pacer_lag = pacer.join().ok();
    Ok(total)
}
