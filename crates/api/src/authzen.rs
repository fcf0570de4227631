//! AuthZEN JSON bodies ⇄ rolegate's request and decision types (docs/api.md, "AuthZEN over
//! HTTP"). Every error names the field as the caller wrote it (`evaluations[2].resource.type`);
//! unknown keys are ignored, as the spec asks. The server's AuthZEN listener decides what these
//! return through the same path as `Check`.

use std::collections::HashMap;

#[cfg(test)]
use serde_json::json;
use serde_json::{Map, Value};

use crate as api;
use crate::convert::{Invalid, echo};

type Object = Map<String, Value>;

/// When an evaluations call stops (AuthZEN `options.evaluations_semantic`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Semantic {
    /// Decide every item.
    #[default]
    ExecuteAll,
    /// Stop after the first item that is not allowed.
    DenyOnFirstDeny,
    /// Stop after the first item that is allowed.
    PermitOnFirstPermit,
}

/// One question of an evaluations call, with the defaults already merged in.
#[derive(Clone, Debug, Default)]
pub struct Item {
    /// `subject.id`: the member.
    pub principal: String,
    /// `resource.type` + `.` + `action.name`.
    pub action: String,
    /// The resource.
    pub resource: Option<api::Resource>,
    /// The context.
    pub context: Option<api::Context>,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid { field: field.into(), message: message.into() }
}

/// The body as a JSON object.
pub fn body(bytes: &[u8]) -> Result<Object, Invalid> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(invalid("body", "must be a JSON object")),
        Err(e) => Err(invalid("body", format!("is not valid JSON: {e}"))),
    }
}

/// `obj[key]` as an object; `None` when absent or null.
fn object<'a>(obj: &'a Object, key: &str, field: &dyn Fn() -> String) -> Result<Option<&'a Object>, Invalid> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(invalid(field(), "must be an object")),
    }
}

/// `obj[key]` as a string; `None` when absent or null.
fn string<'a>(obj: &'a Object, key: &str, field: &dyn Fn() -> String) -> Result<Option<&'a str>, Invalid> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(field(), "must be a string")),
    }
}

/// `obj[key]` as a non-empty string.
fn required(obj: &Object, key: &str, field: &dyn Fn() -> String) -> Result<String, Invalid> {
    match string(obj, key, field)? {
        None => Err(invalid(field(), "is required")),
        Some("") => Err(invalid(field(), "must not be empty")),
        Some(s) => Ok(s.to_owned()),
    }
}

/// A subject: `type` is required by the spec and otherwise unused; `id` is the member when
/// `with_id`; `properties` are ignored: the member directory says who a member is.
fn subject(o: &Object, field: &str, with_id: bool) -> Result<(String, String), Invalid> {
    let kind = required(o, "type", &|| format!("{field}.type"))?;
    let id = if with_id { required(o, "id", &|| format!("{field}.id"))? } else { String::new() };
    Ok((kind, id))
}

/// A resource: `type` is the kind, `properties` its attributes, `properties.unit` its unit.
fn resource(o: &Object, field: &str) -> Result<api::Resource, Invalid> {
    let kind = required(o, "type", &|| format!("{field}.type"))?;
    let id = required(o, "id", &|| format!("{field}.id"))?;
    let props_field = || format!("{field}.properties");
    let mut unit = String::new();
    let mut attrs = HashMap::new();
    if let Some(props) = object(o, "properties", &props_field)? {
        for (name, v) in props {
            let f = || format!("{field}.properties[{}]", echo(name));
            if name == "unit" {
                unit = string(props, name, &f)?.unwrap_or_default().to_owned();
            } else if let Some(v) = attr(v, &f)? {
                attrs.insert(name.clone(), v);
            }
        }
    }
    Ok(api::Resource { kind, id, unit, attrs })
}

/// A context: its keys are context attributes, `client_ip` the caller's address.
fn context(o: &Object, field: &str) -> Result<api::Context, Invalid> {
    let mut ctx = api::Context::default();
    for (name, v) in o {
        let f = || format!("{field}[{}]", echo(name));
        if name == "client_ip" {
            ctx.client_ip = string(o, name, &f)?.unwrap_or_default().to_owned();
        } else if let Some(v) = attr(v, &f)? {
            ctx.attrs.insert(name.clone(), v);
        }
    }
    Ok(ctx)
}

