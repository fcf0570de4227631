//! Who changed what, on the real PostgreSQL: the triggers record every member, binding and
//! tenant write with its actor (`rolegate.actor`, else the database role), the revision it made
//! and the row before and after; `rolegate history` lists them by tenant, member and time.

mod support;

use support::pg;

#[tokio::test]
async fn history_names_the_actor_revision_and_both_sides_of_every_change() {
    let Some(dsn) = pg::database("history").await else { return };
    let mut client = pg::connect(&dsn).await;
    pg::desk(&client, "shop").await;
    let disabled = pg::write(
        &mut client,
        "shop",
        "SET LOCAL rolegate.actor = 'alice@example.com';
         UPDATE rolegate.members SET status = 'disabled' WHERE tenant = 'shop' AND id = 'rep';",
    )
    .await;
    let granted = pg::write(
        &mut client,
        "shop",
        "INSERT INTO rolegate.bindings (tenant, member, id, role, scope, until)
         VALUES ('shop', 'other', 'export-approval-7', 'exporter', '\"tenant\"', '2030-01-01T00:00:00Z');",
    )
    .await;
    let revoked = pg::write(
        &mut client,
        "shop",
        "SET LOCAL rolegate.actor = 'bob@example.com';
         DELETE FROM rolegate.bindings WHERE tenant = 'shop' AND id = 'export-approval-7';",
    )
    .await;
    // A write that changes nothing a row holds is not history.
    pg::write(&mut client, "shop", "UPDATE rolegate.members SET status = 'active' WHERE id = 'other';").await;

    let all = pg::rolegate(&["history", "--source", &dsn, "--tenant", "shop"]);
    let lines: Vec<&str> = all.lines().collect();
    // The tenant, two members and two bindings of the desk, then the three changes above.
    assert_eq!(lines.len(), 8, "{all}");
    let disable = lines[5];
    assert!(
        disable.contains(&format!("rev {disabled}  alice@example.com  shop  member `rep`: status active -> disabled")),
        "{disable}"
    );
    let grant = lines[6];
    assert!(
        grant.contains(&format!(
            "rev {granted}  postgres  shop  binding `export-approval-7` of `other` added: role exporter"
        )),
        "{grant}"
    );
    assert!(grant.contains("until 2030-01-01"), "{grant}");
    let revoke = lines[7];
    assert!(
        revoke
            .contains(&format!("rev {revoked}  bob@example.com  shop  binding `export-approval-7` of `other` removed")),
        "{revoke}"
    );
    assert!(disabled < granted && granted < revoked);

    let rep = pg::rolegate(&["history", "--source", &dsn, "--tenant", "shop", "--member", "rep", "--json"]);
    let rows: Vec<serde_json::Value> = rep.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 3, "rep's member row, rep's binding, rep disabled: {rep}");
    let last = &rows[2];
    assert_eq!(last["op"], "update");
    assert_eq!(last["actor"], "alice@example.com");
    assert_eq!(last["before"]["status"], "active");
    assert_eq!(last["after"]["status"], "disabled");
    assert_eq!(last["revision"], disabled);

    let future = pg::rolegate(&["history", "--source", &dsn, "--since", "2099-01-01T00:00:00Z"]);
    assert_eq!(future, "");
    let recent = pg::rolegate(&["history", "--source", &dsn, "--since", "1h", "--limit", "2"]);
    assert_eq!(recent.lines().count(), 2, "{recent}");
    assert!(recent.lines().last().unwrap().contains("bob@example.com"), "{recent}");
}
