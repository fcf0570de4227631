//! Figures of the directory source for BENCHMARKS.md: loading a large tenant document (time and
//! heap kept per member, beside the compiled tenant's own heap), then the time to apply a
//! one-member edit to it — read line by line, and, for comparison, the same document with its
//! members written as a flow list, which is parsed whole — and a rewrite that changes no member
//! (the reload benchmark's description-only rewrite).
//!
//! `cargo bench --bench reload [-- MEMBERS [EDITS]]` (default 50,000 members, 20 edits). Under
//! `cargo test` it runs once at a small size, so the bench keeps working. Each edit is checked:
//! the edited member's next decision must show it.

use std::path::Path;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rolegate::engine::{Context, Reason, Request, Resource, decide};
use rolegate::source::dir::DirSource;
use rolegate::store::Store;

#[path = "support/alloc.rs"]
mod alloc;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

#[path = "support/desk.rs"]
#[allow(dead_code)]
mod desk;

#[path = "support/measure.rs"]
#[allow(dead_code)]
mod measure;
use measure::{ms, percentiles, thread_cpu};

fn write(dir: &Path, text: &str) {
    let tmp = dir.join(".desk.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("desk.yaml")).unwrap();
}

/// The document with member `m{k}` disabled.
fn edited(text: &str, k: usize) -> String {
    text.replacen(&format!("{{id: m{k}, units:"), &format!("{{id: m{k}, status: disabled, units:"), 1)
}

/// The same document with its members as one flow list (`members: [...]`): a shape the source
/// does not read line by line, so every change parses it whole.
fn flow(text: &str) -> String {
    let (head, list) = text.split_once("members:\n").unwrap();
    let items: Vec<&str> = list.lines().map(|l| l.trim_start_matches("  - ")).collect();
    format!("{head}members: [\n  {}\n]\n", items.join(",\n  "))
}

fn reason(store: &Store, who: &str) -> Reason {
    let snapshot = store.load().unwrap();
    let req = Request {
        tenant: "desk".into(),
        principal: who.into(),
        action: "conversation.view".into(),
        resource: Resource { kind: "conversation".into(), id: "c".into(), unit: "u1".into(), ..Default::default() },
        context: Context::default(),
    };
    decide(&snapshot, &req.query(), Timestamp::UNIX_EPOCH).unwrap().reason
}

/// Reloads once; returns its wall and thread CPU time.
fn timed(source: &mut DirSource, store: &Store) -> (Duration, Duration) {
    let (wall, cpu) = (Instant::now(), thread_cpu());
    let report = source.reload(store);
    assert!(report.errors.is_empty() && report.failed.is_empty(), "{report:?}");
    (wall.elapsed(), thread_cpu() - cpu)
}

/// Disables and enables again `edits` members of `text` one at a time; returns the wall and CPU
/// time of each disabling reload, which must have read `spliced` documents line by line, and the
/// CPU time of the heap trim each then owes, run after it as the watcher does once it is due.
fn edit(
    dir: &Path,
    source: &mut DirSource,
    store: &Store,
    text: &str,
    members: usize,
    edits: usize,
    spliced: usize,
) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>) {
    let (mut walls, mut cpus, mut trims) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..edits {
        let k = (i * 7919) % members;
        let who = format!("m{k}");
        write(dir, &edited(text, k));
        let (wall, cpu) = timed(source, store);
        assert_eq!(reason(store, &who), Reason::PrincipalDisabled, "the edit to `{who}` applies");
        assert_eq!(source.spliced(), spliced);
        walls.push(wall);
        cpus.push(cpu);
        if source.trim_due().is_some() {
            let cpu = thread_cpu();
            source.trim();
            trims.push(thread_cpu() - cpu);
        }
        write(dir, text);
        timed(source, store);
        assert_ne!(reason(store, &who), Reason::PrincipalDisabled, "`{who}` is enabled again");
    }
    (walls, cpus, trims)
}

fn main() {
    let test = std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench");
    let mut numbers = std::env::args().skip(1).filter_map(|a| a.parse::<usize>().ok());
    let (members, edits) =
        if test { (2_000, 3) } else { (numbers.next().unwrap_or(50_000), numbers.next().unwrap_or(20)) };
    let dir = std::env::temp_dir().join(format!("rolegate-bench-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = desk::desk_yaml("desk", members);
    write(&dir, &text);
    println!("reload: {members} members, document of {:.1} MB", text.len() as f64 / 1e6);

    let t = Instant::now();
    let (doc, _) = rolegate::policy::parse_str("desk.yaml", &text, None);
    println!("  parse alone: {}", ms(t.elapsed()));
    drop(doc);

    let store = Store::default();
    let mut source = DirSource::new(&dir, Duration::ZERO, Duration::ZERO);
    let heap = alloc::live();
    let (wall, cpu) = timed(&mut source, &store);
    let kept = alloc::live().saturating_sub(heap);
    println!(
        "  first load: {} wall, {} CPU; heap kept {} bytes per member (compiled tenant and source state)",
        ms(wall),
        ms(cpu),
        kept / members
    );

    let heap = alloc::live();
    let tenant = desk::compile("desk", members);
    let compiled = alloc::live().saturating_sub(heap);
    drop(tenant);
    println!("  compiled tenant alone: heap {} bytes per member", compiled / members);

    let (mut walls, mut cpus, mut trims) = edit(&dir, &mut source, &store, &text, members, edits, 1);
    println!(
        "  one-member edit applied (read line by line + per-member compile + publish), wall: {}",
        percentiles(&mut walls)
    );
    println!("  one-member edit applied, CPU: {}", percentiles(&mut cpus));
    if !trims.is_empty() {
        println!("  heap trim owed after it (run later, once per burst of edits), CPU: {}", percentiles(&mut trims));
    }
    let whole = flow(&text);
    write(&dir, &whole);
    timed(&mut source, &store);
    let (mut walls, mut cpus, _) = edit(&dir, &mut source, &store, &whole, members, edits.div_ceil(4), 0);
    println!("  the same, members as a flow list (parsed whole), wall: {}", percentiles(&mut walls));
    println!("  the same, members as a flow list, CPU: {}", percentiles(&mut cpus));
    write(&dir, &text);
    timed(&mut source, &store);

    let mut untouched = Vec::new();
    for i in 0..edits {
        write(&dir, &text.replacen("tenant: desk", &format!("tenant: desk\ndescription: rewrite {i}"), 1));
        untouched.push(timed(&mut source, &store).0);
    }
    println!("  rewrite changing no member (description only), wall: {}", percentiles(&mut untouched));
    std::fs::remove_dir_all(&dir).unwrap();
}