/// A JSON value as an attribute: text, integer, number, boolean or a list of texts; `null` is
/// absent. Nested objects are refused rather than dropped: a rule reading a dropped attribute
/// would see it missing and could decide differently than the caller meant.
fn attr(v: &Value, field: &dyn Fn() -> String) -> Result<Option<api::AttrValue>, Invalid> {
    use api::attr_value::Kind;
    let kind = match v {
        Value::Null => return Ok(None),
        Value::String(s) => Kind::Text(s.clone()),
        Value::Bool(b) => Kind::Flag(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Kind::Int(i),
            (None, Some(f)) => Kind::Number(f),
            (None, None) => return Err(invalid(field(), "number out of range")),
        },
        Value::Array(items) => {
            let mut values = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => values.push(s.clone()),
                    _ => return Err(invalid(field(), "a list may hold only strings")),
                }
            }
            Kind::List(api::StringList { values })
        }
        Value::Object(_) => return Err(invalid(field(), "nested objects are not supported")),
    };
    Ok(Some(api::AttrValue { kind: Some(kind) }))
}

/// The parts of one evaluation, each possibly absent (an evaluations item falls back to the
/// top-level value).
#[derive(Clone, Debug, Default)]
struct Parts {
    subject: Option<String>,
    action: Option<String>,
    resource: Option<api::Resource>,
    context: Option<api::Context>,
}

fn parts(o: &Object, prefix: &str) -> Result<Parts, Invalid> {
    let name = |k: &str| format!("{prefix}{k}");
    let subject = match object(o, "subject", &|| name("subject"))? {
        Some(s) => Some(subject(s, &name("subject"), true)?.1),
        None => None,
    };
    let action = match object(o, "action", &|| name("action"))? {
        Some(a) => Some(required(a, "name", &|| name("action.name"))?),
        None => None,
    };
    let resource = match object(o, "resource", &|| name("resource"))? {
        Some(r) => Some(resource(r, &name("resource"))?),
        None => None,
    };
    let context = match object(o, "context", &|| name("context"))? {
        Some(c) => Some(context(c, &name("context"))?),
        None => None,
    };
    Ok(Parts { subject, action, resource, context })
}

/// An item from its parts and the defaults; `prefix` names it in errors.
fn item(p: Parts, defaults: &Parts, prefix: &str) -> Result<Item, Invalid> {
    let missing = |k: &str| invalid(format!("{prefix}{k}"), "is required");
    let principal = p.subject.or_else(|| defaults.subject.clone()).ok_or_else(|| missing("subject"))?;
    let verb = p.action.or_else(|| defaults.action.clone()).ok_or_else(|| missing("action"))?;
    let resource = p.resource.or_else(|| defaults.resource.clone()).ok_or_else(|| missing("resource"))?;
    let context = p.context.or_else(|| defaults.context.clone());
    let action = format!("{}.{verb}", resource.kind);
    Ok(Item { principal, action, resource: Some(resource), context })
}

/// An Access Evaluation request.
pub fn evaluation(o: &Object) -> Result<Item, Invalid> {
    item(parts(o, "")?, &Parts::default(), "")
}

/// The Access Evaluation body that asks what `req` asks: the inverse of [`evaluation`] for a
/// clean request. `resource.kind` is the type, the action's verb the name, the unit a property
/// and `client_ip` a context key. For clients and tests that speak AuthZEN beside gRPC.
pub fn evaluation_body(req: &api::CheckRequest) -> Value {
    let api::CheckRequest { tenant: _, principal, action, resource, context, min_revision: _ } = req;
    let mut props = Object::new();
    let (kind, id) = match resource {
        Some(r) => {
            props.extend(r.attrs.iter().map(|(k, v)| (k.clone(), attr_json(v))));
            if !r.unit.is_empty() {
                props.insert("unit".into(), Value::String(r.unit.clone()));
            }
            (r.kind.as_str(), r.id.as_str())
        }
        None => ("", ""),
    };
    let mut ctx = Object::new();
    if let Some(c) = context {
        ctx.extend(c.attrs.iter().map(|(k, v)| (k.clone(), attr_json(v))));
        if !c.client_ip.is_empty() {
            ctx.insert("client_ip".into(), Value::String(c.client_ip.clone()));
        }
    }
    let verb = action.split_once('.').map_or(action.as_str(), |(_, v)| v);
    let mut body = Object::new();
    body.insert("subject".into(), object_of([("type", "user".into()), ("id", principal.as_str().into())]));
    body.insert("action".into(), object_of([("name", verb.into())]));
    body.insert(
        "resource".into(),
        object_of([("type", kind.into()), ("id", id.into()), ("properties", Value::Object(props))]),
    );
    body.insert("context".into(), Value::Object(ctx));
    Value::Object(body)
}

