//! Protobuf ⇄ domain types, with the request limits. The only place wire types are touched.

use std::borrow::Cow;
use std::collections::HashMap;

use crate as api;
use rolegate_engine::{Attrs, Context, Decision, Reason, Request, Resource, Value, canonical_ip};

mod inspect;
pub mod wire;
pub use inspect::{grant, grant_from_wire, step, step_from_wire};

/// Explicit, documented limits on request sizes and counts.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Items in one `CheckBatch`.
    pub max_batch_items: usize,
    /// Attributes on one resource or context.
    pub max_attrs: usize,
    /// Values in one list attribute.
    pub max_list_len: usize,
    /// Bytes in one id, name or text value.
    pub max_string_bytes: usize,
    /// Bytes in one encoded request message.
    pub max_message_bytes: usize,
    /// Members in one `Who` page (`page_size`); 0 asks for [`DEFAULT_PAGE_SIZE`].
    pub max_page_size: usize,
}

/// Members in a `Who` page when the request leaves `page_size` at 0.
pub const DEFAULT_PAGE_SIZE: usize = 100;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch_items: 1000,
            max_attrs: 64,
            max_list_len: 256,
            max_string_bytes: 1024,
            max_message_bytes: 4 << 20,
            max_page_size: 1000,
        }
    }
}

/// A field the caller got wrong; becomes `INVALID_ARGUMENT` naming the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// The offending field, e.g. `resource.attrs[tags]`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Characters of caller input echoed in an error message: a longer echo (a 1 MiB attribute
/// name) would make `grpc-message` too large for clients to accept.
pub const ECHO_CHARS: usize = 128;

/// `s` cut to at most `max` characters (on a character boundary), `…` marking the cut.
pub fn shorten(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((end, _)) => Cow::Owned(format!("{}…", s.get(..end).unwrap_or_default())),
    }
}

/// Caller input as it is echoed in an error message.
pub fn echo(s: &str) -> Cow<'_, str> {
    shorten(s, ECHO_CHARS)
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid { field: field.into(), message: message.into() }
}

impl Limits {
    /// The problem with a string, if any: empty when required, or over the size limit.
    fn check(&self, s: &str, required: bool) -> Result<(), String> {
        if required && s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > self.max_string_bytes {
            return Err(format!("is {} bytes, the limit is {}", s.len(), self.max_string_bytes));
        }
        Ok(())
    }

    /// The problem with a required id, if any.
    pub fn check_id(&self, s: &str) -> Result<(), String> {
        self.check(s, true)
    }

    /// Checks a required id.
    pub fn id(&self, field: &str, s: &str) -> Result<(), Invalid> {
        self.check(s, true).map_err(|m| invalid(field, m))
    }

    /// Converts a resource (as generated or as decoded by [`wire`]). `field` names it in errors;
    /// it is only built when one occurs, so a valid request allocates no field names.
    pub fn resource(&self, field: &dyn Fn() -> String, r: Option<impl Into<RawResource>>) -> Result<Resource, Invalid> {
        let Some(RawResource { kind, id, unit, attrs }) = r.map(Into::into) else {
            return Err(invalid(field(), "is required"));
        };
        self.check(&kind, true).map_err(|m| invalid(format!("{}.kind", field()), m))?;
        self.check(&id, true).map_err(|m| invalid(format!("{}.id", field()), m))?;
        self.check(&unit, false).map_err(|m| invalid(format!("{}.unit", field()), m))?;
        Ok(Resource { kind, id, unit, attrs: self.attrs(&|| format!("{}.attrs", field()), attrs)? })
    }

    /// Converts a context (as generated or as decoded by [`wire`]); the IP must parse when given
    /// and is made canonical (an IPv4-mapped address becomes its IPv4 address), so decisions and
    /// cache keys see one form.
    pub fn context(&self, field: &str, c: Option<impl Into<RawContext>>) -> Result<Context, Invalid> {
        let Some(RawContext { client_ip, attrs }) = c.map(Into::into) else { return Ok(Context::default()) };
        self.check(&client_ip, false).map_err(|m| invalid(format!("{field}.client_ip"), m))?;
        let client_ip =
            match client_ip.as_str() {
                "" => None,
                ip => Some(ip.parse().map(canonical_ip).map_err(|_| {
                    invalid(format!("{field}.client_ip"), format!("`{}` is not an IP address", echo(ip)))
                })?),
            };
        Ok(Context { client_ip, attrs: self.attrs(&|| format!("{field}.attrs"), attrs)? })
    }

