//! `Check` and `CheckBatch` requests decoded straight from the wire into the shapes the limits
//! check ([`RawResource`], [`RawContext`]), for the two calls every caller makes: the generated
//! types would build a hash map per attribute set (hashing each name) only for the limits to
//! turn it into the engine's list. It accepts and refuses exactly what the generated decoder
//! does (a property test in this module compares the two on any message and on any bytes),
//! with one difference: prost's limit of 100 nested messages counts from the top, and here it
//! counts again from the nesting of these fields (at most 5 deep), where it guards a group in an
//! unknown field only.
//!
//! The server's codec ([`WireCodec`]) decodes with these and encodes answers with prost.

use std::marker::PhantomData;

use prost::DecodeError;
use prost::bytes::Buf;
use prost::encoding::{DecodeContext, WireType, check_wire_type, decode_key, decode_varint, merge_loop, skip_field};
use prost::encoding::{bool as flag, double, int64, string, uint64};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};

use super::{RawAttrs, RawContext, RawResource};
use crate as api;
use rolegate_engine::Value;

/// A `CheckRequest` as it came off the wire.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckCall {
    /// `tenant`.
    pub tenant: String,
    /// `principal`.
    pub principal: String,
    /// `action`.
    pub action: String,
    /// `resource`.
    pub resource: Option<RawResource>,
    /// `context`.
    pub context: Option<RawContext>,
    /// `min_revision`.
    pub min_revision: u64,
}

/// A `CheckBatchRequest` as it came off the wire.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchCall {
    /// `tenant`.
    pub tenant: String,
    /// `principal`.
    pub principal: String,
    /// `context`.
    pub context: Option<RawContext>,
    /// `min_revision`.
    pub min_revision: u64,
    /// `items`: each item's `action` and `resource`.
    pub items: Vec<(String, Option<RawResource>)>,
}

impl From<api::CheckRequest> for CheckCall {
    fn from(r: api::CheckRequest) -> Self {
        let api::CheckRequest { tenant, principal, action, resource, context, min_revision } = r;
        CheckCall {
            tenant,
            principal,
            action,
            resource: resource.map(Into::into),
            context: context.map(Into::into),
            min_revision,
        }
    }
}

impl From<api::CheckBatchRequest> for BatchCall {
    fn from(r: api::CheckBatchRequest) -> Self {
        let api::CheckBatchRequest { tenant, principal, context, min_revision, items } = r;
        BatchCall {
            tenant,
            principal,
            context: context.map(Into::into),
            min_revision,
            items: items.into_iter().map(|i| (i.action, i.resource.map(Into::into))).collect(),
        }
    }
}

/// A message read from the wire by hand.
pub trait FromWire: Sized + Default {
    /// Merges one field (`tag`, already read) from `buf`, as a generated `merge_field` does.
    fn field(&mut self, tag: u32, wire_type: WireType, buf: &mut &[u8], ctx: DecodeContext) -> Result<(), DecodeError>;

    /// Decodes a whole message.
    fn decode(mut buf: &[u8]) -> Result<Self, DecodeError> {
        let mut message = Self::default();
        let ctx = DecodeContext::default();
        while buf.has_remaining() {
            let (tag, wire_type) = decode_key(&mut buf)?;
            message.field(tag, wire_type, &mut buf, ctx.clone())?;
        }
        Ok(message)
    }
}

impl FromWire for CheckCall {
    fn field(&mut self, tag: u32, wt: WireType, buf: &mut &[u8], ctx: DecodeContext) -> Result<(), DecodeError> {
        match tag {
            1 => text(wt, &mut self.tenant, buf, ctx),
            2 => text(wt, &mut self.principal, buf, ctx),
            3 => text(wt, &mut self.action, buf, ctx),
            4 => message(wt, self.resource.get_or_insert_default(), buf, ctx, resource),
            5 => message(wt, self.context.get_or_insert_default(), buf, ctx, context),
            6 => uint64::merge(wt, &mut self.min_revision, buf, ctx),
            _ => skip_field(wt, tag, buf, ctx),
        }
    }
}

impl FromWire for BatchCall {
    fn field(&mut self, tag: u32, wt: WireType, buf: &mut &[u8], ctx: DecodeContext) -> Result<(), DecodeError> {
        match tag {
            1 => text(wt, &mut self.tenant, buf, ctx),
            2 => text(wt, &mut self.principal, buf, ctx),
            3 => message(wt, self.context.get_or_insert_default(), buf, ctx, context),
            4 => uint64::merge(wt, &mut self.min_revision, buf, ctx),
            5 => {
                let mut item = (String::new(), None);
                message(wt, &mut item, buf, ctx, batch_item)?;
                self.items.push(item);
                Ok(())
            }
            _ => skip_field(wt, tag, buf, ctx),
        }
    }
}

