//! `rolegate diff` and the pull-request check in `examples/ci/`, run as a user runs them: the real
//! binary on real directories (and a real git repository for the CI script).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rolegate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rolegate")).args(args).output().expect("rolegate runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A copy of the examples in which the desk template's team admin may export customers.
fn widened(dir: &Path) -> PathBuf {
    let to = dir.join("policies");
    copy(&root().join("examples"), &to);
    let tpl = to.join("templates/customer-service-desk.yaml");
    let text = std::fs::read_to_string(&tpl).unwrap();
    let edited = text.replacen("      - customer.edit\n", "      - customer.edit\n      - customer.export\n", 1);
    assert_ne!(text, edited, "the template still has the line this test edits");
    std::fs::write(&tpl, edited).unwrap();
    to
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy(&e.path(), &target);
        } else if e.path().extension().is_some_and(|x| x == "yaml") {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn a_role_gaining_export_names_every_member_it_reaches() {
    let tmp = tempfile::tempdir().unwrap();
    let new = widened(tmp.path());
    let examples = root().join("examples");
    let out = rolegate(&["diff", examples.to_str().unwrap(), new.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("role `team_admin` now allows customer.export"), "{text}");
    for member in ["he.bin", "lin.xue", "xu.li"] {
        assert!(text.contains(&format!("member `{member}`")), "{member} missing:\n{text}");
    }
    assert!(text.contains("1 tenants changed, 3 members affected: 3 gain access, 0 lose access"), "{text}");

    let json = rolegate(&["diff", examples.to_str().unwrap(), new.to_str().unwrap(), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["gains"], true);
    assert_eq!(v["losses"], false);
    let members: Vec<&str> =
        v["tenants"][0]["members"].as_array().unwrap().iter().map(|m| m["member"].as_str().unwrap()).collect();
    assert_eq!(members, ["he.bin", "lin.xue", "xu.li"]);

    let gate = |fail_on: &str, old: &Path, new: &Path| {
        rolegate(&["diff", old.to_str().unwrap(), new.to_str().unwrap(), "--fail-on", fail_on]).status.code()
    };
    assert_eq!(gate("grant", &examples, &new), Some(1));
    assert_eq!(gate("revoke", &examples, &new), Some(0));
    assert_eq!(gate("any", &examples, &new), Some(1));
    let validate = rolegate(&["validate", new.to_str().unwrap(), "--base", examples.to_str().unwrap()]);
    let text = stdout(&validate);
    assert!(validate.status.success(), "{validate:?}");
    assert!(
        text.contains("tenant `meiqia-service-desk` (template `customer-service-desk` changed): 3 members gain access, 0 lose access"),
        "{text}"
    );
    assert!(
        text.contains("warning: template `customer-service-desk` widens access in tenants meiqia-service-desk"),
        "{text}"
    );

    // The other way round the same change takes access away.
    assert_eq!(gate("grant", &new, &examples), Some(0));
    assert_eq!(gate("revoke", &new, &examples), Some(1));
}

#[test]
fn an_unchanged_policy_diffs_to_nothing_and_a_broken_one_is_an_error() {
    let examples = root().join("examples");
    let out = rolegate(&["diff", examples.to_str().unwrap(), examples.to_str().unwrap(), "--fail-on", "any"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "no change\n");

    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("t.yaml"), "tenant: t\nroles: {a: {alow: [x]}}\n").unwrap();
    let out = rolegate(&["diff", examples.to_str().unwrap(), tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown key `alow`") && err.contains("fix them before comparing"), "{err}");
}

#[test]
fn the_ci_example_asks_for_a_second_approval_when_access_widens() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    let git = |args: &[&str]| {
        let o = Command::new("git").args(args).current_dir(repo).output().expect("git runs");
        assert!(o.status.success(), "git {args:?}: {o:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["config", "user.email", "ci@example.com"]);
    git(&["config", "user.name", "ci"]);
    copy(&root().join("examples"), &repo.join("policies"));
    git(&["add", "."]);
    git(&["commit", "-qm", "policies"]);
    let script = root().join("examples/ci/check-policies.sh");
    let run = || {
        Command::new("bash")
            .arg(&script)
            .args(["policies", "main"])
            .env("ROLEGATE", env!("CARGO_BIN_EXE_rolegate"))
            .current_dir(repo)
            .output()
            .expect("the script runs")
    };
    let same = run();
    assert_eq!(same.status.code(), Some(0), "{same:?}");

    std::fs::remove_dir_all(repo.join("policies")).unwrap();
    widened(repo);
    // The desk's own policy tests catch this change first...
    let caught = run();
    assert_eq!(caught.status.code(), Some(1), "{caught:?}");
    assert!(String::from_utf8_lossy(&caught.stdout).contains("3 failed"), "{caught:?}");
    // ...and without them the diff still asks for a second approval.
    std::fs::remove_file(repo.join("policies/meiqia-service-desk_test.yaml")).unwrap();
    let wider = run();
    assert_eq!(wider.status.code(), Some(3), "{wider:?}");
    assert!(String::from_utf8_lossy(&wider.stderr).contains("needs a second approval"));
    let md = std::fs::read_to_string(repo.join("policy-diff.md")).unwrap();
    assert!(md.contains("#### member `lin.xue`") && md.contains("+ allowed on units presales"), "{md}");
}
