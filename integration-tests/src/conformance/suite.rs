//! Reading the peer suite (`shared/conformance/shardingsphere-e2e/`): the
//! case index, the data sets, the database lists and the init SQL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The three sharding scenarios the suite holds.
pub const SCENARIOS: [&str; 3] = ["db", "tbl", "dbtbl_with_readwrite_splitting"];

/// The suite's folder: `$SHARDGATE_SS_E2E_DIR`, else `../shared/conformance/shardingsphere-e2e`
/// beside the repository.
pub fn suite_dir() -> PathBuf {
    match std::env::var("SHARDGATE_SS_E2E_DIR") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => crate::crate_dir().join("../../shared/conformance/shardingsphere-e2e"),
    }
}

pub fn scenario_dir(suite: &Path, scenario: &str) -> PathBuf {
    suite.join("env/scenario").join(scenario)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Dql,
    Dml,
}

/// One line of `cases-index.tsv`.
#[derive(Clone, Debug)]
pub struct Case {
    pub file: String,
    pub case_no: u32,
    pub command: Command,
    pub sql: String,
    pub applicable: Vec<String>,
    /// One entry per assertion: its `parameters` string, if any.
    pub parameters: Vec<Option<String>>,
    /// `top`, `nested` or `none`.
    pub order_by: String,
    /// `destroy-sql` statements (run after each assertion).
    pub destroy_sql: Vec<String>,
}

impl Case {
    /// `e2e-dql-select-join.xml#3`
    pub fn id(&self) -> String {
        let name = self.file.rsplit('/').next().unwrap_or(&self.file);
        format!("{name}#{}", self.case_no)
    }
}

fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

pub fn load_cases(suite: &Path) -> Result<Vec<Case>, String> {
    let path = suite.join("cases-index.tsv");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or("empty cases-index.tsv")?
        .split('\t')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format!("cases-index.tsv has no column {name}"))
    };
    let (c_file, c_no, c_cmd, c_sql) =
        (col("file")?, col("case_no")?, col("command")?, col("sql")?);
    let (c_app, c_params, c_order, c_extra) = (
        col("applicable_scenarios")?,
        col("parameters")?,
        col("order_by")?,
        col("extra_sql")?,
    );
    let mut cases = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        let parameters: Vec<Option<String>> = serde_json::from_str(get(c_params))
            .map_err(|e| format!("parameters of {line}: {e}"))?;
        let mut destroy_sql = Vec::new();
        if !get(c_extra).is_empty() {
            let extra: serde_json::Value =
                serde_json::from_str(get(c_extra)).map_err(|e| format!("extra_sql: {e}"))?;
            for item in extra.as_array().into_iter().flatten() {
                if item["kind"] == "destroy-sql" {
                    if let Some(sql) = item["sql"].as_str() {
                        destroy_sql.push(sql.to_string());
                    }
                }
            }
        }
        cases.push(Case {
            file: get(c_file).to_string(),
            case_no: get(c_no).parse().map_err(|e| format!("case_no: {e}"))?,
            command: if get(c_cmd) == "DML" {
                Command::Dml
            } else {
                Command::Dql
            },
            sql: unescape(get(c_sql)),
            applicable: get(c_app).split(',').map(str::to_string).collect(),
            parameters,
            order_by: get(c_order).to_string(),
            destroy_sql,
        });
    }
    Ok(cases)
}

/// A bound parameter, typed as the case says.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    Int(i32),
    Long(i64),
    Double(f64),
    Text(String),
    Null,
}

impl Param {
    /// The value as SQL text (literal mode).
    pub fn literal(&self) -> String {
        match self {
            Param::Int(v) => v.to_string(),
            Param::Long(v) => v.to_string(),
            Param::Double(v) => v.to_string(),
            Param::Text(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''")),
            Param::Null => "null".into(),
        }
    }
}

/// `10:int, init:String` → [Int(10), Text("init")].
pub fn parse_params(text: &str) -> Result<Vec<Param>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|item| {
            let (value, ty) = item
                .rsplit_once(':')
                .ok_or_else(|| format!("parameter without type: {item:?}"))?;
            let value = value.trim();
            let ty = ty.trim().to_ascii_lowercase();
            if value == "null" {
                return Ok(Param::Null);
            }
            let bad = |e: &dyn std::fmt::Display| format!("parameter {item:?}: {e}");
            Ok(match ty.as_str() {
                "int" | "integer" | "tinyint" | "smallint" | "mediumint" | "year" => {
                    Param::Int(value.parse().map_err(|e| bad(&e))?)
                }
                "long" | "bigint" => Param::Long(value.parse().map_err(|e| bad(&e))?),
                "float" | "real" | "double" => Param::Double(value.parse().map_err(|e| bad(&e))?),
                _ => Param::Text(value.to_string()),
            })
        })
        .collect()
}

