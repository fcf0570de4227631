//! The callers check in front of the gRPC services: admits the caller to the call's API group,
//! then reads the tenant of the request message — field 1 of every rolegate request, decoded
//! alone from the protobuf body — and checks it too, before the service decodes the message or
//! decides anything. Without a callers file the layer passes every call through untouched.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;

use super::{Api, Callers};
use crate::peer::Peer;

/// Builds [`CallersCheck`]s; clone it to use it on several listeners.
#[derive(Clone, Debug)]
pub struct CallersLayer {
    callers: Option<Arc<Callers>>,
    max_message_bytes: usize,
}

impl CallersLayer {
    /// Checks calls against `callers`, if any, reading request bodies up to
    /// `max_message_bytes` (the same limit the services decode with).
    pub fn new(callers: Option<Arc<Callers>>, max_message_bytes: usize) -> Self {
        CallersLayer { callers, max_message_bytes }
    }
}

impl<S> tower::Layer<S> for CallersLayer {
    type Service = CallersCheck<S>;

    fn layer(&self, inner: S) -> CallersCheck<S> {
        CallersCheck { inner, layer: self.clone() }
    }
}

/// The checked service.
#[derive(Clone, Debug)]
pub struct CallersCheck<S> {
    inner: S,
    layer: CallersLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, RB> tower::Service<http::Request<Body>> for CallersCheck<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let Some(callers) = self.layer.callers.clone() else { return Box::pin(self.inner.call(req)) };
        let path = req.uri().path().to_owned();
        let api = Api::from_path(&path);
        let peer = req.extensions().get::<Peer>().cloned().unwrap_or_default();
        let admitted = match callers.admit(&peer, api) {
            Ok(a) if !a.checks_tenant() => return Box::pin(self.inner.call(req)),
            Ok(a) => a,
            Err(denied) => {
                callers.record_denial(api, &path, None, &denied);
                return Box::pin(std::future::ready(Ok(Status::permission_denied(denied.0).into_http())));
            }
        };
        // The ready service answers this call; the clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.layer.max_message_bytes.saturating_add(FRAME_HEADER);
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                    return Ok(Status::out_of_range(format!("request: over {limit} bytes")).into_http());
                }
                Err(e) => return Ok(Status::cancelled(format!("request: body not received: {e}")).into_http()),
            };
            let tenants = match tenants(&bytes) {
                Ok(t) => t,
                Err(why) => return Ok(Status::invalid_argument(format!("request: {why}")).into_http()),
            };
            for tenant in &tenants {
                if let Err(denied) = admitted.tenant(tenant) {
                    callers.record_denial(api, &path, Some(tenant), &denied);
                    return Ok(Status::permission_denied(denied.0).into_http());
                }
            }
            inner.call(http::Request::from_parts(parts, Body::new(Full::new(bytes)))).await
        })
    }
}

/// The gRPC length-prefixed message header: a compression flag and a 4-byte length.
const FRAME_HEADER: usize = 5;

/// The tenant (field 1) of every message in a gRPC request body, in order. A message without
/// the field has the empty tenant, as prost decodes it; when the field repeats, the last one
/// counts, as prost decodes it, so a check cannot be fooled by a decoy tenant in front.
pub fn tenants(mut body: &[u8]) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let (flag, rest) = body.split_first().ok_or("truncated gRPC frame")?;
        if *flag != 0 {
            return Err("compressed messages are not accepted");
        }
        let (len, rest) = rest.split_first_chunk::<4>().ok_or("truncated gRPC frame")?;
        let len = u32::from_be_bytes(*len) as usize;
        let (message, rest) = rest.split_at_checked(len).ok_or("truncated gRPC frame")?;
        let tenant = field_one(message)?.unwrap_or_default();
        out.push(std::str::from_utf8(tenant).map_err(|_| "tenant: not UTF-8")?.to_owned());
        body = rest;
    }
    Ok(out)
}

/// The last length-delimited field 1 of a protobuf message, skipping every other field.
fn field_one(mut m: &[u8]) -> Result<Option<&[u8]>, &'static str> {
    const MALFORMED: &str = "malformed protobuf message";
    let mut found = None;
    while !m.is_empty() {
        let key = varint(&mut m).ok_or(MALFORMED)?;
        let skip = match key & 7 {
            0 => {
                varint(&mut m).ok_or(MALFORMED)?;
                0
            }
            1 => 8,
            2 => {
                let len = usize::try_from(varint(&mut m).ok_or(MALFORMED)?).map_err(|_| MALFORMED)?;
                let (value, rest) = m.split_at_checked(len).ok_or(MALFORMED)?;
                if key >> 3 == 1 {
                    found = Some(value);
                }
                m = rest;
                0
            }
            5 => 4,
            // Groups (3, 4) appear in no rolegate message.
            _ => return Err(MALFORMED),
        };
        m = m.get(skip..).ok_or(MALFORMED)?;
    }
    Ok(found)
}

/// Reads a base-128 varint of at most 10 bytes.
fn varint(m: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, byte) in m.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *m = m.get(i + 1..)?;
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use rolegate_api::{CheckBatchRequest, CheckRequest, Resource};

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    #[test]
    fn the_tenant_is_read_from_every_request_message() {
        let check = CheckRequest {
            tenant: "acme".into(),
            principal: "rep".into(),
            action: "conversation.view".into(),
            resource: Some(Resource { kind: "conversation".into(), id: "c1".into(), ..Resource::default() }),
            min_revision: 7,
            ..CheckRequest::default()
        };
        assert_eq!(tenants(&frame(&check.encode_to_vec())).unwrap(), ["acme"]);
        let batch = CheckBatchRequest { tenant: "globex".into(), min_revision: 300, ..CheckBatchRequest::default() };
        let mut two = frame(&batch.encode_to_vec());
        two.extend(frame(&check.encode_to_vec()));
        assert_eq!(tenants(&two).unwrap(), ["globex", "acme"]);
        assert_eq!(tenants(&frame(&[])).unwrap(), [""]);
    }

    #[test]
    fn a_repeated_tenant_field_is_read_as_prost_reads_it() {
        let decoy = CheckRequest { tenant: "acme".into(), ..CheckRequest::default() }.encode_to_vec();
        let real = CheckRequest { tenant: "globex".into(), principal: "p".into(), ..CheckRequest::default() };
        let mut message = decoy;
        message.extend(real.encode_to_vec());
        assert_eq!(CheckRequest::decode(message.as_slice()).unwrap().tenant, "globex");
        assert_eq!(tenants(&frame(&message)).unwrap(), ["globex"]);
    }

    #[test]
    fn malformed_bodies_are_refused_not_guessed() {
        assert_eq!(tenants(&[0, 0, 0]), Err("truncated gRPC frame"));
        assert_eq!(tenants(&[0, 0, 0, 0, 9, 1]), Err("truncated gRPC frame"));
        assert_eq!(tenants(&[1, 0, 0, 0, 0]), Err("compressed messages are not accepted"));
        assert_eq!(tenants(&frame(&[0x0a, 5, b'a'])), Err("malformed protobuf message"));
        assert_eq!(
            tenants(&frame(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])),
            Err("malformed protobuf message")
        );
        assert_eq!(tenants(&frame(&[0x0b])), Err("malformed protobuf message"));
        assert_eq!(tenants(&frame(&[0x0a, 2, 0xff, 0xfe])), Err("tenant: not UTF-8"));
        assert_eq!(
            tenants(&frame(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])),
            Err("malformed protobuf message")
        );
    }
}
