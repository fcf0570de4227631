//! `Check` and `CheckBatch` read and answered whole. A unary call's body is one message, so it is
//! taken as hyper hands it over (no copy when it comes in one DATA frame, as it nearly always
//! does) and the answer leaves as one DATA frame and a `grpc-status` trailer: none of the
//! streaming codec's per-call buffers, states and moves, which cost more than deciding.
//!
//! Same limits and statuses as the generated service, with tonic's own words: a declared length
//! over the limit is refused as soon as its prefix arrives (`OUT_OF_RANGE`), a compressed flag
//! without `grpc-encoding`, a bad flag, a cut message or none at all are `INTERNAL`, an answer
//! over the limit is `OUT_OF_RANGE`. A body longer than one message at the limit is refused
//! without being read further; extra messages under it are decoded and dropped, as tonic does.
//! A call with a `grpc-encoding` other than `identity` is not taken here (see
//! [`is_plain`]): the generated service answers it.

use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use hyper::body::{Body as HttpBody, Frame};
use tonic::body::Body;
use tonic::codegen::{StdError, http};
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};

use crate::convert::wire::FromWire;

/// A gRPC message's prefix: the compressed flag and the length, big-endian.
const PREFIX: usize = 5;

const GRPC_CONTENT_TYPE: http::HeaderValue = http::HeaderValue::from_static("application/grpc");
const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
const GRPC_ENCODING: http::HeaderName = http::HeaderName::from_static("grpc-encoding");

/// Whether a call's message is sent as is (no `grpc-encoding`, or `identity`).
pub(super) fn is_plain<B>(req: &http::Request<B>) -> bool {
    req.headers().get(GRPC_ENCODING).is_none_or(|e| e == "identity")
}

/// Reads the one message of a unary call, `max` bytes at most, with the call's metadata and
/// extensions around it.
pub(super) async fn read<D, B>(req: http::Request<B>, max: usize) -> Result<Request<D>, Status>
where
    D: FromWire,
    B: HttpBody,
    B::Error: Into<StdError>,
{
    let (parts, body) = req.into_parts();
    let mut body = pin!(body);
    let mut bytes = Gathered::default();
    let mut trailers = None;
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => match Status::from_error(e.into()) {
                // The generated service reads a cancelled body as ended.
                s if s.code() == Code::Cancelled => break,
                s => return Err(s),
            },
        };
        match frame.into_data() {
            Ok(mut data) => {
                bytes.push(data.copy_to_bytes(data.remaining()));
                if let Some(prefix) = bytes.prefix() {
                    length(prefix, max)?;
                }
                if bytes.len() > PREFIX + max {
                    return Err(Status::out_of_range(format!(
                        "a unary call's body holds one message of at most {max} bytes; this one is longer"
                    )));
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers.get_or_insert_with(http::HeaderMap::new).extend(t);
                }
            }
        }
    }
    let message = messages(&bytes.into_bytes(), max)?;
    let mut headers = parts.headers;
    if let Some(t) = trailers {
        headers.extend(t);
    }
    Ok(Request::from_parts(MetadataMap::from_headers(headers), parts.extensions, message))
}

/// Decodes the messages of a whole body, returning the first.
fn messages<D: FromWire>(mut rest: &[u8], max: usize) -> Result<D, Status> {
    let mut first = None;
    while !rest.is_empty() {
        let eof = || Status::internal("Unexpected EOF decoding stream.");
        let (prefix, after) = rest.split_at_checked(PREFIX).ok_or_else(eof)?;
        let (message, after) = after.split_at_checked(length(prefix, max)?).ok_or_else(eof)?;
        let decoded = D::decode(message).map_err(|e| Status::internal(e.to_string()))?;
        first.get_or_insert(decoded);
        rest = after;
    }
    first.ok_or_else(|| Status::internal("Missing request message."))
}

/// The length a message's prefix declares, once its flag and the limit allow it.
fn length(mut prefix: &[u8], max: usize) -> Result<usize, Status> {
    match prefix.get_u8() {
        0 => {}
        1 => {
            return Err(Status::internal(
                "protocol error: received message with compressed-flag but no grpc-encoding was specified",
            ));
        }
        f => {
            return Err(Status::internal(format!(
                "protocol error: received message with invalid compression flag: {f} (valid flags are 0 and 1), while sending request"
            )));
        }
    }
    let len = usize::try_from(prefix.get_u32()).unwrap_or(usize::MAX);
    if len > max {
        return Err(Status::out_of_range(format!(
            "Error, decoded message length too large: found {len} bytes, the limit is: {max} bytes"
        )));
    }
    Ok(len)
}

/// The bytes of a body: the first frame as it came, copied only if a second one follows.
#[derive(Default)]
struct Gathered {
    first: Bytes,
    joined: Option<BytesMut>,
}

