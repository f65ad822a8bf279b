//! A statement's kind as a metric label (`select`, `insert`, ...): the
//! first keyword after comments, mapped onto a small fixed set so labels
//! stay bounded.

/// The label of a statement's text.
pub fn statement_label(sql: &[u8]) -> &'static str {
    let word = first_word(sql);
    let word = &word[..word.len().min(16)];
    let lower = word.to_ascii_lowercase();
    match lower.as_slice() {
        b"select" | b"with" | b"values" | b"table" => "select",
        b"insert" => "insert",
        b"replace" => "replace",
        b"update" => "update",
        b"delete" => "delete",
        b"create" | b"alter" | b"drop" | b"truncate" | b"rename" => "ddl",
        b"begin" | b"start" | b"commit" | b"rollback" | b"savepoint" | b"release" | b"xa" => {
            "transaction"
        }
        b"set" => "set",
        b"show" | b"describe" | b"desc" | b"explain" => "show",
        b"use" => "use",
        b"preview" => "admin",
        _ => "other",
    }
}

/// The first keyword of a statement, after comments and parentheses.
pub fn first_word(sql: &[u8]) -> &[u8] {
    let mut rest = sql;
    loop {
        rest = rest.trim_ascii_start();
        if let Some(after) = rest.strip_prefix(b"(") {
            rest = after;
        } else if let Some(after) = rest.strip_prefix(b"/*") {
            let end = after.windows(2).position(|w| w == b"*/");
            rest = end.map_or(&[][..], |i| &after[i + 2..]);
        } else if rest.starts_with(b"--") || rest.starts_with(b"#") {
            let end = rest.iter().position(|&b| b == b'\n');
            rest = end.map_or(&[][..], |i| &rest[i + 1..]);
        } else {
            break;
        }
    }
    let len = rest
        .iter()
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    &rest[..len]
}

#[cfg(test)]
mod tests {
    use super::statement_label;

    #[test]
    fn labels_follow_the_first_keyword_after_comments() {
        for (sql, label) in [
            ("SELECT 1", "select"),
            ("  /* hint */ select * from users", "select"),
            ("-- note\nINSERT INTO t VALUES (1)", "insert"),
            ("(SELECT 1) UNION (SELECT 2)", "select"),
            ("start transaction read only", "transaction"),
            ("CREATE TABLE t (id INT)", "ddl"),
            ("SHOW TABLES", "show"),
            ("KILL 3", "other"),
            ("", "other"),
            ("/* unterminated", "other"),
        ] {
            assert_eq!(statement_label(sql.as_bytes()), label, "{sql}");
        }
    }
}