fn object_of<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// An attribute as JSON, the way [`attr`] reads it back; an unset value is `null` (absent).
fn attr_json(v: &api::AttrValue) -> Value {
    use api::attr_value::Kind;
    match &v.kind {
        Some(Kind::Text(t)) => Value::String(t.clone()),
        Some(Kind::Int(i)) => Value::from(*i),
        Some(Kind::Flag(b)) => Value::Bool(*b),
        Some(Kind::Number(n)) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Some(Kind::List(l)) => Value::Array(l.values.iter().cloned().map(Value::String).collect()),
        None => Value::Null,
    }
}

/// An Access Evaluations request: its items with the top-level defaults merged in, and its
/// semantic. Without an `evaluations` array (or with an empty one) it is a single evaluation,
/// returned as `None`.
pub fn evaluations(o: &Object, max_items: usize) -> Result<Option<(Vec<Item>, Semantic)>, Invalid> {
    let list = match o.get("evaluations") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) if list.is_empty() => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(invalid("evaluations", "must be an array")),
    };
    if list.len() > max_items {
        return Err(invalid("evaluations", format!("has {} items, the limit is {max_items}", list.len())));
    }
    let defaults = parts(o, "")?;
    let semantic = match object(o, "options", &|| "options".into())? {
        None => Semantic::ExecuteAll,
        Some(opts) => match string(opts, "evaluations_semantic", &|| "options.evaluations_semantic".into())? {
            None | Some("execute_all") => Semantic::ExecuteAll,
            Some("deny_on_first_deny") => Semantic::DenyOnFirstDeny,
            Some("permit_on_first_permit") => Semantic::PermitOnFirstPermit,
            Some(other) => {
                let message = format!(
                    "unknown semantic `{}` (execute_all, deny_on_first_deny or permit_on_first_permit)",
                    echo(other)
                );
                return Err(invalid("options.evaluations_semantic", message));
            }
        },
    };
    let mut items = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let prefix = format!("evaluations[{i}].");
        let Value::Object(e) = v else {
            return Err(invalid(format!("evaluations[{i}]"), "must be an object"));
        };
        items.push(item(parts(e, &prefix)?, &defaults, &prefix)?);
    }
    Ok(Some((items, semantic)))
}

/// A Subject Search request: the subject type, the item to decide for each member (its
/// principal empty), and the page.
pub struct SubjectSearch {
    /// `subject.type`, echoed in the results.
    pub subject_type: String,
    /// The action, resource and context.
    pub item: Item,
    /// `page.token`, empty on the first page.
    pub token: String,
    /// `page.limit`, when given.
    pub limit: Option<u64>,
}

/// A Subject Search request; `subject.id` is ignored, as the spec says.
pub fn subject_search(o: &Object) -> Result<SubjectSearch, Invalid> {
    let s = object(o, "subject", &|| "subject".into())?.ok_or_else(|| invalid("subject", "is required"))?;
    let (subject_type, _) = subject(s, "subject", false)?;
    let mut p = parts(&without(o, "subject"), "")?;
    p.subject = Some(String::new());
    let item = item(p, &Parts::default(), "")?;
    let (token, limit) = page(o)?;
    Ok(SubjectSearch { subject_type, item, token, limit })
}

/// An Action Search request: the subject, resource and context (no action).
pub fn action_search(o: &Object) -> Result<(String, api::Resource, Option<api::Context>), Invalid> {
    let p = parts(&without(o, "action"), "")?;
    let subject = p.subject.ok_or_else(|| invalid("subject", "is required"))?;
    let resource = p.resource.ok_or_else(|| invalid("resource", "is required"))?;
    Ok((subject, resource, p.context))
}

fn without(o: &Object, key: &str) -> Object {
    o.iter().filter(|(k, _)| *k != key).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// `page.token` and `page.limit`.
fn page(o: &Object) -> Result<(String, Option<u64>), Invalid> {
    let Some(p) = object(o, "page", &|| "page".into())? else { return Ok((String::new(), None)) };
    let token = string(p, "token", &|| "page.token".into())?.unwrap_or_default().to_owned();
    let limit = match p.get("limit") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| invalid("page.limit", "must be a non-negative integer"))?),
    };
    Ok((token, limit))
}

