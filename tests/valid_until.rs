//! The meaning of `valid_until` (docs/policy-language.md, "Decision order", step 7), checked without any theory of how it is
//! computed: the answer must not change anywhere in `[now, valid_until)`, or within 30 days when
//! `valid_until` is unset.
//!
//! Tenants are generated around the 2026/2027 clock changes of zones with daylight saving
//! (New York, London, Berlin, Lord Howe's 30-minute shift, Santiago's change at midnight) and of
//! Shanghai, which has none: schedules in those zones, overnight windows, windows that start or end
//! exactly at the changing hour, binding windows and member expiry near the change. `now` falls
//! within three days of a change. Every instant of a generated tenant (binding windows, expiry,
//! schedule times, clock changes) lies on a quarter hour, so re-deciding at every quarter hour in the
//! range, plus random instants, misses no change of the answer.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use rolegate::engine::{Attrs, Context, Decision, Request, Resource, Snapshot, Value, decide};
use rolegate::policy;

/// splitmix64, driven by one proptest seed so a failure reproduces from it, with the clock change
/// (`anchor`, in `zone`) the generated tenant clusters around.
struct Rng {
    state: u64,
    anchor: Timestamp,
    zone: &'static str,
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut rng = Rng { state: seed, anchor: Timestamp::UNIX_EPOCH, zone: "UTC" };
        rng.zone = *rng.pick(ZONES);
        let own = transitions(rng.zone);
        // Shanghai has no clock change: its schedules meet the other zones' changes.
        rng.anchor = if own.is_empty() { *rng.pick(all_transitions()) } else { *rng.pick(&own) };
        rng
    }
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const ZONES: &[&str] =
    &["America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Santiago", "Europe/Berlin", "Asia/Shanghai"];
const DAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
/// Local times around the changing hours: New York and Berlin at 02:00, London at 01:00, Lord Howe
/// at 02:00/02:30 or 01:30, Santiago at midnight.
const EDGE_TIMES: &[&str] = &["00:00", "00:30", "01:00", "01:30", "02:00", "02:30", "03:00", "23:00", "23:30"];
const QUARTER: SignedDuration = SignedDuration::from_mins(15);
const MEMBERS: usize = 3;

/// The clock changes of `zone` in 2026 and 2027.
fn transitions(zone: &str) -> Vec<Timestamp> {
    let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let end: Timestamp = "2028-01-01T00:00:00Z".parse().unwrap();
    let tz = TimeZone::get(zone).unwrap();
    tz.following(start).map(|t| t.timestamp()).take_while(|t| *t < end).collect()
}

/// Every clock change of the zones in 2026 and 2027.
fn all_transitions() -> &'static [Timestamp] {
    static ALL: OnceLock<Vec<Timestamp>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all: Vec<Timestamp> = ZONES.iter().flat_map(|z| transitions(z)).collect();
        all.sort();
        all
    })
}

/// A quarter-hour instant within three days of the anchor: sometimes on it, often within hours.
fn near(rng: &mut Rng) -> Timestamp {
    let quarters = match rng.below(100) {
        0..15 => 0,
        15..50 => rng.below(4 * 8) as i32 - 4 * 4,
        _ => rng.below(4 * 24 * 6) as i32 - 4 * 24 * 3,
    };
    rng.anchor + QUARTER * quarters
}

/// `now`: often in the hour either side of the clock change, where a window can flip at the change
/// itself; at seconds, not quarter hours, half of the time, so it need not sit on an edge.
fn now_near(rng: &mut Rng) -> Timestamp {
    let at = if rng.chance(40) { rng.anchor + QUARTER * (rng.below(8) as i32 - 4) } else { near(rng) };
    at + SignedDuration::from_secs(rng.below(900) as i64 * rng.below(2) as i64)
}

fn time_of_day(rng: &mut Rng) -> String {
    if rng.chance(60) {
        rng.pick(EDGE_TIMES).to_string()
    } else {
        format!("{:02}:{:02}", rng.below(24), 15 * rng.below(4))
    }
}

fn schedule(rng: &mut Rng) -> String {
    let from = time_of_day(rng);
    let mut to = time_of_day(rng);
    if to == from {
        // A one-hour window from the changing hour: `02:00`–`03:00` on a spring-forward day.
        to = if from == "23:00" { "00:00".to_owned() } else { "03:00".to_owned() };
        if to == from {
            to = "04:00".to_owned();
        }
    }
    let days = if rng.chance(30) {
        String::new()
    } else if rng.chance(35) {
        // One day a week: the next window is up to a week away.
        format!(", days: [{}]", rng.pick(DAYS))
    } else {
        let picked: Vec<&str> = DAYS.iter().copied().filter(|_| rng.chance(50)).collect();
        let picked = if picked.is_empty() { vec![*rng.pick(DAYS)] } else { picked };
        format!(", days: [{}]", picked.join(", "))
    };
    let tz = if rng.chance(70) { rng.zone } else { rng.pick(ZONES) };
    format!("schedule: {{tz: {tz}{days}, from: \"{from}\", to: \"{to}\"}}")
}

