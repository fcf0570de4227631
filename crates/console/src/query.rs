//! The page's questions, read from a URL's query string: decoding, the resource and context of a
//! simulation, attributes as JSON objects, and the limits on all of it (docs/console.md,
//! "Limits"). Every error names the parameter.

use std::borrow::Cow;
use std::net::IpAddr;

use jiff::Timestamp;
use percent_encoding::percent_decode_str;
use rolegate_engine::{Attrs, Context, Resource, Value};
use serde_json::Value as Json;

/// Parameters in one query string.
pub const MAX_PARAMS: usize = 32;
/// Attributes on one resource or context (as for `Check`).
pub const MAX_ATTRS: usize = 64;
/// Values in one list attribute (as for `Check`).
pub const MAX_LIST_LEN: usize = 256;
/// Bytes in one id, name or text value (as for `Check`).
pub const MAX_STRING_BYTES: usize = 1024;

/// A parameter the page got wrong; answered with 400 and this message.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct BadParam {
    /// The parameter, e.g. `attrs.tags`.
    pub param: String,
    /// What is wrong with it.
    pub message: String,
}

pub(crate) fn bad(param: impl Into<String>, message: impl Into<String>) -> BadParam {
    BadParam { param: param.into(), message: message.into() }
}

/// A decoded query string.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes `a=b&c=d` (`+` is a space; percent escapes are UTF-8).
    pub fn parse(query: &str) -> Result<Params, BadParam> {
        let mut out = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            if out.len() == MAX_PARAMS {
                return Err(bad("query", format!("more than {MAX_PARAMS} parameters")));
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(k).map_err(|m| bad("query", m))?;
            let v = decode(v).map_err(|m| bad(k.clone(), m))?;
            out.push((k, v));
        }
        Ok(Params(out))
    }

    /// The value of `name`, empty when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    /// The value of `name`, which must be there and not longer than [`MAX_STRING_BYTES`].
    pub fn required(&self, name: &str) -> Result<&str, BadParam> {
        match self.get(name) {
            "" => Err(bad(name, "is required")),
            v => short(name, v),
        }
    }

    /// The value of `name`, possibly empty, not longer than [`MAX_STRING_BYTES`].
    pub fn optional(&self, name: &str) -> Result<&str, BadParam> {
        short(name, self.get(name))
    }

    /// `now`: an RFC 3339 instant, or the current time when absent.
    pub fn instant(&self) -> Result<Timestamp, BadParam> {
        match self.get("now") {
            "" => Ok(Timestamp::now()),
            s => s.parse().map_err(|_| bad("now", format!("not an RFC 3339 instant: `{}`", echo(s)))),
        }
    }

    /// The resource: `kind` (default: the action's kind), `id`, `unit` and `attrs` (a JSON object).
    pub fn resource(&self, action: &str) -> Result<Resource, BadParam> {
        let kind = match self.optional("kind")? {
            "" => action.split_once('.').map_or(action, |(k, _)| k),
            k => k,
        };
        Ok(Resource {
            kind: kind.to_owned(),
            id: self.optional("id")?.to_owned(),
            unit: self.optional("unit")?.to_owned(),
            attrs: attrs("attrs", self.get("attrs"))?,
        })
    }

    /// The context: `ip` and `ctx` (a JSON object).
    pub fn context(&self) -> Result<Context, BadParam> {
        let client_ip = match self.get("ip") {
            "" => None,
            s => Some(
                s.parse::<IpAddr>().map_err(|_| bad("ip", format!("not an IP address: `{}`", echo(s))))?.to_canonical(),
            ),
        };
        Ok(Context { client_ip, attrs: attrs("ctx", self.get("ctx"))? })
    }
}

fn decode(s: &str) -> Result<String, String> {
    let spaced: Cow<'_, str> = if s.contains('+') { s.replace('+', " ").into() } else { s.into() };
    percent_decode_str(&spaced).decode_utf8().map(Cow::into_owned).map_err(|_| "not UTF-8 after decoding".to_owned())
}

fn short<'a>(name: &str, v: &'a str) -> Result<&'a str, BadParam> {
    if v.len() > MAX_STRING_BYTES {
        return Err(bad(name, format!("is {} bytes, the limit is {MAX_STRING_BYTES}", v.len())));
    }
    Ok(v)
}

