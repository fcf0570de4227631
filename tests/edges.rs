//! The server's edges under a hostile or careless caller, on the real binary and real sockets:
//! overload (health never shed, one limit for every listener, shed and undecodable calls
//! counted), echoed input kept short, the open-file limit reached, the admin port's methods, and
//! the decision log flushed at shutdown and its write errors counted.

mod support;

use std::time::{Duration, Instant};

use rolegate::api::{self, attr_value::Kind};
use support::server::{Server, desk, reply};
use support::wait_until;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

type Client = api::authorizer_client::AuthorizerClient<tonic::transport::Channel>;

/// Holds the only slot of `--max-concurrency 1` with a call waiting for a revision that never
/// comes, and returns once a call on `probe` is shed (the observable sign the slot is held).
async fn hold_the_only_slot(
    holder: &Client,
    probe: &Client,
) -> tokio::task::JoinHandle<Result<tonic::Response<api::CheckResponse>, tonic::Status>> {
    let rev = holder.clone().check(reply("rep", 0)).await.unwrap().into_inner().revision;
    support::server::hold_the_only_slot(holder, reply("rep", rev + 1), probe, reply("rep", 0)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_answer_serving_while_calls_are_shed() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let server = Server::start(
        dir.path(),
        &["--max-concurrency", "1", "--min-revision-wait", "900ms", "--admin-listen", "127.0.0.1:0"],
    );
    let client = server.client().await;
    let held = hold_the_only_slot(&client, &client).await;
    let channel = rolegate::cli::connect(&server.addr).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["", "rolegate.v1.Authorizer"] {
        let ask = tonic_health::pb::HealthCheckRequest { service: service.into() };
        let status = health.check(ask).await.expect("a health check is never shed").into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32, "service `{service}`");
    }
    assert_eq!(client.clone().check(reply("rep", 0)).await.unwrap_err().code(), Code::ResourceExhausted);
    let text = server.metrics().await;
    let shed = metric(&text, "rolegate_shed_total");
    assert!(shed >= 2.0, "{shed}");
    assert_eq!(metric(&text, "rolegate_rpc_errors_total{method=\"Check\",code=\"resource_exhausted\"}"), shed);
    assert_eq!(held.await.unwrap().unwrap_err().code(), Code::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_shares_one_concurrency_limit() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let sock = dir.path().join("rolegate.sock");
    let unix = format!("unix:{}", sock.display());
    let server =
        Server::start(dir.path(), &["--listen", &unix, "--max-concurrency", "1", "--min-revision-wait", "900ms"]);
    let over_tcp = server.client().await;
    let over_unix = api::authorizer_client::AuthorizerClient::new(rolegate::cli::connect(&unix).await.unwrap());
    // Held on TCP, shed on the Unix socket: one limit for the process, not one per listener.
    let held = hold_the_only_slot(&over_tcp, &over_unix).await;
    assert_eq!(held.await.unwrap().unwrap_err().code(), Code::Unavailable);
    assert!(over_unix.clone().check(reply("rep", 0)).await.unwrap().into_inner().decision.unwrap().allowed);
}

/// A message whose field 1 is a number where `CheckRequest` has a string: undecodable.
#[derive(Clone, PartialEq, prost::Message)]
struct Garbage {
    #[prost(uint64, tag = "1")]
    tenant: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_and_over_size_messages_are_counted_as_errors() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let server = Server::start(dir.path(), &["--admin-listen", "127.0.0.1:0"]);
    let channel = rolegate::cli::connect(&server.addr).await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/rolegate.v1.Authorizer/Check");
    let codec = tonic_prost::ProstCodec::<Garbage, api::CheckResponse>::default();
    let err = grpc.unary(tonic::Request::new(Garbage { tenant: 7 }), path, codec).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");

    let mut client = server.client().await;
    let mut huge = reply("rep", 0);
    huge.tenant = "t".repeat(5 << 20);
    let err = client.check(huge).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");

    let text = server.metrics().await;
    assert_eq!(metric(&text, "rolegate_rpc_errors_total{method=\"Check\",code=\"internal\"}"), 1.0);
    assert_eq!(metric(&text, "rolegate_rpc_errors_total{method=\"Check\",code=\"out_of_range\"}"), 1.0);
    assert_eq!(metric(&text, "rolegate_rpc_errors_total{method=\"Check\",code=\"other\"}"), 0.0);
}

/// A frame of a request body sent by hand: a piece of its bytes, or its trailers.
type BodyFrame = Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>;

/// Opens an HTTP/2 call to `Check` on `conn` whose body the caller writes frame by frame with
/// the returned sender (and ends by dropping it); `encoding` sets `grpc-encoding`.
async fn check_by_hand(
    conn: &mut hyper::client::conn::http2::SendRequest<
        http_body_util::StreamBody<tokio_stream::wrappers::ReceiverStream<BodyFrame>>,
    >,
    addr: &str,
    encoding: Option<&str>,
) -> (tokio::sync::mpsc::Sender<BodyFrame>, tokio::task::JoinHandle<hyper::Response<hyper::body::Incoming>>) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut req = hyper::Request::post(format!("http://{addr}/rolegate.v1.Authorizer/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(e) = encoding {
        req = req.header("grpc-encoding", e);
    }
    let req = req.body(http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx))).unwrap();
    conn.ready().await.unwrap();
    let answer = conn.send_request(req);
    (tx, tokio::spawn(async move { answer.await.unwrap() }))
}