/// A `when` map with at least one schedule somewhere, nested under `any`/`not` at times.
fn when(rng: &mut Rng, depth: usize) -> String {
    let clause = match rng.below(if depth > 1 { 2 } else { 5 }) {
        0 | 1 => schedule(rng),
        2 => format!("any: [{}, {}]", when(rng, depth + 1), when(rng, depth + 1)),
        3 => format!("not: {}", when(rng, depth + 1)),
        _ => format!("{}, principal: {{level: {{lt: {}}}}}", schedule(rng), rng.below(3)),
    };
    format!("{{{clause}}}")
}

fn binding(rng: &mut Rng) -> String {
    let mut fields = vec![format!("role: {}", rng.pick(&["agent", "lead", "viewer"]))];
    fields.push(
        rng.pick(&["scope: tenant", "scope: own_units", "scope: {unit: eu}", "scope: {relation: assignee}"])
            .to_string(),
    );
    if rng.chance(40) {
        let (a, b) = (near(rng), near(rng));
        let (from, until) = if a < b { (a, b) } else { (b, a) };
        if from != until {
            if rng.chance(60) {
                fields.push(format!("from: \"{from}\""));
            }
            fields.push(format!("until: \"{until}\""));
        }
    }
    if rng.chance(60) {
        fields.push(format!("when: {}", when(rng, 0)));
    }
    format!("{{{}}}", fields.join(", "))
}

fn rule(rng: &mut Rng, i: usize) -> String {
    let (effect, extra) = match rng.below(3) {
        0 => ("deny", ""),
        1 => ("mask", ", fields: [phone]"),
        _ => ("review", ""),
    };
    let actions = rng.pick(&["\"*\"", "conversation.view", "\"conversation.*\"", "conversation.export"]);
    format!("  - {{id: rule{i}, effect: {effect}, actions: [{actions}]{extra}, when: {}}}\n", when(rng, 0))
}

