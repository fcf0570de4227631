//! Figures of the directory source for BENCHMARKS.md: loading a large tenant document (time and
//! heap kept per member), then the time to apply a one-member edit to it, and a rewrite that
//! changes no member (the reload benchmark's description-only rewrite).
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

/// The document with member `m{k}` disabled (or not).
fn edited(text: &str, k: usize, disabled: bool) -> String {
    let from = format!("  - {{id: m{k}, units:");
    let to = if disabled { format!("  - {{id: m{k}, status: disabled, units:") } else { from.clone() };
    text.replacen(&from, &to, 1)
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

    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    for i in 0..edits {
        let k = (i * 7919) % members;
        let who = format!("m{k}");
        write(&dir, &edited(&text, k, true));
        let (wall, cpu) = timed(&mut source, &store);
        assert_eq!(reason(&store, &who), Reason::PrincipalDisabled, "the edit to `{who}` applies");
        walls.push(wall);
        cpus.push(cpu);
        write(&dir, &text);
        timed(&mut source, &store);
        assert_ne!(reason(&store, &who), Reason::PrincipalDisabled, "`{who}` is enabled again");
    }
    println!("  one-member edit applied (parse + per-member compile + publish), wall: {}", percentiles(&mut walls));
    println!("  one-member edit applied, CPU: {}", percentiles(&mut cpus));

    let mut untouched = Vec::new();
    for i in 0..edits {
        write(&dir, &text.replacen("tenant: desk", &format!("tenant: desk\ndescription: rewrite {i}"), 1));
        untouched.push(timed(&mut source, &store).0);
    }
    println!("  rewrite changing no member (description only), wall: {}", percentiles(&mut untouched));
    std::fs::remove_dir_all(&dir).unwrap();
}
