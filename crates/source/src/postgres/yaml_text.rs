//! Text conversions between policy YAML and the database's JSON columns. JSON is YAML's flow
//! style, so a JSON column reads back through the same parser as a document; these helpers only
//! keep each scalar's type across the trip: a plain YAML `3` is the JSON number 3, a quoted `"3"`
//! the JSON string "3", and back.

use marked_yaml::Node;

/// `s` as a JSON string, which is also a YAML double-quoted scalar.
pub fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Appends the JSON form of a YAML node: a plain scalar that reads as an integer, a number or a
/// boolean becomes one, every other scalar a string.
pub fn node_json(node: &Node, out: &mut String) {
    match node {
        Node::Scalar(s) => {
            let text = s.as_str();
            if !s.may_coerce() {
                out.push_str(&quote(text));
            } else if let Ok(i) = text.parse::<i64>() {
                out.push_str(&i.to_string());
            } else if let Some(n) = text.parse::<f64>().ok().filter(|n| n.is_finite()) {
                // The written spelling when JSON accepts it (`3.50` stays `3.50`).
                if is_json_number(text) {
                    out.push_str(text)
                } else {
                    out.push_str(&serde_json::Value::from(n).to_string())
                }
            } else if text == "true" || text == "false" {
                out.push_str(text);
            } else {
                out.push_str(&quote(text));
            }
        }
        Node::Sequence(seq) => {
            out.push('[');
            for (i, n) in seq.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                node_json(n, out);
            }
            out.push(']');
        }
        Node::Mapping(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&quote(k.as_str()));
                out.push_str(": ");
                node_json(v, out);
            }
            out.push('}');
        }
    }
}

fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b.get(int_start) == Some(&b'0')) {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// A string as a YAML scalar: plain when it reads back as the same string, else quoted.
pub fn scalar(s: &str) -> String {
    const WORDS: &[&str] = &["true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"];
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./@".contains(c))
        && !WORDS.contains(&s.to_ascii_lowercase().as_str())
        && s.parse::<f64>().is_err();
    if plain { s.to_owned() } else { quote(s) }
}

/// Rewrites JSON text (from a JSON column) as YAML flow text with plain scalars where they read
/// back the same: `{"relation": "assignee"}` becomes `{relation: assignee}`. Numbers, booleans
/// and `null` keep their spelling. Text that is not JSON is returned unchanged.
pub fn json_flow(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut chars = json.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let mut end = None;
                let mut escaped = false;
                for (j, d) in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' {
                        escaped = true;
                    } else if d == '"' {
                        end = Some(j);
                        break;
                    }
                }
                let Some(end) = end else { return json.to_owned() };
                let literal = &json[i..=end];
                match serde_json::from_str::<String>(literal) {
                    Ok(s) => out.push_str(&scalar(&s)),
                    Err(_) => return json.to_owned(),
                }
            }
            ':' => out.push_str(": "),
            ',' => out.push_str(", "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// The document without its top-level `units:` and `members:` sections, which the database
/// holds as rows. The rest keeps its comments and layout; blank and comment lines just above a
/// section go with it.
pub fn without_rows(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut skipping = false;
    let mut held: Vec<&str> = Vec::new();
    for line in text.split_inclusive('\n') {
        let top_key = line
            .split_once(':')
            .map(|(k, _)| k)
            .filter(|k| !k.is_empty() && !k.starts_with([' ', '\t', '#', '-']) && !k.contains(char::is_whitespace));
        match top_key {
            Some(key) => {
                skipping = key == "units" || key == "members";
                if skipping {
                    held.clear();
                } else {
                    out.extend(held.drain(..));
                    out.push_str(line);
                }
            }
            None if line.trim().is_empty() || line.starts_with('#') => held.push(line),
            None if skipping => held.clear(),
            None => {
                out.extend(held.drain(..));
                out.push_str(line);
            }
        }
    }
    out.extend(held);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(yaml: &str) -> String {
        let mut report = rolegate_policy::Report::new("t".into());
        let node = rolegate_policy::yaml::parse(&mut report, yaml).unwrap();
        let mut out = String::new();
        node_json(&node, &mut out);
        out
    }

    #[test]
    fn plain_scalars_keep_their_type_and_quoted_ones_stay_text() {
        assert_eq!(
            json_of("{a: 3, b: \"3\", c: 3.50, d: true, e: 'true', f: 09:00, g: [x, 1e3], h: {lt: 3}}"),
            r#"{"a": 3, "b": "3", "c": 3.50, "d": true, "e": "true", "f": "09:00", "g": ["x", 1e3], "h": {"lt": 3}}"#
        );
        assert_eq!(json_of("{a: +3, b: .5, c: null}"), r#"{"a": 3, "b": 0.5, "c": "null"}"#);
    }

    #[test]
    fn json_reads_back_as_the_same_yaml() {
        let json = r#"{"ip": ["203.0.113.0/24", "2001:db8::/32"], "schedule": {"tz": "Asia/Shanghai", "from": "09:00", "days": ["mon"]}, "context": {"count": {"lt": 3}}, "principal": {"level": "3", "vip": true, "name": "a b"}}"#;
        assert_eq!(
            json_flow(json),
            r#"{ip: ["203.0.113.0/24", "2001:db8::/32"], schedule: {tz: Asia/Shanghai, from: "09:00", days: [mon]}, context: {count: {lt: 3}}, principal: {level: "3", vip: true, name: "a b"}}"#
        );
        assert_eq!(json_of(&json_flow(json)), json);
        assert_eq!(json_flow(r#""tenant""#), "tenant");
        assert_eq!(json_flow(r#"{"a": "x\"y"}"#), r#"{a: "x\"y"}"#);
    }

    #[test]
    fn rows_sections_are_cut_and_the_rest_kept_with_comments() {
        let text = "# head\ntenant: t\nunits:\n  - {id: a}\n\n# about members\nmembers:\n  - id: m\n# top comment inside\n    units: [a]\n\n# the rules\nrules: []\n";
        assert_eq!(without_rows(text), "# head\ntenant: t\n\n# the rules\nrules: []\n");
        let rendered = "tenant: t\nrules: []\n\nunits:\n  - {id: a}\n\nmembers:\n  - id: m\n";
        assert_eq!(without_rows(rendered), "tenant: t\nrules: []\n");
        assert_eq!(without_rows("tenant: t\nmembers: [{id: m}]\n"), "tenant: t\n");
    }
}