/// Calls `f` on each byte offset of `sql` that is outside string literals,
/// quoted identifiers and comments; `f` returns how many bytes it consumed
/// (0 to let the scanner step over one character).
fn scan_code(sql: &str, mut f: impl FnMut(usize) -> usize) {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() {
                    if b[i] == b'\\' && q != b'`' {
                        i += 2;
                        continue;
                    }
                    if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            _ => {
                let used = f(i);
                i += used.max(1);
            }
        }
    }
}

/// The SQL with each `?` replaced by the matching parameter's literal.
pub fn substitute(sql: &str, params: &[Param]) -> Result<String, String> {
    let mut marks = Vec::new();
    scan_code(sql, |i| {
        if sql.as_bytes()[i] == b'?' {
            marks.push(i);
        }
        0
    });
    if marks.len() != params.len() {
        return Err(format!(
            "{} placeholders but {} parameters",
            marks.len(),
            params.len()
        ));
    }
    let mut out = String::new();
    let mut last = 0;
    for (mark, param) in marks.iter().zip(params) {
        out.push_str(&sql[last..*mark]);
        out.push_str(&param.literal());
        last = mark + 1;
    }
    out.push_str(&sql[last..]);
    Ok(out)
}

/// How many `?` placeholders the SQL holds.
pub fn placeholder_count(sql: &str) -> usize {
    let mut n = 0;
    scan_code(sql, |i| {
        if sql.as_bytes()[i] == b'?' {
            n += 1;
        }
        0
    });
    n
}

/// The identifiers (and keywords) outside literals and comments, lowercased,
/// with backticked names unquoted, in order.
pub fn words(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = sql.as_bytes();
    // backticked identifiers are skipped by scan_code: collect them separately
    // in order by scanning for them here
    let mut spans: Vec<(usize, String)> = Vec::new();
    scan_code(sql, |i| {
        let c = b[i];
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'$') {
                j += 1;
            }
            spans.push((i, sql[i..j].to_ascii_lowercase()));
            j - i
        } else {
            0
        }
    });
    let mut i = 0;
    while let Some(pos) = sql[i..].find('`') {
        let start = i + pos + 1;
        match sql[start..].find('`') {
            Some(len) => {
                // only if this backtick is code (not inside a string): a
                // cheap check, enough for the suite's SQL
                spans.push((start, sql[start..start + len].to_ascii_lowercase()));
                i = start + len + 1;
            }
            None => break,
        }
    }
    spans.sort_by_key(|(pos, _)| *pos);
    out.extend(spans.into_iter().map(|(_, w)| w));
    out
}

/// Splits a script on `;` outside literals and comments, dropping comments
/// and empty statements.
pub fn split_statements(script: &str) -> Vec<String> {
    let mut cuts = Vec::new();
    scan_code(script, |i| {
        if script.as_bytes()[i] == b';' {
            cuts.push(i);
        }
        0
    });
    let mut out = Vec::new();
    let mut last = 0;
    for cut in cuts.into_iter().chain(std::iter::once(script.len())) {
        let piece = &script[last..cut.min(script.len())];
        last = cut + 1;
        let code: String = piece
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        let code = code.trim();
        if !code.is_empty() {
            out.push(code.to_string());
        }
    }
    out
}

/// Expands `db_${0..9}.t_order, db_0.t_user` into (database, table) pairs.
pub fn expand_nodes(expr: &str) -> Result<Vec<(String, String)>, String> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in expr.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    let mut out = Vec::new();
    for part in parts {
        for name in expand_one(part.trim())? {
            let (db, table) = name
                .split_once('.')
                .ok_or_else(|| format!("data node without a database: {name}"))?;
            out.push((db.to_string(), table.to_string()));
        }
    }
    Ok(out)
}