    fn attrs(&self, field: &dyn Fn() -> String, mut attrs: RawAttrs) -> Result<Attrs, Invalid> {
        last_of_each_name(&mut attrs);
        if attrs.len() > self.max_attrs {
            return Err(invalid(field(), format!("has {} attributes, the limit is {}", attrs.len(), self.max_attrs)));
        }
        // Converted in place: collecting from the request's own vector reuses its buffer.
        let out = attrs
            .into_iter()
            .map(|(name, value)| {
                let f = || format!("{}[{}]", field(), echo(&name));
                if name.is_empty() {
                    return Err(invalid(field(), "attribute names must not be empty"));
                }
                self.check(&name, false).map_err(|m| invalid(f(), m))?;
                let Some(value) = value else { return Err(invalid(f(), "value is not set")) };
                match &value {
                    Value::Text(t) => self.check(t, false).map_err(|m| invalid(f(), m))?,
                    Value::Number(n) if !n.is_finite() => return Err(invalid(f(), "number must be finite")),
                    Value::List(values) => {
                        if values.len() > self.max_list_len {
                            let msg = format!("list has {} values, the limit is {}", values.len(), self.max_list_len);
                            return Err(invalid(f(), msg));
                        }
                        for v in values {
                            self.check(v, false).map_err(|m| invalid(f(), m))?;
                        }
                    }
                    Value::Int(_) | Value::Flag(_) | Value::Number(_) => {}
                }
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, Invalid>>()?;
        Ok(Attrs(out))
    }
}

/// A resource as it came off the wire, before [`Limits::resource`] checks it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawResource {
    /// `kind`.
    pub kind: String,
    /// `id`.
    pub id: String,
    /// `unit`.
    pub unit: String,
    /// `attrs`.
    pub attrs: RawAttrs,
}

/// A context as it came off the wire, before [`Limits::context`] checks it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawContext {
    /// `client_ip`.
    pub client_ip: String,
    /// `attrs`.
    pub attrs: RawAttrs,
}

/// Attributes as they came off the wire: a name may repeat (the last one counts, as for a
/// protobuf map) and a value may be unset.
pub type RawAttrs = Vec<(String, Option<Value>)>;

/// Keeps the last entry of each name, as a protobuf map does, sorted by name.
fn last_of_each_name(attrs: &mut RawAttrs) {
    if attrs.len() < 2 {
        return;
    }
    // Stable: entries of one name stay in wire order, so the kept one is the last sent.
    attrs.sort_by(|a, b| a.0.cmp(&b.0));
    attrs.dedup_by(|next, kept| {
        let same = next.0 == kept.0;
        if same {
            std::mem::swap(next, kept);
        }
        same
    });
}

impl From<api::Resource> for RawResource {
    fn from(api::Resource { kind, id, unit, attrs }: api::Resource) -> Self {
        RawResource { kind, id, unit, attrs: raw_attrs(attrs) }
    }
}

impl From<api::Context> for RawContext {
    fn from(api::Context { client_ip, attrs }: api::Context) -> Self {
        RawContext { client_ip, attrs: raw_attrs(attrs) }
    }
}

fn raw_attrs(attrs: HashMap<String, api::AttrValue>) -> RawAttrs {
    attrs.into_iter().map(|(name, v)| (name, v.kind.map(value_from_wire))).collect()
}

/// The engine's reading of a wire attribute value; a non-finite number is kept, for
/// [`Limits::resource`] to refuse.
pub(crate) fn value_from_wire(kind: api::attr_value::Kind) -> Value {
    use api::attr_value::Kind;
    match kind {
        Kind::Text(t) => Value::Text(t),
        Kind::Int(i) => Value::Int(i),
        Kind::Flag(b) => Value::Flag(b),
        Kind::Number(n) => Value::Number(n),
        Kind::List(api::StringList { values }) => Value::List(values),
    }
}

/// The wire reason.
pub fn reason(r: Reason) -> api::Reason {
    match r {
        Reason::Granted => api::Reason::Granted,
        Reason::NoGrant => api::Reason::NoGrant,
        Reason::DeniedByRule => api::Reason::DeniedByRule,
        Reason::UnknownTenant => api::Reason::UnknownTenant,
        Reason::UnknownPrincipal => api::Reason::UnknownPrincipal,
        Reason::PrincipalDisabled => api::Reason::PrincipalDisabled,
        Reason::PrincipalExpired => api::Reason::PrincipalExpired,
    }
}

/// The wire instant.
pub fn timestamp(t: jiff::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.as_second(), nanos: t.subsec_nanosecond() }
}

/// The wire decision.
pub fn decision(d: &Decision) -> api::Decision {
    api::Decision {
        allowed: d.allowed,
        reason: reason(d.reason) as i32,
        rule: d.rule.as_deref().unwrap_or_default().to_owned(),
        mask: d.mask.iter().map(|m| m.to_string()).collect(),
        review: d.review,
        requestable: d.requestable,
        valid_until: d.valid_until.map(timestamp),
        cache_until: d.cache_until.map(timestamp),
        alert: d.alert,
        message: d.message.as_deref().unwrap_or_default().to_owned(),
    }
}