/// A decision as AuthZEN returns it: `decision` first, and rolegate's answer in `context`.
#[derive(Debug, serde::Serialize)]
pub struct DecisionJson<'a> {
    decision: bool,
    context: DecisionContext<'a>,
}

/// A Subject Search response: the page first, as the spec recommends.
#[derive(Debug, serde::Serialize)]
pub struct Search<'a> {
    /// Where the listing continues.
    pub page: PageOut<'a>,
    /// The members of this page.
    pub results: Vec<Subject<'a>>,
    /// The tenant's revision.
    pub context: Revision,
}

/// A response page: `next_token` is empty on the last.
#[derive(Debug, serde::Serialize)]
pub struct PageOut<'a> {
    /// Pass as `page.token` for the next page.
    pub next_token: &'a str,
}

/// One subject found.
#[derive(Debug, serde::Serialize)]
pub struct Subject<'a> {
    /// The request's `subject.type`.
    pub r#type: &'a str,
    /// The member id.
    pub id: &'a str,
}

/// An Action Search response, in one page.
#[derive(Debug, serde::Serialize)]
pub struct Actions<'a> {
    /// Always the last page.
    pub page: PageOut<'a>,
    /// The allowed actions.
    pub results: Vec<Action<'a>>,
    /// The tenant's revision.
    pub context: Revision,
}

/// One action found: its verb.
#[derive(Debug, serde::Serialize)]
pub struct Action<'a> {
    /// The verb, as `action.name` names it.
    pub name: &'a str,
}

/// The revision a search was answered on.
#[derive(Debug, serde::Serialize)]
pub struct Revision {
    /// The tenant's revision.
    pub revision: u64,
}

/// An Access Evaluations response.
#[derive(Debug, serde::Serialize)]
pub struct Evaluations<'a> {
    /// One decision per item decided.
    pub evaluations: Vec<DecisionJson<'a>>,
}

/// rolegate's answer beside the boolean: empty and false fields are left out.
#[derive(Debug, serde::Serialize)]
struct DecisionContext<'a> {
    reason: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    rule: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    mask: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    review: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    requestable: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    alert: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_until: Option<String>,
    revision: u64,
}

/// A decision in AuthZEN form.
pub fn decision(d: &api::Decision, revision: u64) -> DecisionJson<'_> {
    DecisionJson {
        decision: d.allowed,
        context: DecisionContext {
            reason: d.reason().as_str_name(),
            rule: &d.rule,
            mask: &d.mask,
            review: d.review,
            requestable: d.requestable,
            alert: d.alert,
            message: &d.message,
            valid_until: d.valid_until.as_ref().and_then(instant),
            cache_until: d.cache_until.as_ref().and_then(instant),
            revision,
        },
    }
}