/// An embedded message, merged into `value` field by field (a message sent twice is merged,
/// as protobuf says).
fn message<T>(
    wt: WireType,
    value: &mut T,
    buf: &mut &[u8],
    ctx: DecodeContext,
    merge: impl Fn(&mut T, u32, WireType, &mut &[u8], DecodeContext) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    check_wire_type(WireType::LengthDelimited, wt)?;
    merge_loop(value, buf, ctx, |value, buf, ctx| {
        let (tag, wt) = decode_key(buf)?;
        merge(value, tag, wt, buf, ctx)
    })
}

fn resource(
    r: &mut RawResource,
    tag: u32,
    wt: WireType,
    buf: &mut &[u8],
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    match tag {
        1 => text(wt, &mut r.kind, buf, ctx),
        2 => text(wt, &mut r.id, buf, ctx),
        3 => text(wt, &mut r.unit, buf, ctx),
        4 => attr_entry(wt, &mut r.attrs, buf, ctx),
        _ => skip_field(wt, tag, buf, ctx),
    }
}

fn context(c: &mut RawContext, tag: u32, wt: WireType, buf: &mut &[u8], ctx: DecodeContext) -> Result<(), DecodeError> {
    match tag {
        1 => text(wt, &mut c.client_ip, buf, ctx),
        2 => attr_entry(wt, &mut c.attrs, buf, ctx),
        _ => skip_field(wt, tag, buf, ctx),
    }
}

fn batch_item(
    (action, resource): &mut (String, Option<RawResource>),
    tag: u32,
    wt: WireType,
    buf: &mut &[u8],
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    match tag {
        1 => text(wt, action, buf, ctx),
        2 => message(wt, resource.get_or_insert_default(), buf, ctx, self::resource),
        _ => skip_field(wt, tag, buf, ctx),
    }
}

/// One map entry: a message of `1: name, 2: value`.
fn attr_entry(wt: WireType, attrs: &mut RawAttrs, buf: &mut &[u8], ctx: DecodeContext) -> Result<(), DecodeError> {
    check_wire_type(WireType::LengthDelimited, wt)?;
    let mut entry = (String::new(), None);
    merge_loop(&mut entry, buf, ctx, |(name, value), buf, ctx| {
        let (tag, wt) = decode_key(buf)?;
        match tag {
            1 => text(wt, name, buf, ctx),
            // An entry without a value holds an `AttrValue` with nothing set: `None`.
            2 => message(wt, value, buf, ctx, attr_value),
            _ => skip_field(wt, tag, buf, ctx),
        }
    })?;
    attrs.push(entry);
    Ok(())
}

/// `AttrValue`'s `oneof kind`: a later member replaces an earlier one; the same message member
/// (`list`) sent twice is merged.
fn attr_value(
    v: &mut Option<Value>,
    tag: u32,
    wt: WireType,
    buf: &mut &[u8],
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    match tag {
        1 => {
            let mut t = String::new();
            text(wt, &mut t, buf, ctx)?;
            *v = Some(Value::Text(t));
        }
        2 => {
            let mut i = 0;
            int64::merge(wt, &mut i, buf, ctx)?;
            *v = Some(Value::Int(i));
        }
        3 => {
            let mut b = false;
            flag::merge(wt, &mut b, buf, ctx)?;
            *v = Some(Value::Flag(b));
        }
        4 => {
            let mut n = 0.0;
            double::merge(wt, &mut n, buf, ctx)?;
            *v = Some(Value::Number(n));
        }
        5 => {
            let mut values = match v.take() {
                Some(Value::List(values)) => values,
                _ => Vec::new(),
            };
            message(wt, &mut values, buf, ctx, string_list)?;
            *v = Some(Value::List(values));
        }
        _ => skip_field(wt, tag, buf, ctx)?,
    }
    Ok(())
}

fn string_list(
    values: &mut Vec<String>,
    tag: u32,
    wt: WireType,
    buf: &mut &[u8],
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    match tag {
        1 => {
            let mut value = String::new();
            text(wt, &mut value, buf, ctx)?;
            values.push(value);
            Ok(())
        }
        _ => skip_field(wt, tag, buf, ctx),
    }
}

/// A string field, as `string::merge` reads it: the usual case — the whole value in the
/// buffer and valid UTF-8 — straight from the slice (prost goes through its `Buf` adapters
/// byte run by byte run), anything else through prost itself, for the same error.
fn text(wt: WireType, value: &mut String, buf: &mut &[u8], ctx: DecodeContext) -> Result<(), DecodeError> {
    if wt == WireType::LengthDelimited {
        let mut rest = *buf;
        let whole = decode_varint(&mut rest).ok().and_then(|len| rest.split_at_checked(usize::try_from(len).ok()?));
        if let Some((bytes, rest)) = whole
            && let Ok(s) = std::str::from_utf8(bytes)
        {
            value.clear();
            value.push_str(s);
            *buf = rest;
            return Ok(());
        }
    }
    string::merge(wt, value, buf, ctx)
}