fn data(bytes: &[u8]) -> BodyFrame {
    Ok(hyper::body::Frame::data(bytes::Bytes::copy_from_slice(bytes)))
}

/// A message with its gRPC prefix.
fn prefixed(message: &impl prost::Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut out = vec![0];
    out.extend(u32::try_from(body.len()).unwrap().to_be_bytes());
    out.extend(body);
    out
}

/// The status of an answer, from its headers (an error) or its trailers, with the message when
/// there was one.
async fn answered(answer: hyper::Response<hyper::body::Incoming>) -> (String, Option<api::CheckResponse>) {
    use http_body_util::BodyExt as _;
    use prost::Message as _;
    let (parts, body) = answer.into_parts();
    assert_eq!(parts.status, 200);
    if let Some(status) = tonic::Status::from_header_map(&parts.headers) {
        return (format!("{} {}", status.code() as i32, status.message()), None);
    }
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers after the message");
    let bytes = collected.to_bytes();
    let message = api::CheckResponse::decode(&bytes[5..]).unwrap();
    (trailers["grpc-status"].to_str().unwrap().to_owned(), Some(message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_are_read_in_any_pieces_and_refused_as_soon_as_they_are_wrong() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let server = Server::start(dir.path(), &[]);
    let expected = server.client().await.check(reply("rep", 0)).await.unwrap().into_inner().decision.unwrap();
    assert!(expected.allowed);
    let stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let (mut conn, driver) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(driver);
    let message = prefixed(&reply("rep", 0));
    let decision = |answer: Option<api::CheckResponse>| {
        let d = answer.expect("a message").decision.unwrap();
        (d.allowed, d.reason, d.rule)
    };
    let expected = (expected.allowed, expected.reason, expected.rule);

    // Cut inside the prefix and inside the message, with trailers after it: one message.
    let (tx, answer) = check_by_hand(&mut conn, &server.addr, None).await;
    for piece in [&message[..3], &message[3..11], &message[11..]] {
        tx.send(data(piece)).await.unwrap();
    }
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("x-note", "after".parse().unwrap());
    tx.send(Ok(hyper::body::Frame::trailers(trailers))).await.unwrap();
    drop(tx);
    let (status, answer) = answered(answer.await.unwrap()).await;
    assert_eq!((status.as_str(), decision(answer)), ("0", expected.clone()));

    // A second message is read and dropped: the first one is answered.
    let (tx, answer) = check_by_hand(&mut conn, &server.addr, None).await;
    let mut two = message.clone();
    two.extend(prefixed(&reply("nobody", 0)));
    tx.send(data(&two)).await.unwrap();
    drop(tx);
    let (status, answer) = answered(answer.await.unwrap()).await;
    assert_eq!((status.as_str(), decision(answer)), ("0", expected));

    // A length over the limit is refused once its prefix is in, while the body is still open.
    let (tx, answer) = check_by_hand(&mut conn, &server.addr, None).await;
    tx.send(data(&[0, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3])).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), answer).await.expect("refused before the body ends");
    let (status, _) = answered(answer.unwrap()).await;
    assert_eq!(
        status,
        "11 Error, decoded message length too large: found 2147483647 bytes, the limit is: 4194304 bytes"
    );
    drop(tx);

    let refused = [
        (
            None,
            vec![1, 0, 0, 0, 1, 0],
            "13 protocol error: received message with compressed-flag but no grpc-encoding was specified",
        ),
        (
            None,
            vec![7, 0, 0, 0, 0],
            "13 protocol error: received message with invalid compression flag: 7 (valid flags are 0 and 1), while sending request",
        ),
        (None, message[..message.len() - 1].to_vec(), "13 Unexpected EOF decoding stream."),
        (None, vec![0, 0, 0], "13 Unexpected EOF decoding stream."),
        (None, vec![], "13 Missing request message."),
        // Any other encoding goes to tonic's codec, which offers none.
        (Some("gzip"), message.clone(), "12 Content is compressed with `gzip` which isn't supported"),
    ];
    for (encoding, body, expected) in refused {
        let (tx, answer) = check_by_hand(&mut conn, &server.addr, encoding).await;
        if !body.is_empty() {
            tx.send(data(&body)).await.unwrap();
        }
        drop(tx);
        let (status, _) = answered(answer.await.unwrap()).await;
        assert_eq!(status, expected, "{encoding:?} {body:?}");
    }
    // `identity` is no encoding.
    let (tx, answer) = check_by_hand(&mut conn, &server.addr, Some("identity")).await;
    tx.send(data(&message)).await.unwrap();
    drop(tx);
    assert_eq!(answered(answer.await.unwrap()).await.0, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_attribute_names_and_client_ips_get_a_short_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client().await;
    let mut r = reply("rep", 0);
    r.resource.as_mut().unwrap().attrs.insert("n".repeat(1 << 20), api::AttrValue { kind: Some(Kind::Int(1)) });
    let err = client.check(r).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().starts_with("resource.attrs[nnn"), "{}", err.message());
    assert!(err.message().ends_with("…]: is 1048576 bytes, the limit is 1024"), "{}", err.message());
    assert!(err.message().len() < 300);

    let mut r = reply("rep", 0);
    r.context = Some(api::Context { client_ip: "1".repeat(20_000), attrs: Default::default() });
    let err = client.check(r).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(err.message(), "context.client_ip: is 20000 bytes, the limit is 1024");
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64
}