/// A tenant document whose time-dependent parts cluster around the anchor.
fn tenant(rng: &mut Rng) -> String {
    let mut doc = String::from(
        "tenant: t
schema:
  conversation: [view, reply, export]
roles:
  viewer: {allow: [conversation.view]}
  agent: {extends: [viewer], allow: [conversation.reply], requestable: [conversation.export]}
  lead: {allow: [\"conversation.*\"]}
units:
  - {id: eu}
  - {id: eu-west, parent: eu}
members:
",
    );
    for m in 0..MEMBERS {
        let mut f =
            vec![format!("id: m{m}"), "units: [eu-west]".to_owned(), format!("attrs: {{level: {}}}", rng.below(3))];
        if rng.chance(25) {
            f.push(format!("expires: \"{}\"", near(rng)));
        }
        let bindings: Vec<String> = (0..1 + rng.below(3)).map(|_| binding(rng)).collect();
        f.push(format!("bindings: [{}]", bindings.join(", ")));
        let _ = writeln!(doc, "  - {{{}}}", f.join(", "));
    }
    if rng.chance(40) {
        let _ = writeln!(doc, "everyone: [{}]", binding(rng));
    }
    let rules: Vec<String> = (0..rng.below(3)).map(|i| rule(rng, i)).collect();
    if !rules.is_empty() {
        let _ = write!(doc, "rules:\n{}", rules.concat());
    }
    doc
}

fn request(rng: &mut Rng) -> Request {
    let mut attrs = Attrs::default();
    if rng.chance(60) {
        attrs.insert("assignee", Value::Text(format!("m{}", rng.below(MEMBERS))));
    }
    Request {
        tenant: "t".into(),
        principal: format!("m{}", rng.below(MEMBERS)),
        action: rng.pick(&["conversation.view", "conversation.reply", "conversation.export"]).to_string(),
        resource: Resource {
            kind: "conversation".into(),
            id: "c1".into(),
            unit: rng.pick(&["eu", "eu-west", ""]).to_string(),
            attrs,
        },
        context: Context::default(),
    }
}

/// The decision without its bounds: what must not change before them. `cache_until` moves with
/// the clock by design (`now` + the tenant's `max_staleness`); its own bound is checked apart.
fn answer(d: &Decision) -> Decision {
    Decision { valid_until: None, cache_until: None, ..d.clone() }
}

/// Instants at which to decide again: every quarter hour in `(now, end)`, the last instant before
/// `end`, and random instants in `[now, end)`.
fn probes(rng: &mut Rng, now: Timestamp, end: Timestamp) -> Vec<Timestamp> {
    let span = end.duration_since(now).as_nanos();
    let mut out: Vec<Timestamp> =
        (0..16).map(|_| now + SignedDuration::from_nanos((rng.next() as i128 % span) as i64)).collect();
    out.push(end - SignedDuration::from_nanos(1));
    let secs = now.as_second();
    let mut t = Timestamp::from_second(secs - secs.rem_euclid(900)).unwrap() + QUARTER;
    while t < end {
        out.push(t);
        t += QUARTER;
    }
    out
}

fn check(seed: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let text = tenant(&mut rng);
    let (doc, diags) = policy::parse_str("t.yaml", &text, None);
    let repro = |extra: String| format!("seed {seed}\n--- t.yaml\n{text}\n{extra}");
    let doc = doc.ok_or_else(|| repro(format!("does not parse: {diags:#?}")))?;
    let tenant = policy::compile(&doc, None, 1).map_err(|d| repro(format!("does not compile: {d:#?}")))?;
    let mut snapshot = Snapshot::default();
    snapshot.insert(Arc::new(tenant));
    for _ in 0..16 {
        let req = request(&mut rng);
        let now = now_near(&mut rng);
        let first = decide(&snapshot, &req.query(), now).map_err(|e| repro(format!("caller error: {e}")))?;
        if let Some(until) = first.valid_until
            && until <= now
        {
            return Err(repro(format!("now: {now}\nrequest: {req:#?}\nvalid_until {until} is not after now")));
        }
        // The generated tenants keep the default `max_staleness` of 5 s: a caller may reuse the
        // answer until the earlier of that and `valid_until`, never past either.
        let staleness_end = now + SignedDuration::from_secs(5);
        let reuse = first.valid_until.map_or(staleness_end, |v| v.min(staleness_end));
        if first.cache_until != Some(reuse) {
            return Err(repro(format!(
                "now: {now}\nrequest: {req:#?}\ncache_until {:?} is not the earlier of valid_until and now + 5s",
                first.cache_until
            )));
        }
        let end = first.valid_until.unwrap_or(now + SignedDuration::from_hours(24 * 30));
        for t in probes(&mut rng, now, end) {
            let later = decide(&snapshot, &req.query(), t).map_err(|e| repro(format!("caller error: {e}")))?;
            if answer(&later) != answer(&first) {
                return Err(repro(format!(
                    "now: {now}\nrequest: {req:#?}\nat now:  {first:?}\nat {t}: {later:?}\nthe answer changed before valid_until"
                )));
            }
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("ROLEGATE_VALID_UNTIL_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn answer_never_changes_before_valid_until(seed in any::<u64>()) {
        if let Err(repro) = check(seed) {
            prop_assert!(false, "{}", repro);
        }
    }
}

#[test]
fn generated_cases_straddle_clock_changes() {
    // Guards the generator: the property is only interesting when `[now, valid_until)` or the
    // probed month contains clock changes and the bound is often set.
    let (mut straddling, mut bounded, mut total) = (0, 0, 0);
    for seed in 0..200u64 {
        let mut rng = Rng::new(seed);
        let text = tenant(&mut rng);
        let doc = policy::parse_str("t.yaml", &text, None).0.unwrap();
        let mut snapshot = Snapshot::default();
        snapshot.insert(Arc::new(policy::compile(&doc, None, 1).unwrap()));
        for _ in 0..8 {
            let req = request(&mut rng);
            let now = near(&mut rng);
            let d = decide(&snapshot, &req.query(), now).unwrap();
            let end = d.valid_until.unwrap_or(now + SignedDuration::from_hours(24 * 30));
            total += 1;
            bounded += usize::from(d.valid_until.is_some());
            straddling += usize::from(all_transitions().iter().any(|t| now <= *t && *t <= end));
        }
    }
    assert!(all_transitions().len() >= 20, "expected 4 clock changes a zone over two years: {:?}", all_transitions());
    assert!(bounded * 2 > total, "only {bounded} of {total} decisions carried a valid_until");
    assert!(straddling * 10 > total, "only {straddling} of {total} decision ranges reach a clock change");
}
