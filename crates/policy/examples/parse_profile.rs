//! Times the stages of loading one policy file, and estimates the compiled tenant's bytes:
//! `parse_profile FILE [ROUNDS] [TEMPLATE]`.
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("FILE");
    let rounds: usize = args.next().map_or(3, |r| r.parse().unwrap());
    let text = std::fs::read_to_string(&path).unwrap();
    let tpl_path = args.next();
    let tpl = tpl_path.map(|p| {
        let t = std::fs::read_to_string(&p).unwrap();
        rolegate_policy::parse_str("t", &t, Some("customer-service-desk")).0.unwrap()
    });
    for _ in 0..rounds {
        let t = Instant::now();
        let mut parser = yaml_rust2::parser::Parser::new_from_str(&text);
        let mut events = 0usize;
        while let Ok((e, _)) = parser.next_token() {
            events += 1;
            if e == yaml_rust2::parser::Event::StreamEnd {
                break;
            }
        }
        let scan = t.elapsed();
        let t = Instant::now();
        let opts = marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true).prevent_coercion(true);
        let node = marked_yaml::parse_yaml_with_options(0, &text, opts).unwrap();
        let marked = t.elapsed();
        let t = Instant::now();
        drop(node);
        let dropped = t.elapsed();
        println!("events {events} scan {scan:?} marked {marked:?} drop {dropped:?}");
        let t = Instant::now();
        let mut report = rolegate_policy::Report::new(std::sync::Arc::from("f"));
        let node = rolegate_policy::yaml::parse(&mut report, &text);
        let yaml = t.elapsed();
        drop(node);
        let t = Instant::now();
        let (doc, diags) = rolegate_policy::parse_str("f", &text, None);
        let parse = t.elapsed();
        let doc = doc.unwrap();
        assert!(diags.iter().all(|d| !d.is_error()));
        let t = Instant::now();
        let tenant = rolegate_policy::compile(&doc, tpl.as_ref(), 1).map_err(|d| d.len()).unwrap();
        let compile = t.elapsed();
        println!("members {} yaml {yaml:?} parse(all) {parse:?} compile {compile:?}", tenant.member_count());
        let bytes = tenant.approx_bytes();
        println!("compiled tenant: estimated {bytes} bytes ({} per member)", bytes / tenant.member_count().max(1));
    }
}