/// The codec of a call whose request is read by [`FromWire`] and whose answer is a prost
/// message. Decoding errors are `INTERNAL`, as with the generated codec.
#[derive(Debug)]
pub struct WireCodec<D, E>(PhantomData<fn(E) -> D>);

impl<D, E> Default for WireCodec<D, E> {
    fn default() -> Self {
        WireCodec(PhantomData)
    }
}

impl<D, E> Codec for WireCodec<D, E>
where
    D: FromWire + Send + 'static,
    E: prost::Message + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = tonic_prost::ProstEncoder<E>;
    type Decoder = WireDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        WireDecoder(PhantomData)
    }
}

/// Reads a [`FromWire`] message from tonic's buffer.
#[derive(Debug)]
pub struct WireDecoder<D>(PhantomData<fn() -> D>);

impl<D: FromWire + Send + 'static> Decoder for WireDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let len = buf.remaining();
        // tonic collects a message into one buffer; copy only if it ever arrives in pieces.
        let decoded = if buf.chunk().len() == len {
            let decoded = D::decode(buf.chunk());
            buf.advance(len);
            decoded
        } else {
            D::decode(&buf.copy_to_bytes(len))
        };
        decoded.map(Some).map_err(|e| Status::internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;
    use prost::Message;

    use super::*;
    use api::attr_value::Kind;

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            ".{0,6}".prop_map(Kind::Text),
            any::<i64>().prop_map(Kind::Int),
            any::<bool>().prop_map(Kind::Flag),
            any::<f64>().prop_map(Kind::Number),
            proptest::collection::vec(".{0,4}", 0..3).prop_map(|values| Kind::List(api::StringList { values })),
        ]
    }

    fn attrs() -> impl Strategy<Value = HashMap<String, api::AttrValue>> {
        proptest::collection::hash_map(
            "[a-c]{0,2}",
            proptest::option::of(kind()).prop_map(|kind| api::AttrValue { kind }),
            0..4,
        )
    }

    fn resource() -> impl Strategy<Value = api::Resource> {
        (".{0,4}", ".{0,4}", ".{0,4}", attrs()).prop_map(|(kind, id, unit, attrs)| api::Resource {
            kind,
            id,
            unit,
            attrs,
        })
    }

    fn context() -> impl Strategy<Value = api::Context> {
        (".{0,4}", attrs()).prop_map(|(client_ip, attrs)| api::Context { client_ip, attrs })
    }

    fn check() -> impl Strategy<Value = api::CheckRequest> {
        (".{0,4}", ".{0,4}", ".{0,4}", proptest::option::of(resource()), proptest::option::of(context()), any::<u64>())
            .prop_map(|(tenant, principal, action, resource, context, min_revision)| api::CheckRequest {
                tenant,
                principal,
                action,
                resource,
                context,
                min_revision,
            })
    }

    fn batch() -> impl Strategy<Value = api::CheckBatchRequest> {
        let item = (".{0,4}", proptest::option::of(resource()))
            .prop_map(|(action, resource)| api::BatchItem { action, resource });
        (".{0,4}", ".{0,4}", proptest::option::of(context()), any::<u64>(), proptest::collection::vec(item, 0..3))
            .prop_map(|(tenant, principal, context, min_revision, items)| api::CheckBatchRequest {
                tenant,
                principal,
                context,
                min_revision,
                items,
            })
    }

    /// What the limits see, attributes in one order: equal for equal requests.
    fn settled<T: Into<CheckCall>>(r: T) -> CheckCall {
        let mut c = r.into();
        for attrs in
            [c.resource.as_mut().map(|r| &mut r.attrs), c.context.as_mut().map(|c| &mut c.attrs)].into_iter().flatten()
        {
            super::super::last_of_each_name(attrs);
        }
        c
    }

    fn settled_batch<T: Into<BatchCall>>(r: T) -> BatchCall {
        let mut b = r.into();
        let resources = b.items.iter_mut().filter_map(|(_, r)| r.as_mut()).map(|r| &mut r.attrs);
        for attrs in resources.chain(b.context.as_mut().map(|c| &mut c.attrs)) {
            super::super::last_of_each_name(attrs);
        }
        b
    }

    /// Either both decoders fail, or both give the same call (NaN compared by its bits).
    fn agree<A: FromWire + std::fmt::Debug, G: Message + Default>(
        bytes: &[u8],
        settle_a: impl Fn(A) -> A,
        settle_g: impl Fn(G) -> A,
    ) -> Result<(), TestCaseError> {
        let ours = A::decode(bytes).map(settle_a);
        let generated = G::decode(bytes).map(settle_g);
        match (ours, generated) {
            (Ok(a), Ok(g)) => prop_assert_eq!(format!("{a:?}"), format!("{g:?}")),
            (Err(_), Err(_)) => {}
            (a, g) => prop_assert!(false, "disagree on {:?}: ours {:?}, generated {:?}", bytes, a, g.map(|_| ())),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn any_check_request_decodes_as_the_generated_decoder_reads_it(r in check()) {
            let bytes = r.encode_to_vec();
            let ours = settled(CheckCall::decode(&bytes).unwrap());
            prop_assert_eq!(format!("{ours:?}"), format!("{:?}", settled(r)));
        }

        #[test]
        fn any_batch_request_decodes_as_the_generated_decoder_reads_it(r in batch()) {
            let bytes = r.encode_to_vec();
            let ours = settled_batch(BatchCall::decode(&bytes).unwrap());
            prop_assert_eq!(format!("{ours:?}"), format!("{:?}", settled_batch(r)));
        }

        /// Messages cut, spliced and flipped anywhere, repeated fields and messages included.
        #[test]
        fn any_bytes_are_accepted_or_refused_as_the_generated_decoder_does(
            a in check(), b in check(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(),
            bit in 0u8..8, junk in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut bytes = a.encode_to_vec();
            bytes.extend(b.encode_to_vec());
            if !bytes.is_empty() {
                let i = flip.index(bytes.len());
                bytes[i] ^= 1 << bit;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            bytes.extend(junk);
            agree(&bytes, settled, settled::<api::CheckRequest>)?;
            agree(&bytes, settled_batch, settled_batch::<api::CheckBatchRequest>)?;
        }
    }

    #[test]
    fn repeated_fields_merge_as_protobuf_says() {
        use api::AttrValue;
        let first = api::CheckRequest {
            tenant: "t1".into(),
            resource: Some(api::Resource {
                kind: "conversation".into(),
                attrs: HashMap::from([
                    ("tags".into(), AttrValue { kind: Some(Kind::List(api::StringList { values: vec!["a".into()] })) }),
                    ("n".into(), AttrValue { kind: Some(Kind::Int(1)) }),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let second = api::CheckRequest {
            tenant: "t2".into(),
            resource: Some(api::Resource {
                id: "c1".into(),
                attrs: HashMap::from([("n".into(), AttrValue { kind: Some(Kind::Text("two".into())) })]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut bytes = first.encode_to_vec();
        bytes.extend(second.encode_to_vec());
        let c = settled(CheckCall::decode(&bytes).unwrap());
        assert_eq!(c.tenant, "t2");
        let r = c.resource.unwrap();
        assert_eq!((r.kind.as_str(), r.id.as_str()), ("conversation", "c1"));
        assert_eq!(
            r.attrs,
            vec![
                ("n".to_owned(), Some(Value::Text("two".into()))),
                ("tags".to_owned(), Some(Value::List(vec!["a".into()]))),
            ]
        );
    }

    /// Found by the `check_request` fuzz target: an attribute map entry sent as a varint.
    #[test]
    fn a_map_entry_with_the_wrong_wire_type_is_refused() {
        // resource { kind: "k", attrs (field 4) as varint 3, then 3 bytes of an entry }
        let bytes = [0x22, 0x08, 0x0a, 0x01, b'k', 0x20, 0x03, 0x0a, 0x01, b'f'];
        assert!(api::CheckRequest::decode(&bytes[..]).is_err());
        assert!(CheckCall::decode(&bytes).is_err());
        // context { attrs (field 2) as varint }
        let bytes = [0x2a, 0x05, 0x10, 0x03, 0x0a, 0x01, b'f'];
        assert!(api::CheckRequest::decode(&bytes[..]).is_err());
        assert!(CheckCall::decode(&bytes).is_err());
    }

    #[test]
    fn a_string_that_is_not_utf8_or_runs_past_the_end_is_refused() {
        // tenant = "\xff"
        assert!(CheckCall::decode(&[0x0a, 0x01, 0xff]).is_err());
        assert!(api::CheckRequest::decode(&[0x0a, 0x01, 0xff][..]).is_err());
        // tenant of 5 bytes, 2 sent
        assert!(CheckCall::decode(&[0x0a, 0x05, b'a', b'b']).is_err());
        // tenant sent as a varint
        assert!(CheckCall::decode(&[0x08, 0x01]).is_err());
    }
}