async fn get(addr: &str, request: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(request.as_bytes()).await?;
    let mut body = String::new();
    conn.read_to_string(&mut body).await?;
    Ok(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(unsafe_code, reason = "lowers the server's open-file limit with prlimit, which libc offers only unsafe")]
async fn at_the_open_file_limit_the_server_idles_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let server = Server::start(dir.path(), &["--admin-listen", "127.0.0.1:0"]);
    let admin = server.admin.clone().unwrap();
    let pid = server.child.id();
    // Leave the server a few descriptors beyond what it holds now.
    let limit = open_fds(pid) + 8;
    let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
    // SAFETY: `prlimit` only reads `rlimit` and writes nothing back (the old value is not asked for).
    let set = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, &rlimit, std::ptr::null_mut()) };
    assert_eq!(set, 0, "cannot lower the server's open-file limit");

    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(std::net::TcpStream::connect(&server.addr).unwrap());
    }
    for _ in 0..5 {
        idle.push(std::net::TcpStream::connect(&admin).unwrap());
    }
    // The limit is reached once the server holds all it may.
    let at_limit = async || (open_fds(pid) >= limit).then_some(());
    wait_until("the server to reach its open-file limit", Duration::from_secs(10), at_limit).await;
    let before = cpu_ticks(pid);
    // A measurement, not a synchronisation: the CPU the server spends over one second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = cpu_ticks(pid) - before;
    // 100 ticks is a whole core for the second; a backed-off accept costs next to nothing.
    assert!(spent < 20, "the server spent {spent} ticks of CPU in one second at its open-file limit");

    drop(idle);
    wait_until("/healthz to answer 200 again", Duration::from_secs(10), async || {
        let probe =
            tokio::time::timeout(Duration::from_secs(3), get(&admin, "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"));
        probe.await.ok()?.ok()?.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
    assert!(server.client().await.check(reply("rep", 0)).await.unwrap().into_inner().decision.unwrap().allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_answers_get_and_head_only() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let server = Server::start(dir.path(), &["--admin-listen", "127.0.0.1:0"]);
    let admin = server.admin.clone().unwrap();
    let post = get(&admin, "POST /metrics HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n").await.unwrap();
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(post.contains("allow: GET, HEAD"), "{post}");
    let head = get(&admin, "HEAD /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"), "{head}");
    // Idle connections beyond the bound wait in the backlog; a probe still gets through.
    let mut idle = Vec::new();
    for _ in 0..(rolegate::server::admin::MAX_CONNECTIONS + 10) {
        idle.push(tokio::net::TcpStream::connect(&admin).await.unwrap());
    }
    let started = Instant::now();
    let ok = get(&admin, "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(started.elapsed() < rolegate::server::admin::CONNECTION_TIMEOUT * 3, "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_queued_at_sigterm_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("decisions.jsonl");
    let mut server = Server::start(dir.path(), &["--decision-log", log.to_str().unwrap()]);
    let mut client = server.client().await;
    for _ in 0..50 {
        assert!(!client.check(reply("stranger", 0)).await.unwrap().into_inner().decision.unwrap().allowed);
    }
    let status = server.terminate().await;
    assert!(status.success(), "{status}");
    let lines = std::fs::read_to_string(&log).unwrap_or_default().lines().count();
    assert_eq!(lines, 50, "denies logged before shutdown were lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_log_write_errors_are_counted_and_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path(), "active");
    let server = Server::start(dir.path(), &["--decision-log", "/dev/full", "--admin-listen", "127.0.0.1:0"]);
    let mut client = server.client().await;
    assert!(!client.check(reply("stranger", 0)).await.unwrap().into_inner().decision.unwrap().allowed);
    server.log_line("about the decision log write error", |l| l.contains("cannot write the decision log"));
    assert!(!client.check(reply("stranger", 0)).await.unwrap().into_inner().decision.unwrap().allowed);
    let errors = wait_until("two decision log write errors", Duration::from_secs(10), async || {
        let errors = metric(&server.metrics().await, "rolegate_decision_log_write_errors_total");
        (errors >= 2.0).then_some(errors)
    })
    .await;
    assert_eq!(errors, 2.0);
    let again = (0..5).any(|_| {
        server.lines.recv_timeout(Duration::from_millis(50)).is_ok_and(|l| l.contains("cannot write the decision log"))
    });
    assert!(!again, "the write error is logged only the first time");
}
