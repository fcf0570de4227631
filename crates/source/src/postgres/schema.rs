//! The schema that holds rolegate's tables. The live policy is in `rolegate`; a candidate policy
//! for shadow evaluation (docs/operations.md, "Roll out with shadow evaluation") can live beside
//! it in another schema of the same database, with its own tables, change log, revisions and
//! notification channel.
//!
//! Every statement, migration and trigger function names its tables as `rolegate.…` (trigger
//! functions run with the writer's `search_path`, so unqualified names would be resolved
//! wherever the writer happens to point). Another schema is reached by rewriting those
//! qualifiers, and the notification channel is the schema's name, so a write to a candidate
//! never wakes a live follower and the reverse.

use std::borrow::Cow;

/// A validated schema name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema(String);

/// The schema of the live policy, and the name every SQL text in this crate is written with.
pub const DEFAULT: &str = "rolegate";

/// PostgreSQL truncates identifiers longer than this many bytes (`NAMEDATALEN` - 1).
const MAX_LEN: usize = 63;

impl Default for Schema {
    fn default() -> Schema {
        Schema(DEFAULT.to_owned())
    }
}

impl std::fmt::Display for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Schema {
    /// Checks a schema name: 1 to 63 lowercase ASCII letters, digits and `_`, not starting with
    /// a digit, and not a system schema (`pg_…`, `information_schema`).
    pub fn parse(name: &str) -> Result<Schema, String> {
        let valid = !name.is_empty()
            && name.len() <= MAX_LEN
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!(
                "`{}` is not a schema name: use 1 to {MAX_LEN} lowercase letters, digits and `_`, not starting with a digit",
                name.escape_debug()
            ));
        }
        if name.starts_with("pg_") || name == "information_schema" {
            return Err(format!("`{name}` is a system schema"));
        }
        Ok(Schema(name.to_owned()))
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// True for the live policy's schema, `rolegate`.
    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT
    }

    /// The name as an SQL identifier.
    pub fn ident(&self) -> String {
        // INVARIANT: `parse` admits no `"`, so quoting needs no escaping.
        if self.is_default() { self.0.clone() } else { format!("\"{}\"", self.0) }
    }

    /// The channel the triggers notify and followers LISTEN on: the schema's name.
    pub fn channel(&self) -> &str {
        &self.0
    }

    /// `sql`, written for the `rolegate` schema, for this one: every `rolegate.` qualifier (in
    /// statements, function bodies and regclass literals) names this schema, and the triggers
    /// notify this schema's channel. The writer's `rolegate.actor` setting keeps its name.
    pub fn sql<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        if self.is_default() {
            return Cow::Borrowed(sql);
        }
        const QUALIFIER: &str = "rolegate.";
        const SETTING: &str = "rolegate.actor'";
        let ident = self.ident();
        let mut out = String::with_capacity(sql.len() + 64);
        let mut rest = sql;
        while let Some(at) = rest.find("rolegate") {
            let (before, from) = rest.split_at(at);
            out.push_str(before);
            let word_start = !out.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
            if word_start && from.starts_with(QUALIFIER) && !from.starts_with(SETTING) {
                out.push_str(&ident);
                out.push('.');
                rest = &from[QUALIFIER.len()..];
            } else if out.ends_with("pg_notify('") && from.starts_with("rolegate'") {
                out.push_str(self.channel());
                rest = &from["rolegate".len()..];
            } else {
                out.push_str("rolegate");
                rest = &from["rolegate".len()..];
            }
        }
        out.push_str(rest);
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_identifier_rules_are_refused_with_the_reason() {
        for bad in ["", "Candidate", "1st", "cand-1", "cand.x", "cand\"; DROP", "a b", &"x".repeat(64)] {
            assert!(Schema::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(Schema::parse("pg_catalog").unwrap_err(), "`pg_catalog` is a system schema");
        assert!(Schema::parse("information_schema").is_err());
        for good in ["candidate", "rolegate_next", "_x1", &"x".repeat(63)] {
            assert_eq!(Schema::parse(good).unwrap().name(), good);
        }
    }

    #[test]
    fn the_default_schema_leaves_sql_as_written() {
        let sql = "SELECT rolegate.revision($1); SELECT pg_notify('rolegate', 'x')";
        assert!(matches!(Schema::default().sql(sql), Cow::Borrowed(s) if s == sql));
    }

    #[test]
    fn another_schema_rewrites_qualifiers_and_the_channel_but_not_the_actor_setting() {
        let s = Schema::parse("candidate").unwrap();
        let sql = "CREATE TABLE rolegate.members (x int); \
                   head rolegate.tenant_revisions; nextval('rolegate.change_id'); \
                   PERFORM pg_notify('rolegate', p_tenant); \
                   coalesce(nullif(current_setting('rolegate.actor', true), ''), session_user::text); \
                   rolegate.actor(); not_rolegate.x; rolegate_x.y";
        assert_eq!(
            s.sql(sql),
            "CREATE TABLE \"candidate\".members (x int); \
             head \"candidate\".tenant_revisions; nextval('\"candidate\".change_id'); \
             PERFORM pg_notify('candidate', p_tenant); \
             coalesce(nullif(current_setting('rolegate.actor', true), ''), session_user::text); \
             \"candidate\".actor(); not_rolegate.x; rolegate_x.y"
        );
    }

    #[test]
    fn every_migration_names_only_the_candidate_once_rewritten() {
        let s = Schema::parse("candidate").unwrap();
        for (_, name, sql) in super::super::migrate::MIGRATIONS {
            let out = s.sql(sql);
            let code = out.lines().filter(|l| !l.trim_start().starts_with("--"));
            let left: Vec<&str> = code
                .filter(|l| l.replace("'rolegate.actor'", "").contains("rolegate.") || l.contains("'rolegate'"))
                .collect();
            assert!(left.is_empty(), "{name}: {left:#?}");
        }
    }
}