fn expand_one(text: &str) -> Result<Vec<String>, String> {
    let Some(start) = text.find("${").or_else(|| text.find("$->{")) else {
        return Ok(vec![text.to_string()]);
    };
    let open = text[start..].find('{').unwrap() + start;
    let close = text[open..]
        .find('}')
        .ok_or_else(|| format!("unclosed ${{ in {text}"))?
        + open;
    let body = &text[open + 1..close];
    let values: Vec<String> = if let Some((a, b)) = body.split_once("..") {
        let a: i64 = a.trim().parse().map_err(|e| format!("{text}: {e}"))?;
        let b: i64 = b.trim().parse().map_err(|e| format!("{text}: {e}"))?;
        (a..=b).map(|v| v.to_string()).collect()
    } else if let Some(list) = body
        .trim()
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
    {
        list.split(',')
            .map(|s| s.trim().trim_matches('\'').trim_matches('"').to_string())
            .collect()
    } else {
        return Err(format!("unsupported inline expression {text}"));
    };
    let mut out = Vec::new();
    for v in values {
        for rest in expand_one(&text[close + 1..])? {
            out.push(format!("{}{v}{rest}", &text[..start]));
        }
    }
    Ok(out)
}

/// The rows a data set gives one physical (or reference) table.
#[derive(Clone, Debug, Default)]
pub struct TableData {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// `dataset.xml`: every declared data node (database, table) with its rows;
/// nodes declared without rows are present and empty.
pub fn load_dataset(path: &Path) -> Result<BTreeMap<(String, String), TableData>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc = roxmltree::Document::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out: BTreeMap<(String, String), TableData> = BTreeMap::new();
    let root = doc.root_element();
    for meta in root.children().filter(|n| n.has_tag_name("metadata")) {
        let columns: Vec<String> = meta
            .children()
            .filter(|n| n.has_tag_name("column"))
            .filter_map(|n| n.attribute("name").map(str::to_string))
            .collect();
        for node in expand_nodes(meta.attribute("data-nodes").unwrap_or_default())? {
            out.insert(
                node,
                TableData {
                    columns: columns.clone(),
                    rows: Vec::new(),
                },
            );
        }
    }
    for row in root.children().filter(|n| n.has_tag_name("row")) {
        let node = row.attribute("data-node").unwrap_or_default();
        let (db, table) = node
            .split_once('.')
            .ok_or_else(|| format!("row without a data node in {}", path.display()))?;
        let data = out
            .get_mut(&(db.to_string(), table.to_string()))
            .ok_or_else(|| format!("row of undeclared node {node} in {}", path.display()))?;
        let values: Vec<Option<String>> = row
            .attribute("values")
            .unwrap_or_default()
            .split(", ")
            .map(|v| (v != "null").then(|| v.to_string()))
            .collect();
        if values.len() != data.columns.len() {
            return Err(format!(
                "row of {node} has {} values for {} columns",
                values.len(),
                data.columns.len()
            ));
        }
        data.rows.push(values);
    }
    Ok(out)
}

/// `databases.xml`: the database names, in order.
pub fn load_databases(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc = roxmltree::Document::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(doc
        .descendants()
        .filter(|n| n.has_tag_name("database"))
        .filter_map(|n| n.attribute("name").map(str::to_string))
        .collect())
}

/// The statements of every `*.sql` file of a folder, files in name order.
pub fn load_init_sql(dir: &Path) -> Result<Vec<String>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        out.extend(split_statements(&text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_literals() {
        let p = parse_params("10:int, init:String,1000:long, null:int").unwrap();
        assert_eq!(
            p,
            vec![
                Param::Int(10),
                Param::Text("init".into()),
                Param::Long(1000),
                Param::Null
            ]
        );
        let sql = "SELECT '?' FROM t WHERE a = ? AND b LIKE CONCAT('%%', ?, '%%') -- ?\n AND c = ? AND d IS ?";
        let out = substitute(sql, &p).unwrap();
        assert_eq!(
            out,
            "SELECT '?' FROM t WHERE a = 10 AND b LIKE CONCAT('%%', 'init', '%%') -- ?\n AND c = 1000 AND d IS null"
        );
    }

    #[test]
    fn nodes_and_words() {
        let n = expand_nodes("db_${0..2}.t_order_${0..1}, db_0.t_user").unwrap();
        assert_eq!(n.len(), 7);
        assert_eq!(n[1], ("db_0".into(), "t_order_1".into()));
        assert_eq!(n[6], ("db_0".into(), "t_user".into()));
        let w = words(
            "SELECT i.* FROM `t_order` o JOIN t_order_item i /* t_user */ WHERE x='t_merchant'",
        );
        assert_eq!(
            w,
            [
                "select",
                "i",
                "from",
                "t_order",
                "o",
                "join",
                "t_order_item",
                "i",
                "where",
                "x"
            ]
        );
    }
}
