//! Statement analysis and the sharding rewrite: a node's statement is the
//! client's with table names spliced in, and nothing else changed.
//!
//! The input is a statement's bytes in a character set the first byte
//! picks; with its bit 2 set, each `$` in it becomes a spelling of a table
//! of the seed's rules (`users`, `` `wework`.`USERS` ``, `sys_configs`, ...),
//! so that most inputs name routed tables. The statement is analysed and
//! planned against `examples/wework.toml`'s rules, text protocol, no
//! parameters. Checked beyond "no panic":
//! - the analysis text gives back the client's bytes exactly (`restore`);
//! - its token list reads back the lexer's tokens (`lex::TokenList`);
//! - each replacement is a range of the text, on character boundaries,
//!   sorted, whose text names its table (`users`, `` `users` ``,
//!   `wework.users`, any case);
//! - the statement of every node of the layout (`node_target`), and each
//!   target of a planned `One`, `Concat` or non-INSERT `Fanout` route, is
//!   the client's text with each replacement's range (an overlapping one
//!   left out) replaced by a backquoted physical name of that table; as
//!   bytes (`to_bytes`), the client's bytes outside those ranges are
//!   unchanged;
//! - every target's data source is one of the rules' data sources.
//!
//! Merged SELECTs add columns and tails of their own and INSERTs regroup
//! their rows; their node statements are checked by `node_target` (the
//! same statement before those edits) and for their data sources only.
#![no_main]

use std::borrow::Cow;

use fuzz_support::{seed, LOGICAL_DB};
use libfuzzer_sys::fuzz_target;
use shardgate_rules::ColumnKinds;
use shardgate_rules::ShardingRules;
use shardgate_sql::dialect::{Dialect, MARIADB};
use shardgate_sql::lex::{Lexer, TokenList};
use shardgate_sql::shard::analyze::{analyze, Analysis, Replacement};
use shardgate_sql::shard::node_sql::NodeSql;
use shardgate_sql::shard::plan::{check_supported, node_target, plan, PlanContext, Route, Target};
use shardgate_sql::text::{analysis_text, restore, ClientCharset};

const CHARSETS: [&str; 4] = ["utf8mb4", "latin1", "gbk", "utf8mb4"];

/// Ways a statement may name the seed's tables (and one it does not shard).
const SPELLINGS: [&str; 12] = [
    "users",
    "USERS",
    "`users`",
    "wework.users",
    "`wework`.`Users`",
    "wework . users",
    "message_records",
    "`message_records`",
    "sys_configs",
    "wework.sys_dictionaries",
    "orders",
    "other_db.users",
];

/// `bytes` with its `$`s replaced by table spellings, starting at `first`.
fn with_table_names(bytes: &[u8], first: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 32);
    let mut k = first;
    for &b in bytes {
        if b == b'$' {
            out.extend_from_slice(SPELLINGS[k % SPELLINGS.len()].as_bytes());
            k += 1;
        } else {
            out.push(b);
        }
    }
    out
}

/// A backquoted identifier at the start of `text`: its name and length.
fn backquoted(text: &str) -> Option<(String, usize)> {
    let rest = text.strip_prefix('`')?;
    let mut name = String::new();
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '`' {
            if chars.peek().map(|(_, c)| *c) == Some('`') {
                chars.next();
                name.push('`');
                continue;
            }
            return Some((name, i + 2));
        }
        name.push(c);
    }
    None
}

/// The parts of a (possibly qualified) table name as a statement wrote
/// it, unquoted: `wework . `users`` gives ["wework", "users"].
fn name_parts(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.starts_with('`') {
            let (name, len) = backquoted(rest)?;
            parts.push(name);
            rest = &rest[len..];
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '.')
                .unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            parts.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
        rest = rest.trim_start();
        match rest.strip_prefix('.') {
            Some(after) => rest = after,
            None => return rest.is_empty().then_some(parts),
        }
    }
}

fn check_replacements(sql: &str, replacements: &[Replacement]) {
    let mut previous: Option<usize> = None;
    for r in replacements {
        assert!(
            r.start < r.end && r.end <= sql.len(),
            "replacement {r:?} is no range of the {} bytes of text",
            sql.len()
        );
        assert!(
            sql.is_char_boundary(r.start) && sql.is_char_boundary(r.end),
            "replacement {r:?} cuts a character"
        );
        assert!(
            previous.is_none_or(|p| p < r.start),
            "replacements out of order"
        );
        previous = Some(r.start);
        let written = &sql[r.start..r.end];
        let parts = name_parts(written)
            .unwrap_or_else(|| panic!("replacement {r:?} covers {written:?}, not a table name"));
        let (table, qualifiers) = parts.split_last().expect("a name has a part");
        assert_eq!(
            table.to_ascii_lowercase(),
            r.table,
            "replacement {r:?} covers {written:?}"
        );
        assert!(
            qualifiers.is_empty()
                || (qualifiers.len() == 1 && qualifiers[0].eq_ignore_ascii_case(LOGICAL_DB)),
            "replacement {r:?} covers {written:?}, qualified by another database"
        );
    }
}