fn instant(t: &prost_types::Timestamp) -> Option<String> {
    jiff::Timestamp::new(t.seconds, t.nanos).ok().map(|t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Object {
        match v {
            Value::Object(o) => o,
            _ => unreachable!("test bodies are objects"),
        }
    }

    #[test]
    fn an_evaluation_body_reads_back_as_the_request_it_was_built_from() {
        use api::attr_value::Kind;
        let v = |k: Kind| api::AttrValue { kind: Some(k) };
        let req = api::CheckRequest {
            tenant: "desk".into(),
            principal: "ana".into(),
            action: "customer.export".into(),
            resource: Some(api::Resource {
                kind: "customer".into(),
                id: "cu-1".into(),
                unit: "sales-eu".into(),
                attrs: [
                    ("assignee".to_owned(), v(Kind::Text("ana".into()))),
                    ("tags".to_owned(), v(Kind::List(api::StringList { values: vec!["vip".into(), "ka".into()] }))),
                    ("depth".to_owned(), v(Kind::Int(3))),
                    ("score".to_owned(), v(Kind::Number(0.5))),
                    ("personal".to_owned(), v(Kind::Flag(true))),
                ]
                .into(),
            }),
            context: Some(api::Context {
                client_ip: "203.0.113.7".into(),
                attrs: [("active_conversations".to_owned(), v(Kind::Int(2)))].into(),
            }),
            min_revision: 0,
        };
        let body = evaluation_body(&req);
        assert_eq!(body["action"], json!({"name": "export"}));
        assert_eq!(body["resource"]["properties"]["unit"], json!("sales-eu"));
        let back = evaluation(&obj(body)).unwrap();
        assert_eq!(back.principal, req.principal);
        assert_eq!(back.action, req.action);
        assert_eq!(back.resource, req.resource);
        assert_eq!(back.context, req.context);
    }

    #[test]
    fn defaults_fill_each_missing_part_and_items_override_them() {
        let o = obj(json!({
            "subject": {"type": "user", "id": "ana"},
            "action": {"name": "view"},
            "resource": {"type": "doc", "id": "d0"},
            "context": {"channel": "web"},
            "evaluations": [
                {"resource": {"type": "doc", "id": "d1", "properties": {"unit": "sales", "tags": ["a"]}}},
                {"subject": {"type": "user", "id": "bo"}, "action": {"name": "edit"}, "context": {"n": 2}}
            ],
            "options": {"evaluations_semantic": "deny_on_first_deny", "other": 1}
        }));
        let (items, semantic) = evaluations(&o, 10).unwrap().unwrap();
        assert_eq!(semantic, Semantic::DenyOnFirstDeny);
        assert_eq!((items[0].principal.as_str(), items[0].action.as_str()), ("ana", "doc.view"));
        let r0 = items[0].resource.as_ref().unwrap();
        assert_eq!((r0.id.as_str(), r0.unit.as_str()), ("d1", "sales"));
        assert!(r0.attrs.contains_key("tags") && !r0.attrs.contains_key("unit"));
        assert!(items[0].context.as_ref().unwrap().attrs.contains_key("channel"));
        assert_eq!((items[1].principal.as_str(), items[1].action.as_str()), ("bo", "doc.edit"));
        assert_eq!(items[1].resource.as_ref().unwrap().id, "d0");
        let c1 = items[1].context.as_ref().unwrap();
        assert!(
            c1.attrs.contains_key("n") && !c1.attrs.contains_key("channel"),
            "an item's context replaces the default"
        );
    }

    #[test]
    fn errors_name_the_field_as_the_caller_wrote_it() {
        let cases = [
            (json!({"action": {"name": "v"}, "resource": {"type": "d", "id": "1"}}), "subject"),
            (
                json!({"subject": {"type": "user"}, "action": {"name": "v"}, "resource": {"type": "d", "id": "1"}}),
                "subject.id",
            ),
            (
                json!({"subject": {"type": "user", "id": "a"}, "action": {}, "resource": {"type": "d", "id": "1"}}),
                "action.name",
            ),
            (
                json!({"subject": {"type": "user", "id": "a"}, "action": {"name": "v"}, "resource": {"id": "1"}}),
                "resource.type",
            ),
            (
                json!({"subject": {"type": "user", "id": 7}, "action": {"name": "v"}, "resource": {"type": "d", "id": "1"}}),
                "subject.id",
            ),
            (
                json!({"subject": {"type": "user", "id": "a"}, "action": {"name": "v"},
                    "resource": {"type": "d", "id": "1", "properties": {"x": {"y": 1}}}}),
                "resource.properties[x]",
            ),
            (
                json!({"subject": {"type": "user", "id": "a"}, "action": {"name": "v"},
                    "resource": {"type": "d", "id": "1"}, "context": {"l": [1]}}),
                "context[l]",
            ),
        ];
        for (body, field) in cases {
            let e = evaluation(&obj(body.clone())).unwrap_err();
            assert_eq!(e.field, field, "{body}: {e}");
        }
        let batch = obj(json!({"subject": {"type": "user", "id": "a"}, "evaluations": [
            {"action": {"name": "v"}, "resource": {"type": "d", "id": "1"}},
            {"resource": {"type": "d", "id": "2"}}
        ]}));
        assert_eq!(evaluations(&batch, 10).unwrap_err().field, "evaluations[1].action");
        assert_eq!(evaluations(&batch, 1).unwrap_err().field, "evaluations");
        let semantic = obj(json!({"evaluations": [{}], "options": {"evaluations_semantic": "all"}}));
        assert_eq!(evaluations(&semantic, 10).unwrap_err().field, "options.evaluations_semantic");
    }

    #[test]
    fn bodies_that_are_not_objects_are_refused() {
        for b in [&b"[]"[..], b"\"x\"", b"{", b"", b"{\"a\":1}x"] {
            assert_eq!(body(b).unwrap_err().field, "body");
        }
        let deep = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
        assert_eq!(body(deep.as_bytes()).unwrap_err().field, "body", "serde_json's depth limit holds");
    }
}