/// The wire form of a request, for clients (`rolegate check --server`, tests).
pub fn request(req: &Request) -> api::CheckRequest {
    let Request { tenant, principal, action, resource, context } = req;
    let Resource { kind, id, unit, attrs } = resource;
    api::CheckRequest {
        tenant: tenant.clone(),
        principal: principal.clone(),
        action: action.clone(),
        resource: Some(api::Resource {
            kind: kind.clone(),
            id: id.clone(),
            unit: unit.clone(),
            attrs: wire_attrs(attrs),
        }),
        context: Some(api::Context {
            client_ip: context.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            attrs: wire_attrs(&context.attrs),
        }),
        min_revision: 0,
    }
}

fn wire_attrs(attrs: &Attrs) -> HashMap<String, api::AttrValue> {
    use api::attr_value::Kind;
    let wire = |v: &Value| match v {
        Value::Text(t) => Kind::Text(t.clone()),
        Value::Int(i) => Kind::Int(*i),
        Value::Flag(b) => Kind::Flag(*b),
        Value::Number(n) => Kind::Number(*n),
        Value::List(l) => Kind::List(api::StringList { values: l.clone() }),
    };
    attrs.0.iter().map(|(k, v)| (k.clone(), api::AttrValue { kind: Some(wire(v)) })).collect()
}

/// A decision read back from the wire, for clients: every field, so a new one breaks the build
/// until it is handled.
pub fn decision_from_wire(d: api::Decision) -> Result<Decision, Invalid> {
    let api::Decision { allowed, reason, rule, mask, review, requestable, valid_until, alert, message, cache_until } =
        d;
    let reason = match api::Reason::try_from(reason) {
        Ok(api::Reason::Granted) => Reason::Granted,
        Ok(api::Reason::NoGrant) => Reason::NoGrant,
        Ok(api::Reason::DeniedByRule) => Reason::DeniedByRule,
        Ok(api::Reason::UnknownTenant) => Reason::UnknownTenant,
        Ok(api::Reason::UnknownPrincipal) => Reason::UnknownPrincipal,
        Ok(api::Reason::PrincipalDisabled) => Reason::PrincipalDisabled,
        Ok(api::Reason::PrincipalExpired) => Reason::PrincipalExpired,
        Ok(api::Reason::Unspecified) | Err(_) => {
            return Err(invalid("decision.reason", format!("unknown reason {reason}")));
        }
    };
    let instant = |field: &str, t: Option<prost_types::Timestamp>| {
        t.map(|t| jiff::Timestamp::new(t.seconds, t.nanos))
            .transpose()
            .map_err(|e| invalid(format!("decision.{field}"), e.to_string()))
    };
    Ok(Decision {
        allowed,
        reason,
        rule: (!rule.is_empty()).then(|| rule.into()),
        mask: mask.into_iter().map(Into::into).collect(),
        review,
        requestable,
        alert,
        message: (!message.is_empty()).then(|| message.into()),
        valid_until: instant("valid_until", valid_until)?,
        cache_until: instant("cache_until", cache_until)?,
    })
}

/// A reason read back from the wire; `None` for `REASON_UNSPECIFIED` or an unknown number.
pub fn reason_from_wire(r: i32) -> Option<Reason> {
    Reason::ALL.into_iter().find(|x| reason(*x) as i32 == r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_are_cut_on_a_character_boundary() {
        assert_eq!(echo("short"), "short");
        let long = "é".repeat(ECHO_CHARS + 1);
        let cut = echo(&long);
        assert_eq!(cut.chars().count(), ECHO_CHARS + 1);
        assert!(cut.ends_with("é…"));
        assert_eq!(echo(&"x".repeat(ECHO_CHARS)).len(), ECHO_CHARS);
    }

    #[test]
    fn a_huge_attribute_name_or_client_ip_is_refused_with_a_short_message() {
        let l = Limits::default();
        let name = "n".repeat(1 << 20);
        let attrs = HashMap::from([(name, api::AttrValue { kind: Some(api::attr_value::Kind::Int(1)) })]);
        let e = l.context("context", Some(api::Context { client_ip: String::new(), attrs })).unwrap_err();
        assert!(e.to_string().len() < 300, "{}", e.to_string().len());
        assert!(e.to_string().ends_with("…]: is 1048576 bytes, the limit is 1024"), "{e}");
        let ip = "1".repeat(20_000);
        let e = l.context("context", Some(api::Context { client_ip: ip, attrs: HashMap::new() })).unwrap_err();
        assert_eq!(e.to_string(), "context.client_ip: is 20000 bytes, the limit is 1024");
    }
}