/// The length of the backquoted physical name of logical table `table`
/// that starts `text`, if one does: the node's table for a sharded table,
/// the same name for a broadcast one. Matched as whole quoted names, not
/// parsed: two names spliced side by side (`` `users_0``users_0` ``, from
/// two table names with nothing between them, which no valid statement
/// has) still read as two.
fn spliced_name(rules: &ShardingRules, table: &str, text: &str) -> Option<usize> {
    std::iter::once(table.to_owned())
        .chain(rules.nodes(table).into_iter().map(|n| n.table))
        .map(|name| MARIADB.quoted(&name))
        .filter(|quoted| text.starts_with(quoted.as_str()))
        .map(|quoted| quoted.len())
        .max()
}

/// The property: `node` is `sql` with each kept replacement's range
/// replaced by a backquoted physical name of its table, as text and as
/// the client's bytes (`restore` of the text's ranges: the caller checked
/// that `sql` restores to the client's bytes).
fn check_spliced(
    sql: &str,
    replacements: &[Replacement],
    node: &NodeSql<'_>,
    rules: &ShardingRules,
) {
    let text = node.text();
    let mut expected_bytes = Vec::with_capacity(sql.len() + 32);
    let (mut from, mut at) = (0, 0);
    for r in replacements {
        if r.start < from {
            continue;
        }
        let shared = &sql[from..r.start];
        assert!(
            text[at..].starts_with(shared),
            "node text changed outside the table names:\n  client: {sql:?}\n  node:   {text:?}\n  before replacement {r:?}"
        );
        at += shared.len();
        expected_bytes.extend_from_slice(&restore(shared));
        let len = spliced_name(rules, &r.table, &text[at..]).unwrap_or_else(|| {
            panic!(
                "no physical name of table {} for {r:?}:\n  client: {sql:?}\n  node:   {text:?}",
                r.table
            )
        });
        expected_bytes.extend_from_slice(text[at..at + len].as_bytes());
        at += len;
        from = r.end;
    }
    assert_eq!(
        &text[at..],
        &sql[from..],
        "node text changed after the last table name:\n  client: {sql:?}\n  node:   {text:?}"
    );
    expected_bytes.extend_from_slice(&restore(&sql[from..]));
    assert_eq!(
        node.to_bytes(),
        expected_bytes,
        "node bytes differ from the client's outside the table names"
    );
}

fn check_data_source(rules: &ShardingRules, target: &Target<'_>) {
    assert!(
        rules.data_sources().contains(&target.data_source),
        "target on unknown data source {}",
        target.data_source
    );
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let charset = ClientCharset::named(CHARSETS[usize::from(mode & 3)]);
    let bytes: Cow<'_, [u8]> = if mode & 4 != 0 {
        Cow::Owned(with_table_names(rest, usize::from(mode >> 3)))
    } else {
        Cow::Borrowed(rest)
    };
    let sql = analysis_text(&bytes, charset);
    assert_eq!(
        restore(&sql),
        bytes,
        "the analysis text does not restore the client's bytes"
    );
    assert!(
        TokenList::of(&sql).tokens().iter().eq(Lexer::new(&sql)),
        "a token list reads back other tokens than the lexer made"
    );
    let seed = seed();
    let rules = &seed.rules;
    let Ok(Analysis::Sharded(st)) = analyze(&sql, &MARIADB, rules, LOGICAL_DB) else {
        return;
    };
    check_replacements(&sql, &st.replacements);
    let ctx = PlanContext {
        rules,
        default_data_source: &seed.config.server.default_data_source,
        keys: &seed.keys,
        kinds: ColumnKinds::none(),
        dialect: &MARIADB,
    };
    if check_supported(&st, &ctx).is_ok() {
        for position in 0.. {
            let Some(target) = node_target(&st, &sql, position, &ctx) else {
                break;
            };
            check_data_source(rules, &target);
            check_spliced(&sql, &st.replacements, &target.sql, rules);
        }
    }
    let Ok(route) = plan(&st, &sql, &[], true, &ctx) else {
        return;
    };
    let spliced: &[Target<'_>] = match &route {
        Route::One(target) => std::slice::from_ref(target),
        Route::Concat(targets) => targets,
        Route::Fanout {
            targets,
            insert_rows,
            ..
        } if insert_rows.is_empty() => targets,
        Route::Fanout { targets, .. } | Route::Merge { targets, .. } => {
            targets.iter().for_each(|t| check_data_source(rules, t));
            return;
        }
    };
    for target in spliced {
        check_data_source(rules, target);
        check_spliced(&sql, &st.replacements, &target.sql, rules);
    }
});