impl Gathered {
    fn push(&mut self, data: Bytes) {
        match &mut self.joined {
            None if self.first.is_empty() => self.first = data,
            None => {
                let mut joined = BytesMut::with_capacity(self.first.len() + data.len());
                joined.extend_from_slice(&self.first);
                joined.extend_from_slice(&data);
                self.joined = Some(joined);
            }
            Some(joined) => joined.extend_from_slice(&data),
        }
    }

    fn as_slice(&self) -> &[u8] {
        self.joined.as_deref().unwrap_or(&self.first)
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// The first message's prefix, once it is all here.
    fn prefix(&self) -> Option<&[u8]> {
        self.as_slice().get(..PREFIX)
    }

    fn into_bytes(self) -> Bytes {
        self.joined.map_or(self.first, BytesMut::freeze)
    }
}

/// The HTTP response of a unary call's answer: the message in one DATA frame and `grpc-status`
/// in the trailers, or a trailers-only response for an error.
pub(super) fn respond<E: prost::Message>(answer: Result<Response<E>, Status>, max: usize) -> http::Response<Body> {
    let response = match answer {
        Ok(response) => response,
        Err(status) => return status.into_http(),
    };
    let (metadata, message, extensions) = response.into_parts();
    let len = message.encoded_len();
    let Some(declared) = u32::try_from(len).ok().filter(|_| len <= max) else {
        let message = format!("Error, encoded message length too large: found {len} bytes, the limit is: {max} bytes");
        return Status::out_of_range(message).into_http();
    };
    let mut data = BytesMut::with_capacity(PREFIX + len);
    data.put_u8(0);
    data.put_u32(declared);
    message.encode_raw(&mut data);
    let mut response = http::Response::new(Body::new(OneMessage { data: Some(data.freeze()), end: true }));
    *response.headers_mut() = metadata.into_headers();
    response.headers_mut().insert(http::header::CONTENT_TYPE, GRPC_CONTENT_TYPE);
    *response.extensions_mut() = extensions;
    response
}

/// A body of one DATA frame, then the `grpc-status: 0` trailer. Its size is left unknown, as
/// tonic's is: an exact size would add a `content-length` header to every answer.
struct OneMessage {
    data: Option<Bytes>,
    /// The trailer is still to send.
    end: bool,
}

impl HttpBody for OneMessage {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if std::mem::take(&mut this.end) {
            let mut trailers = http::HeaderMap::with_capacity(1);
            trailers.insert(GRPC_STATUS, http::HeaderValue::from_static("0"));
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && !self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::wire::CheckCall;
    use proptest::prelude::*;
    use prost::Message as _;

    fn framed(messages: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            out.push(0);
            out.extend(u32::try_from(m.len()).unwrap().to_be_bytes());
            out.extend(m);
        }
        out
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_or_refused_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = messages::<CheckCall>(&bytes, 40);
        }

        #[test]
        fn the_first_of_any_messages_is_the_one_read(tenants in proptest::collection::vec("[a-z]{0,12}", 1..4)) {
            let encoded: Vec<Vec<u8>> = tenants
                .iter()
                .map(|t| rolegate_api::CheckRequest { tenant: t.clone(), ..Default::default() }.encode_to_vec())
                .collect();
            let read = messages::<CheckCall>(&framed(&encoded), 1024).unwrap();
            prop_assert_eq!(&read.tenant, &tenants[0]);
        }

        #[test]
        fn a_body_in_any_pieces_is_the_same_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..40),
            cuts in proptest::collection::vec(0usize..40, 0..4),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut gathered = Gathered::default();
            let mut from = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                gathered.push(Bytes::copy_from_slice(&bytes[from..cut]));
                from = cut;
                prop_assert_eq!(gathered.prefix(), bytes[..from].get(..PREFIX));
            }
            prop_assert_eq!(gathered.len(), bytes.len());
            prop_assert_eq!(&gathered.into_bytes()[..], &bytes[..]);
        }
    }

    #[test]
    fn lengths_over_the_limit_and_bad_flags_are_refused_with_tonics_words() {
        let over = length(&[0, 0, 0, 0, 41], 40).unwrap_err();
        assert_eq!(over.code(), Code::OutOfRange);
        assert_eq!(over.message(), "Error, decoded message length too large: found 41 bytes, the limit is: 40 bytes");
        assert_eq!(length(&[0, 0, 0, 0, 40], 40).unwrap(), 40);
        assert_eq!(length(&[1, 0, 0, 0, 1], 40).unwrap_err().code(), Code::Internal);
        assert_eq!(length(&[2, 0, 0, 0, 1], 40).unwrap_err().code(), Code::Internal);
        assert_eq!(messages::<CheckCall>(&[], 40).unwrap_err().message(), "Missing request message.");
        assert_eq!(
            messages::<CheckCall>(&[0, 0, 0, 0, 3, 1], 40).unwrap_err().message(),
            "Unexpected EOF decoding stream."
        );
    }
}