/// At most 64 characters of caller input, for an error message.
pub(crate) fn echo(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Attributes from a JSON object of text, integers, numbers, booleans and lists of text; `null`
/// leaves an attribute out. Empty text means no attributes.
pub fn attrs(param: &str, text: &str) -> Result<Attrs, BadParam> {
    if text.trim().is_empty() {
        return Ok(Attrs::default());
    }
    if text.len() > MAX_ATTRS * MAX_STRING_BYTES {
        return Err(bad(param, format!("is {} bytes, the limit is {}", text.len(), MAX_ATTRS * MAX_STRING_BYTES)));
    }
    let json: Json = serde_json::from_str(text).map_err(|e| bad(param, format!("not JSON: {e}")))?;
    let Json::Object(map) = json else { return Err(bad(param, "must be a JSON object")) };
    if map.len() > MAX_ATTRS {
        return Err(bad(param, format!("has {} attributes, the limit is {MAX_ATTRS}", map.len())));
    }
    let mut out = Attrs::default();
    for (name, v) in map {
        let field = format!("{param}.{}", echo(&name));
        short(&field, &name)?;
        if let Some(value) = value(&field, v)? {
            out.insert(name, value);
        }
    }
    Ok(out)
}

fn value(field: &str, v: Json) -> Result<Option<Value>, BadParam> {
    Ok(Some(match v {
        Json::Null => return Ok(None),
        Json::Bool(b) => Value::Flag(b),
        Json::String(s) => Value::Text(short(field, &s)?.to_owned()),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(f)) if f.is_finite() => Value::Number(f),
            _ => return Err(bad(field, "number out of range")),
        },
        Json::Array(items) => {
            if items.len() > MAX_LIST_LEN {
                return Err(bad(field, format!("has {} values, the limit is {MAX_LIST_LEN}", items.len())));
            }
            let mut list = Vec::with_capacity(items.len());
            for item in items {
                let Json::String(s) = item else { return Err(bad(field, "a list holds text values only")) };
                list.push(short(field, &s)?.to_owned());
            }
            Value::List(list)
        }
        Json::Object(_) => return Err(bad(field, "nested objects are not supported")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_plus_and_percent_escapes() {
        let p = Params::parse("tenant=acme&attrs=%7B%22tags%22%3A%5B%22vip%22%5D%7D&id=a+b").unwrap_or_default();
        assert_eq!(p.get("tenant"), "acme");
        assert_eq!(p.get("id"), "a b");
        assert_eq!(p.get("attrs"), r#"{"tags":["vip"]}"#);
        assert_eq!(p.get("missing"), "");
    }

    #[test]
    fn attributes_keep_their_json_types() {
        let a = attrs("attrs", r#"{"assignee":"rep-1","n":2,"x":1.5,"vip":true,"tags":["a","b"],"gone":null}"#)
            .unwrap_or_default();
        assert_eq!(a.get("assignee"), Some(&Value::Text("rep-1".into())));
        assert_eq!(a.get("n"), Some(&Value::Int(2)));
        assert_eq!(a.get("x"), Some(&Value::Number(1.5)));
        assert_eq!(a.get("vip"), Some(&Value::Flag(true)));
        assert_eq!(a.get("tags"), Some(&Value::List(vec!["a".into(), "b".into()])));
        assert_eq!(a.get("gone"), None);
    }

    #[test]
    fn bad_attributes_name_the_parameter() {
        let cases = [
            (r#"[1]"#, "attrs: must be a JSON object"),
            (r#"{"a":{"b":1}}"#, "attrs.a: nested objects are not supported"),
            (r#"{"tags":[1]}"#, "attrs.tags: a list holds text values only"),
        ];
        for (text, want) in cases {
            assert_eq!(attrs("attrs", text).map_err(|e| e.to_string()), Err(want.to_owned()), "{text}");
        }
        assert!(attrs("ctx", "{").is_err_and(|e| e.param == "ctx"));
    }

    #[test]
    fn oversized_input_is_refused_before_it_is_used() {
        let many: Vec<String> = (0..=MAX_ATTRS).map(|i| format!("\"a{i}\":1")).collect();
        let text = format!("{{{}}}", many.join(","));
        assert!(attrs("attrs", &text).is_err_and(|e| e.message.contains("the limit is 64")));
        let long = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_STRING_BYTES + 1));
        assert!(attrs("attrs", &long).is_err_and(|e| e.param == "attrs.a"));
        let list = format!(r#"{{"l":[{}]}}"#, vec!["\"v\""; MAX_LIST_LEN + 1].join(","));
        assert!(attrs("attrs", &list).is_err_and(|e| e.param == "attrs.l"));
        let params: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}=1")).collect();
        assert!(Params::parse(&params.join("&")).is_err());
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
        assert!(attrs("attrs", &deep).is_err());
    }

    #[test]
    fn ip_addresses_are_canonical() {
        let p = Params::parse("ip=%3A%3Affff%3A203.0.113.7").unwrap_or_default();
        assert_eq!(p.context().map(|c| c.client_ip), Ok(Some("203.0.113.7".parse().unwrap_or(IpAddr::from([0; 4])))));
        assert!(Params::parse("ip=nope").unwrap_or_default().context().is_err_and(|e| e.param == "ip"));
    }
}
