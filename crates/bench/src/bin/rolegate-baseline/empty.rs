//! The empty server: the same `rolegate.v1.Authorizer` on the same tonic stack as `rolegate
//! serve` (TCP_NODELAY, request timeout, load shedding behind a global concurrency limit, message
//! size limits, health and reflection beside it), decoding the same requests and answering every
//! item with one constant decision. Shared by `rolegate-baseline` and `rolegate-hotpath`.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use rolegate::api::authorizer_server::{Authorizer, AuthorizerServer};
use rolegate::api::{
    CheckBatchRequest, CheckBatchResponse, CheckRequest, CheckResponse, Decision, Filter, PlanRequest, PlanResponse,
    Reason, filter,
};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Answers every item with the same decision.
struct Constant;

fn decision() -> Decision {
    Decision { allowed: true, reason: Reason::Granted.into(), rule: "baseline".into(), ..Decision::default() }
}

#[tonic::async_trait]
impl Authorizer for Constant {
    async fn check(&self, _request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(CheckResponse { decision: Some(decision()), revision: 1 }))
    }

    async fn check_batch(&self, request: Request<CheckBatchRequest>) -> Result<Response<CheckBatchResponse>, Status> {
        let n = request.get_ref().items.len();
        Ok(Response::new(CheckBatchResponse { decisions: vec![decision(); n], revision: 1 }))
    }

    async fn plan(&self, _request: Request<PlanRequest>) -> Result<Response<PlanResponse>, Status> {
        let filter = Filter { node: Some(filter::Node::Constant(true)) };
        Ok(Response::new(PlanResponse {
            filter: Some(filter),
            revision: 1,
            valid_until: None,
            reason: Reason::Granted.into(),
        }))
    }
}

/// Serves the empty server on `listen` (`host:port` or `unix:PATH`) until `shutdown` resolves,
/// logging `listening on ADDR` once bound.
pub async fn serve(listen: &str, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // The defaults of `rolegate serve`.
    const MAX_MESSAGE_BYTES: usize = 4 << 20;
    const MAX_CONCURRENCY: usize = 4096;
    let authorizer = AuthorizerServer::new(Constant)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AuthorizerServer<Constant>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rolegate::api::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build reflection")?;
    let shed =
        tower::ServiceBuilder::new().load_shed().layer(tower::limit::GlobalConcurrencyLimitLayer::new(MAX_CONCURRENCY));
    let router = Server::builder()
        .timeout(Duration::from_secs(1))
        .layer(shed)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(authorizer);
    match listen.strip_prefix("unix:") {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            let listener =
                tokio::net::UnixListener::bind(path).with_context(|| format!("cannot listen on unix:{path}"))?;
            tracing::info!("listening on unix:{path}");
            router.serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown).await?;
        }
        None => {
            let listener =
                tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!("listening on {}", listener.local_addr()?);
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            router.serve_with_incoming_shutdown(incoming, shutdown).await?;
        }
    }
    Ok(())
}
