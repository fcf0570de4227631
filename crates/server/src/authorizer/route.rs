//! `rolegate.v1.Authorizer` as served: `Check` and `CheckBatch` take requests read straight from
//! the wire by [`rolegate_api::convert::wire`] (no hash map per attribute set, no second
//! conversion), each call's body read and answered whole by [`super::unary`]; the generated
//! service serves the rest, and any call with a `grpc-encoding` (refused, as no compression is
//! offered). Same message size limits and statuses either way.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::{Authorizer, Now, unary};
use crate::convert::wire::{BatchCall, CheckCall, FromWire, WireCodec};
use rolegate_api::{self as api, authorizer_server::AuthorizerServer};

const CHECK: &str = "/rolegate.v1.Authorizer/Check";
const CHECK_BATCH: &str = "/rolegate.v1.Authorizer/CheckBatch";

/// The `rolegate.v1.Authorizer` service of every listener.
#[derive(Clone)]
pub struct AuthorizerService {
    authorizer: Arc<Authorizer>,
    generated: AuthorizerServer<Authorizer>,
    max_message_bytes: usize,
}

impl AuthorizerService {
    /// Serves `authorizer`, refusing messages over `max_message_bytes` either way.
    pub fn new(authorizer: Authorizer, max_message_bytes: usize) -> Self {
        let authorizer = Arc::new(authorizer);
        let generated = AuthorizerServer::from_arc(authorizer.clone())
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes);
        AuthorizerService { authorizer, generated, max_message_bytes }
    }

    /// A plain call (see [`unary::is_plain`]) read and answered whole; any other through tonic's
    /// codec, which refuses what it cannot read.
    fn unary<S, D, E, B>(&self, mut method: S, req: http::Request<B>) -> BoxFuture<http::Response<Body>, Infallible>
    where
        S: UnaryService<D, Response = E> + Send + 'static,
        S::Future: Send,
        D: FromWire + Send + 'static,
        E: prost::Message + Send + 'static,
        B: tonic::codegen::Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        let max = self.max_message_bytes;
        if unary::is_plain(&req) {
            return Box::pin(async move {
                let answer = match unary::read::<D, B>(req, max).await {
                    Ok(request) => method.call(request).await,
                    Err(status) => Err(status),
                };
                Ok(unary::respond(answer, max))
            });
        }
        let max = Some(max);
        Box::pin(async move {
            let mut grpc = Grpc::new(WireCodec::<D, E>::default()).apply_max_message_size_config(max, max);
            Ok(grpc.unary(method, req).await)
        })
    }
}

impl NamedService for AuthorizerService {
    const NAME: &'static str = <AuthorizerServer<Authorizer> as NamedService>::NAME;
}

impl<B> Service<http::Request<B>> for AuthorizerService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match req.uri().path() {
            CHECK => self.unary(CheckMethod(self.authorizer.clone()), req),
            CHECK_BATCH => self.unary(BatchMethod(self.authorizer.clone()), req),
            _ => self.generated.call(req),
        }
    }
}

struct CheckMethod(Arc<Authorizer>);

impl UnaryService<CheckCall> for CheckMethod {
    type Response = api::CheckResponse;
    type Future = Answer<api::CheckResponse>;

    fn call(&mut self, request: Request<CheckCall>) -> Self::Future {
        match self.0.check_now(request) {
            Now::Done(answer) => Answer::Ready(Some(answer)),
            Now::Wait(request) => {
                let authorizer = self.0.clone();
                Answer::Waiting(Box::pin(async move { authorizer.check_call(request).await }))
            }
        }
    }
}

struct BatchMethod(Arc<Authorizer>);

impl UnaryService<BatchCall> for BatchMethod {
    type Response = api::CheckBatchResponse;
    type Future = Answer<api::CheckBatchResponse>;

    fn call(&mut self, request: Request<BatchCall>) -> Self::Future {
        match self.0.batch_now(request) {
            Now::Done(answer) => Answer::Ready(Some(answer)),
            Now::Wait(request) => {
                let authorizer = self.0.clone();
                Answer::Waiting(Box::pin(async move { authorizer.batch_call(request).await }))
            }
        }
    }
}

/// The answer to a `Check` or `CheckBatch`: made on the spot for every call that needs no wait
/// (no future is allocated, and the call's state is not copied from one future into the next),
/// a boxed future for the few that wait for a snapshot.
enum Answer<T> {
    /// Made; taken by the first poll.
    Ready(Option<Result<Response<T>, Status>>),
    /// Waiting for a snapshot.
    Waiting(BoxFuture<Response<T>, Status>),
}

impl<T: Unpin> Future for Answer<T> {
    type Output = Result<Response<T>, Status>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Answer::Ready(answer) => {
                Poll::Ready(answer.take().unwrap_or_else(|| Err(Status::internal("answer polled after it was taken"))))
            }
            Answer::Waiting(future) => future.as_mut().poll(cx),
        }
    }
}
