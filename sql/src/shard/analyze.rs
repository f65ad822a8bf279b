//! What a statement does with sharded and broadcast tables: which logical
//! tables it names and where (so `rewrite` can splice physical names into
//! the original text), the sharding conditions of its WHERE clause, and the
//! shape of a SELECT or INSERT that routing and merging need.
//!
//! Statements that name no sharded or broadcast table are not parsed at all:
//! they go to the default data source as they are.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::ops::ControlFlow;

use shardgate_rules::{ShardValue, ShardingRules, TableKind};
use sqlparser::ast::{
    visit_expressions, visit_relations, BinaryOperator, Expr, FromTable, GroupByExpr, InTarget,
    ObjectName, ObjectNamePart, Query, SelectItem, SetExpr, Spanned, Statement, TableFactor,
    UnaryOperator, Value,
};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Location;

use super::condensed::Condensed;
use crate::dialect::{Dialect, Placeholder};
use crate::lex::{Lexer, Span, Spanned as Lexeme, Token, TokenList, Tokens};

/// A value in a condition: a literal, or the n-th `?` of a prepared statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Lit(ShardValue),
    /// A number literal that is not a BIGINT (`7.50`, `1e3`, beyond
    /// BIGINT), as written: the column's type decides what it is.
    Number(String),
    Param(usize),
}

/// A condition on sharding columns, with parameters still unbound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    Eq(String, Val),
    In(String, Vec<Val>),
    /// The `IN` of the integers of a cut list or run (see `condensed`),
    /// as the statement's text holds them at this range: read when the
    /// statement is planned, never held here. As `Val`s, a 1,000,000-value
    /// list cost 32 MiB, and as much again resolved.
    InText(String, std::ops::Range<usize>),
    Between(String, Val, Val),
    Lt(String, Val),
    Le(String, Val),
    Gt(String, Val),
    Ge(String, Val),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Unknown,
}

/// What kind of statement, as far as routing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    /// CREATE / ALTER / DROP / TRUNCATE TABLE, CREATE / DROP INDEX.
    Ddl,
    /// SHOW COLUMNS / CREATE TABLE / INDEX, DESCRIBE: answered by one node.
    Describe,
}

impl StatementKind {
    /// Whether the statement answers with rows.
    pub fn returns_rows(self) -> bool {
        matches!(self, StatementKind::Select | StatementKind::Describe)
    }
}

/// A place in the text where a logical table name stands (possibly with
/// the logical database as qualifier), to be replaced by a physical name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub start: usize,
    pub end: usize,
    pub table: String,
}

/// The parts of a SELECT that decide how node results combine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectShape {
    pub order_by: bool,
    pub limit: bool,
    pub group_by: bool,
    pub having: bool,
    pub distinct: bool,
    pub aggregates: bool,
    /// Locking reads (FOR UPDATE / LOCK IN SHARE MODE).
    pub locking: bool,
    /// UNION, subqueries or derived tables in the statement.
    pub compound: bool,
}

/// One row of an INSERT ... VALUES: its text range (its values are the
/// shape's, [`InsertShape::row_values`]), in 8 bytes: a 20 MiB INSERT may
/// have millions of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsertRow(Span);

impl InsertRow {
    fn new(start: usize, end: usize) -> Self {
        InsertRow(Span::of(start, end))
    }

    pub fn start(&self) -> usize {
        self.0.start()
    }

    pub fn end(&self) -> usize {
        self.0.end()
    }
}

/// A kept row value as [`Packed`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    Absent,
    Null,
    Int(i64),
    Param(usize),
    /// Index into [`KeptValues::others`].
    Other(usize),
}

/// A [`Kept`] in 8 bytes (an `Option<Val>` takes 32, a `Kept` 16): what it
/// is in the low two bits, its integer or index above them. A 20 MB INSERT
/// of short rows keeps a value for each of some 1.5 million rows.
/// Integers beyond 62 bits are kept as [`Kept::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packed(u64);

impl Packed {
    const SPECIAL: u64 = 0;
    const INT: u64 = 1;
    const PARAM: u64 = 2;
    const OTHER: u64 = 3;
    const ABSENT: Packed = Packed(Self::SPECIAL);
    const NULL: Packed = Packed(4 | Self::SPECIAL);

    /// An integer of at most 62 bits.
    fn int(i: i64) -> Option<Packed> {
        Some(Packed(i.checked_mul(4)? as u64 | Self::INT))
    }

    /// A parameter's or an other value's index: below 2^62, as a count
    /// of things in memory or in a statement.
    fn index(tag: u64, n: usize) -> Packed {
        Packed((n as u64) << 2 | tag)
    }

    fn kept(self) -> Kept {
        let payload = self.0 >> 2;
        match self.0 & 3 {
            Self::INT => Kept::Int(self.0 as i64 >> 2),
            Self::PARAM => Kept::Param(payload as usize),
            Self::OTHER => Kept::Other(payload as usize),
            _ if payload == 0 => Kept::Absent,
            _ => Kept::Null,
        }
    }
}

/// The kept values of an INSERT's rows, row after row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct KeptValues {
    values: Vec<Packed>,
    others: Vec<Val>,
}

impl KeptValues {
    fn push(&mut self, value: Option<Val>) {
        let inline = match &value {
            None => Some(Packed::ABSENT),
            Some(Val::Lit(ShardValue::Int(i))) => Packed::int(*i),
            Some(Val::Lit(ShardValue::Null)) => Some(Packed::NULL),
            Some(Val::Param(p)) => Some(Packed::index(Packed::PARAM, *p)),
            Some(_) => None,
        };
        let packed = inline.unwrap_or_else(|| {
            let other = self.others.len();
            self.others.extend(value);
            Packed::index(Packed::OTHER, other)
        });
        self.values.push(packed);
    }

    fn get(&self, i: usize) -> Option<Cow<'_, Val>> {
        match self.values.get(i)?.kept() {
            Kept::Absent => None,
            Kept::Int(i) => Some(Cow::Owned(Val::Lit(ShardValue::Int(i)))),
            Kept::Null => Some(Cow::Owned(Val::Lit(ShardValue::Null))),
            Kept::Param(p) => Some(Cow::Owned(Val::Param(p))),
            Kept::Other(k) => self.others.get(k).map(Cow::Borrowed),
        }
    }
}

/// Which values of an INSERT's rows the analysis keeps: those of its
/// table's sharding columns, the only ones routing reads. A kept value
/// costs a `Val` (32 bytes, a string's text copied): for a 100,000-row
/// INSERT, all of them took 8 times the statement's size. All of them
/// when the statement lists no columns (the session learns them later).
#[derive(Debug)]
pub(crate) struct RoutedValues {
    /// By listed column; None: every column.
    read: Option<Vec<bool>>,
    /// How many leading values each row keeps: up to the last one read.
    width: usize,
}

impl RoutedValues {
    /// For `columns` of `table`; `first_row` values in the first row (the
    /// width of rows when no columns are listed).
    fn of(rules: &ShardingRules, table: &str, columns: &[String], first_row: usize) -> Self {
        if columns.is_empty() {
            return RoutedValues {
                read: None,
                width: first_row,
            };
        }
        let sharding = rules.sharding_columns(table);
        let read: Vec<bool> = columns
            .iter()
            .map(|c| sharding.iter().any(|s| s.eq_ignore_ascii_case(c)))
            .collect();
        let width = read.iter().rposition(|r| *r).map_or(0, |last| last + 1);
        RoutedValues {
            read: Some(read),
            width,
        }
    }

    fn reads(&self, column: usize) -> bool {
        self.read
            .as_ref()
            .is_none_or(|read| read.get(column).copied().unwrap_or(false))
    }

    /// Appends a row's kept values to `out`, each read by `value`: exactly
    /// `width` of them, None past the row's end.
    fn push_row<T>(&self, out: &mut KeptValues, row: &[T], value: impl Fn(&T) -> Option<Val>) {
        for i in 0..self.width {
            out.push(match row.get(i) {
                Some(v) if self.reads(i) => value(v),
                _ => None,
            });
        }
    }
}

/// The shape of an INSERT / REPLACE ... VALUES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertShape {
    /// Listed columns, lower case; empty when the statement lists none.
    pub columns: Vec<String>,
    /// Byte offset just after the last listed column (inside the parentheses).
    pub columns_end: Option<usize>,
    pub rows: Vec<InsertRow>,
    /// The values of the rows that routing reads ([`RoutedValues`]), the
    /// same number for each row, row after row: one vector for them all,
    /// not one per row (each a heap block of its own).
    values: KeptValues,
    row_width: usize,
    /// ON DUPLICATE KEY UPDATE assigns a sharding column.
    pub updates_sharding_column: bool,
    /// `INSERT ... SET col = value, ...`: one row, its assignments as the row.
    pub set_form: bool,
    /// No column list: `columns` is the table's own order, filled in by the
    /// session from the table's definition before planning.
    pub implicit_columns: bool,
}

impl InsertShape {
    /// Row `i`'s kept value of listed column `column`: Some for a literal or `?`,
    /// None for an expression the proxy does not evaluate or a value it
    /// does not keep (those of columns that do not route).
    pub fn row_value(&self, i: usize, column: usize) -> Option<Cow<'_, Val>> {
        if column >= self.row_width {
            return None;
        }
        self.values
            .get(i.checked_mul(self.row_width)?.checked_add(column)?)
    }
}

/// The analysis of a statement that names sharded or broadcast tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardedStatement {
    pub kind: StatementKind,
    /// Logical tables named, lower case, each once.
    pub tables: Vec<String>,
    /// Other tables the statement names (unsharded ones on the default data source).
    pub other_tables: Vec<String>,
    pub replacements: Vec<Replacement>,
    /// Select items whose label would name a physical table (see `labels`).
    pub unlabelled: Vec<std::ops::Range<usize>>,
    /// Sharding conditions of the WHERE clause.
    pub condition: Cond,
    /// The parameter markers, in text order.
    pub placeholders: Vec<Placeholder>,
    pub select: SelectShape,
    pub insert: Option<InsertShape>,
    /// UPDATE assigns a sharding column.
    pub updates_sharding_column: bool,
    /// UPDATE / DELETE with ORDER BY or LIMIT.
    pub ordered_write: bool,
    /// For a SELECT whose rows need merging across nodes: how, or why not.
    pub scatter: Option<Result<super::scatter::ScatterSelect, super::error::Unmergeable>>,
    /// Tables joined on equal sharding columns (for binding tables).
    pub sharding_joins: Vec<(String, String)>,
    /// INSERT / REPLACE / DELETE ... RETURNING: the write answers with rows.
    pub returning: bool,
    /// A long `IN` list the WHERE clause requires: each node is sent only
    /// its own values.
    pub split_list: Option<SplitList>,
}

/// A cut list of integers (see `condensed`) of a sharding column's `IN`,
/// or an OR of `column = integer` terms with a cut run among them, that
/// stands as a conjunct of the WHERE clause, outside any other OR or NOT:
/// no row a node holds can match a value that routes elsewhere, so each
/// node's statement carries only the values that route to it. A node's
/// server then reads a 200,000-value list once, not once per table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitList {
    /// The logical table whose sharding column it is.
    pub table: String,
    pub column: String,
    /// The list's items in the statement, from the first one's start to
    /// the last one's end; or a run's values, from its first term's
    /// value to its last one's.
    pub items: std::ops::Range<usize>,
    /// What a node's statement writes between two of its items: `, `, or
    /// ` OR column = ` as the run writes it.
    pub separator: String,
}

impl ShardedStatement {
    /// Whether the statement answers with rows (a SELECT, a SHOW, a write
    /// with RETURNING).
    pub fn returns_rows(&self) -> bool {
        self.kind.returns_rows() || self.returning
    }

    /// Replaces the text of every string value of its conditions and rows.
    pub fn map_text_values(&mut self, f: impl Fn(&str) -> String) {
        let text = |v: &mut Val| {
            if let Val::Lit(ShardValue::Text(t)) = v {
                *t = f(t);
            }
        };
        self.condition.for_each_value(&mut |v| text(v));
        for v in self
            .insert
            .iter_mut()
            .flat_map(|i| i.values.others.iter_mut())
        {
            text(v);
        }
    }
}

impl Cond {
    fn for_each_value(&mut self, f: &mut impl FnMut(&mut Val)) {
        match self {
            Cond::Eq(_, v) | Cond::Lt(_, v) | Cond::Le(_, v) | Cond::Gt(_, v) | Cond::Ge(_, v) => {
                f(v)
            }
            Cond::In(_, vs) => vs.iter_mut().for_each(f),
            // Integers only.
            Cond::InText(..) => {}
            Cond::Between(_, a, b) => {
                f(a);
                f(b);
            }
            Cond::And(cs) | Cond::Or(cs) => cs.iter_mut().for_each(|c| c.for_each_value(f)),
            Cond::Unknown => {}
        }
    }
}

/// The analysis of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Analysis {
    /// Names no sharded or broadcast table.
    Unsharded,
    Sharded(Box<ShardedStatement>),
}

/// Why a statement that names sharded tables cannot be analysed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AnalyzeError {
    #[error("ShardGate cannot parse this statement on sharded table(s) {tables}: {reason}")]
    Unparsable { tables: String, reason: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("ShardGate does not analyse statements on sharded table(s) {tables} of more than {MAX_PARSED_TOKENS} tokens (this one has {tokens}; a SELECT counts as {SELECT_COST}, the items of long IN lists of integers and of runs of `OR column = integer`, and INSERT rows of plain values, are not counted): send it as several smaller statements")]
    TooLarge { tables: String, tokens: usize },
}

/// The most tokens of a statement on sharded tables that the analysis
/// parses, not counting what `condensed` cuts. sqlparser's tokens and tree
/// take up to some 600 bytes per token (an INSERT of 50,000 rows of
/// `(n, CONCAT('n', n))`, 1.5 MiB, took 321 MiB; a function call's
/// arguments alone take 3 KB): at this bound, some 30 MiB for one
/// statement. At 100,000, a 20 MB statement of 14,200 `CONCAT(name, n)`
/// beside a cut list of 2.3 million integers grew the proxy 5.3 x its
/// size; 3.3 x at this bound.
pub const MAX_PARSED_TOKENS: usize = 50_000;

/// What a `SELECT` costs the parse, in tokens: sqlparser's `Query` and
/// `Select` take some 9 KB even for `(SELECT 1)`. Counted as one token,
/// 9,800 such subqueries under the bound grew the proxy 6.8 x a 20 MB
/// statement's size.
pub const SELECT_COST: usize = 16;

/// What `token` costs the parse, in tokens (see [`MAX_PARSED_TOKENS`]).
fn parse_cost(token: &Token) -> usize {
    if token.is_word("SELECT") {
        SELECT_COST
    } else {
        1
    }
}

/// Analyses `sql`, written in `dialect`, against the rules.
pub fn analyze(
    sql: &str,
    dialect: &dyn Dialect,
    rules: &ShardingRules,
    logical_db: &str,
) -> Result<Analysis, AnalyzeError> {
    analyze_from(sql, None, dialect, rules, logical_db)
}

/// [`analyze`] with the tokens of `sql`, when the caller lexed it already.
pub fn analyze_lexed(
    sql: &str,
    tokens: Tokens<'_, '_>,
    dialect: &dyn Dialect,
    rules: &ShardingRules,
    logical_db: &str,
) -> Result<Analysis, AnalyzeError> {
    analyze_from(sql, Some(tokens), dialect, rules, logical_db)
}

fn analyze_from(
    sql: &str,
    tokens: Option<Tokens<'_, '_>>,
    dialect: &dyn Dialect,
    rules: &ShardingRules,
    logical_db: &str,
) -> Result<Analysis, AnalyzeError> {
    // Those the parse reads (`condensed` cuts the rest), weighed in the
    // one pass that finds the tables.
    let mut token_count = 0usize;
    let weigh = |t: &Lexeme| token_count = token_count.saturating_add(parse_cost(&t.token));
    let named = match tokens {
        Some(tokens) => named_tables(tokens.iter().inspect(weigh), rules),
        None => named_tables(crate::lex::read_tokens(sql).inspect(weigh), rules),
    };
    if named.is_empty() {
        return Ok(Analysis::Unsharded);
    }
    if let Some(st) = super::simple::point_select(sql, rules) {
        return Ok(Analysis::Sharded(Box::new(st)));
    }
    if token_count > MAX_PARSED_TOKENS {
        return Err(too_large(&named, token_count));
    }
    with_stack_for(token_count, || {
        parsed(sql, tokens, dialect, rules, logical_db, &named)
    })
}

/// Runs `f`, the parse and analysis of a statement of `tokens` tokens, with
/// the stack its deepest tree may need.
///
/// A tree is at most one level per two tokens deep (an operator and a term),
/// and sqlparser's `Drop` of it recurses once per level — on its own error
/// path too, where a long chain is dropped before [`super::chains`] could
/// regroup it. The stack is grown (mapped, touched only as deep as a walk
/// goes) only past what the thread has left: never for what people write.
fn with_stack_for<R>(tokens: usize, f: impl FnOnce() -> R) -> R {
    /// Room for the analysis itself above the deepest walk.
    const BASE: usize = 256 << 10;
    /// The frames of one level of `Drop` (drop glue for an `Expr` and its
    /// `Box`), with a margin; unoptimized builds' frames are larger.
    const PER_LEVEL: usize = if cfg!(debug_assertions) { 512 } else { 192 };
    let needed = (tokens / 2).saturating_mul(PER_LEVEL).saturating_add(BASE);
    stacker::maybe_grow(needed, needed, f)
}

/// [`analyze`] from sqlparser's parse, whatever the statement (the tests
/// compare it with the analysis that needs no parse).
#[cfg(test)]
pub(crate) fn analyze_parsed(
    sql: &str,
    dialect: &dyn Dialect,
    rules: &ShardingRules,
    logical_db: &str,
) -> Result<Analysis, AnalyzeError> {
    let named = named_tables(Lexer::new(sql), rules);
    if named.is_empty() {
        return Ok(Analysis::Unsharded);
    }
    parsed(sql, None, dialect, rules, logical_db, &named)
}

/// The analysis of a statement naming the routed tables `named`, from its parse.
fn parsed(
    sql: &str,
    tokens: Option<Tokens<'_, '_>>,
    dialect: &dyn Dialect,
    rules: &ShardingRules,
    logical_db: &str,
    named: &BTreeSet<String>,
) -> Result<Analysis, AnalyzeError> {
    let parsable = dialect.parsable(sql);
    let condensed = Condensed::of(&parsable);
    let analysis = analyzed(sql, &condensed, tokens, dialect, rules, logical_db, named);
    if condensed.is_condensed() && (analysis.is_err() || condensed.asked()) {
        // An emptied literal's value is needed, or the statement is not
        // understood (its error must quote it whole): the whole text.
        let whole = Condensed::whole(&parsable);
        // The caller's tokens leave out what the condensed text does
        // (`lex::TokenList::of_statement`): the whole text's tree may be deeper.
        let count = Lexer::new(&parsable)
            .map(|t| parse_cost(&t.token))
            .fold(0usize, usize::saturating_add);
        if count > MAX_PARSED_TOKENS {
            // The condensed parse's error stands (a syntax error's place
            // is still found, by the data source: see the MySQL session).
            return match analysis {
                Err(e) => Err(e),
                Ok(_) => Err(too_large(named, count)),
            };
        }
        return with_stack_for(count, || {
            analyzed(sql, &whole, tokens, dialect, rules, logical_db, named)
        });
    }
    analysis
}

fn too_large(named: &BTreeSet<String>, tokens: usize) -> AnalyzeError {
    AnalyzeError::TooLarge {
        tables: named.iter().cloned().collect::<Vec<_>>().join(", "),
        tokens,
    }
}

/// [`parsed`] from the parse of `condensed` (`sql` as sqlparser reads it).
fn analyzed(
    sql: &str,
    condensed: &Condensed<'_>,
    tokens: Option<Tokens<'_, '_>>,
    dialect: &dyn Dialect,
    rules: &ShardingRules,
    logical_db: &str,
    named: &BTreeSet<String>,
) -> Result<Analysis, AnalyzeError> {
    let tables_text = || named.iter().cloned().collect::<Vec<_>>().join(", ");
    let mut statements = Parser::parse_sql(dialect.parser(), condensed.text()).map_err(|e| {
        AnalyzeError::Unparsable {
            tables: tables_text(),
            reason: e.to_string(),
        }
    })?;
    statements.iter_mut().for_each(super::chains::balance);
    let [statement] = statements.as_slice() else {
        return Err(AnalyzeError::Unsupported(format!(
            "multi-statements on sharded table(s) {} are not supported; send one statement at a time",
            tables_text()
        )));
    };
    let lines = LineIndex::new(condensed.text());
    let mut a = Analyzer {
        sql,
        condensed,
        tokens,
        dialect,
        rules,
        logical_db,
        lines,
        replacements: Vec::new(),
        tables: BTreeSet::new(),
        others: BTreeSet::new(),
        aliases: Vec::new(),
    };
    a.collect_relations(statement);
    let placeholders = dialect.placeholders(sql);
    let mut out = ShardedStatement {
        kind: StatementKind::Select,
        tables: Vec::new(),
        other_tables: Vec::new(),
        replacements: Vec::new(),
        unlabelled: Vec::new(),
        condition: Cond::Unknown,
        placeholders,
        select: SelectShape::default(),
        insert: None,
        updates_sharding_column: false,
        ordered_write: false,
        scatter: None,
        sharding_joins: Vec::new(),
        returning: false,
        split_list: None,
    };
    match statement {
        Statement::Query(q) => {
            out.select = a.select_shape(q);
            if let SetExpr::Select(s) = q.body.as_ref() {
                a.collect_aliases(&s.from);
                out.sharding_joins = a.sharding_joins(statement);
                if let Some(w) = &s.selection {
                    out.condition = a.condition(w, &out.placeholders);
                    out.split_list = a.split_list(w);
                }
                let shape = &out.select;
                if shape.order_by
                    || shape.limit
                    || shape.group_by
                    || shape.aggregates
                    || shape.distinct
                    || shape.having
                {
                    let offset = |loc| a.offset(loc);
                    let emptied = |start| condensed.emptied(start);
                    let lexed;
                    let tokens = match tokens {
                        Some(tokens) => tokens,
                        None => {
                            lexed = TokenList::of_statement(sql);
                            lexed.tokens()
                        }
                    };
                    out.scatter = Some(super::scatter::scatter_select(
                        tokens,
                        q,
                        s,
                        &offset,
                        &emptied,
                        &out.placeholders,
                        dialect,
                    ));
                }
            }
        }
        Statement::Insert(ins) => {
            out.kind = StatementKind::Insert;
            out.insert = Some(a.insert_shape(ins, &out.placeholders)?);
            out.returning = ins.returning.is_some();
        }
        Statement::Update(u) => {
            out.kind = StatementKind::Update;
            a.collect_aliases(std::slice::from_ref(&u.table));
            if let Some(w) = &u.selection {
                out.condition = a.condition(w, &out.placeholders);
                out.split_list = a.split_list(w);
            }
            out.ordered_write = !u.order_by.is_empty() || u.limit.is_some();
            out.updates_sharding_column = u.assignments.iter().any(|asg| {
                let target = asg.target.to_string();
                let column = a
                    .dialect
                    .unquoted(target.rsplit('.').next().unwrap_or(&target));
                a.tables.iter().any(|t| {
                    rules
                        .sharding_columns(t)
                        .iter()
                        .any(|c| c.eq_ignore_ascii_case(column))
                })
            });
        }
        Statement::Delete(d) => {
            out.kind = StatementKind::Delete;
            let from = match &d.from {
                FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => f,
            };
            a.collect_aliases(from);
            if let Some(w) = &d.selection {
                out.condition = a.condition(w, &out.placeholders);
                out.split_list = a.split_list(w);
            }
            out.ordered_write = !d.order_by.is_empty() || d.limit.is_some();
            out.returning = d.returning.is_some();
        }
        Statement::CreateTable(_)
        | Statement::AlterTable(_)
        | Statement::Drop { .. }
        | Statement::Truncate(_)
        | Statement::CreateIndex(_) => {
            out.kind = StatementKind::Ddl;
            a.collect_names_by_token();
        }
        Statement::ShowColumns { .. }
        | Statement::ShowCreate { .. }
        | Statement::ExplainTable { .. }
        | Statement::ShowVariable { .. } => {
            out.kind = StatementKind::Describe;
            a.collect_names_by_token();
        }
        _ => {
            return Err(AnalyzeError::Unsupported(format!(
                "this kind of statement is not supported on sharded table(s) {}",
                tables_text()
            )))
        }
    }
    a.replacements.sort_by_key(|r| r.start);
    a.replacements.dedup_by_key(|r| r.start);
    if let Statement::Drop { names, .. } = statement {
        if names.len() > a.tables.len() {
            // Each node would drop the others again (and fail: they are gone).
            return Err(AnalyzeError::Unsupported(format!(
                "DROP of sharded or broadcast table(s) {} together with other tables is not supported; drop them in separate statements",
                tables_text()
            )));
        }
    }
    out.tables = a.tables.into_iter().collect();
    let aliases: BTreeSet<&String> = a.aliases.iter().map(|(al, _)| al).collect();
    out.other_tables = a
        .others
        .into_iter()
        .filter(|o| !aliases.contains(o))
        .collect();
    out.unlabelled = super::labels::unlabelled_items(sql, statement, &a.replacements);
    out.replacements = a.replacements;
    Ok(Analysis::Sharded(Box::new(out)))
}

/// The true end of an expression whose parser span may stop before its
/// closing parentheses (function calls): extends `end` until the
/// parentheses opened since `start` are closed, and over an argument list
/// that follows at once.
pub fn expression_end(sql: &str, start: usize, end: usize) -> usize {
    let mut depth: i64 = Lexer::new(&sql[start..end])
        .map(|t| match t.token {
            Token::Punct(b'(') => 1,
            Token::Punct(b')') => -1,
            _ => 0,
        })
        .sum();
    let mut tokens = Lexer::new(&sql[end..]).peekable();
    if depth <= 0 {
        match tokens.peek() {
            Some(t) if t.token == Token::Punct(b'(') => {}
            _ => return end,
        }
    }
    let mut last = end;
    for t in tokens {
        match t.token {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth -= 1,
            _ => {}
        }
        last = end + t.end;
        if depth <= 0 {
            break;
        }
    }
    last
}

/// Whether ON DUPLICATE KEY UPDATE assigns a sharding column.
fn updates_sharding_column(a: &Analyzer<'_>, ins: &sqlparser::ast::Insert) -> bool {
    let sharding: Vec<&str> = a
        .tables
        .iter()
        .flat_map(|t| a.rules.sharding_columns(t))
        .collect();
    match &ins.on {
        Some(sqlparser::ast::OnInsert::DuplicateKeyUpdate(assignments)) => {
            assignments.iter().any(|x| {
                let target = x.target.to_string();
                sharding
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(a.dialect.unquoted(&target)))
            })
        }
        _ => false,
    }
}

/// Every table alias the statement declares.
fn table_aliases(statement: &Statement) -> Vec<String> {
    struct Aliases(Vec<String>);
    impl sqlparser::ast::Visitor for Aliases {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                alias: Some(alias), ..
            } = factor
            {
                self.0.push(alias.name.value.clone());
            }
            ControlFlow::Continue(())
        }
    }
    let mut aliases = Aliases(Vec::new());
    let _ = sqlparser::ast::Visit::visit(statement, &mut aliases);
    aliases.0
}

/// Sharded and broadcast table names that appear as words in a
/// statement's tokens.
fn named_tables<'a>(
    tokens: impl Iterator<Item = Lexeme<'a>>,
    rules: &ShardingRules,
) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for s in tokens {
        if let Token::Word(w) | Token::QuotedIdent(w) = s.token {
            if !matches!(rules.table_kind(w), TableKind::Single) {
                named.insert(w.to_ascii_lowercase());
            }
        }
    }
    named
}

/// A number's value as the analysis reads it: an integer when it is one
/// that fits, otherwise its text.
/// The integers of a cut list or run's items (see [`Cond::InText`]), as
/// written.
pub(crate) fn cut_numbers(items: &str) -> impl Iterator<Item = &str> {
    Lexer::new(items).filter_map(|t| match t.token {
        Token::Number(n) => Some(n),
        _ => None,
    })
}

pub(crate) fn number(n: &str) -> Val {
    match n.parse::<i64>() {
        Ok(i) => Val::Lit(ShardValue::Int(i)),
        Err(_) => Val::Number(n.to_owned()),
    }
}

/// `-v`, for a number.
fn negated(v: Val) -> Option<Val> {
    match v {
        Val::Lit(ShardValue::Int(i)) => Some(Val::Lit(ShardValue::Int(i.checked_neg()?))),
        Val::Number(n) => Some(Val::Number(match n.strip_prefix('-') {
            Some(positive) => positive.to_owned(),
            None => format!("-{n}"),
        })),
        _ => None,
    }
}

/// The parameter whose marker starts at `start` (markers in text order).
fn parameter_at(placeholders: &[Placeholder], start: usize) -> Option<Val> {
    placeholders
        .binary_search_by_key(&start, |p| p.start)
        .ok()
        .map(|i| Val::Param(placeholders[i].index))
}

/// Converts sqlparser's line/column locations (columns count characters)
/// to byte offsets in any order, each in bounded time: an ASCII text maps
/// by arithmetic; otherwise a mark every [`LineIndex::STEP`] characters
/// of a line bounds the scan. (A cursor resumed from the last lookup was
/// quadratic where lookups went back: a 100,000-row INSERT, whose
/// values are looked up after its rows' ends, took 311 s.)
struct LineIndex {
    starts: Vec<usize>,
    /// Every character is a byte.
    ascii: bool,
    /// (line, character column, byte offset) every `STEP` characters of
    /// each line, in text order; none for an ASCII text.
    marks: Vec<(usize, usize, usize)>,
}

impl LineIndex {
    const STEP: usize = 256;

    fn new(sql: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        let mut marks = Vec::new();
        let ascii = sql.is_ascii();
        if !ascii {
            let (mut line, mut column) = (0, 0);
            for (byte, ch) in sql.char_indices() {
                if column > 0 && column % Self::STEP == 0 {
                    marks.push((line, column, byte));
                }
                if ch == '\n' {
                    (line, column) = (line + 1, 0);
                } else {
                    column += 1;
                }
            }
        }
        Self {
            starts,
            ascii,
            marks,
        }
    }

    fn offset(&self, sql: &str, loc: Location) -> Option<usize> {
        let line = usize::try_from(loc.line).ok()?.checked_sub(1)?;
        let column = usize::try_from(loc.column).ok()?.checked_sub(1)?;
        let line_start = *self.starts.get(line)?;
        let line_end = self.starts.get(line + 1).map_or(sql.len(), |s| s - 1);
        if self.ascii {
            let byte = line_start.checked_add(column)?;
            return (byte <= line_end).then_some(byte);
        }
        let at = self
            .marks
            .partition_point(|&(l, c, _)| (l, c) <= (line, column));
        let (mut col, mut byte) = match at.checked_sub(1).map(|i| self.marks[i]) {
            Some((l, c, b)) if l == line => (c, b),
            _ => (0, line_start),
        };
        let text = &sql[..line_end];
        while col < column {
            let ch = text.get(byte..)?.chars().next()?;
            byte += ch.len_utf8();
            col += 1;
        }
        Some(byte)
    }
}

struct Analyzer<'a> {
    sql: &'a str,
    /// `sql` as sqlparser read it: positions in its parse are there.
    condensed: &'a Condensed<'a>,
    /// The statement's tokens, when the caller lexed it already.
    tokens: Option<Tokens<'a, 'a>>,
    dialect: &'a dyn Dialect,
    rules: &'a ShardingRules,
    logical_db: &'a str,
    lines: LineIndex,
    replacements: Vec<Replacement>,
    tables: BTreeSet<String>,
    others: BTreeSet<String>,
    /// (alias, logical table) pairs of sharded/broadcast tables.
    aliases: Vec<(String, String)>,
}

impl Analyzer<'_> {
    fn is_routed(&self, name: &str) -> bool {
        !matches!(self.rules.table_kind(name), TableKind::Single)
    }

    /// The offset in `sql` of a position in the parse.
    fn offset(&self, loc: Location) -> Option<usize> {
        let at = self.lines.offset(self.condensed.text(), loc)?;
        Some(self.condensed.original(at))
    }

    fn span_bytes(&self, span: sqlparser::tokenizer::Span) -> Option<(usize, usize)> {
        Some((self.offset(span.start)?, self.offset(span.end)?))
    }

    /// Records an object name that is a relation.
    fn relation(&mut self, name: &ObjectName) {
        let idents: Vec<_> = name
            .0
            .iter()
            .filter_map(|p| match p {
                ObjectNamePart::Identifier(i) => Some(i),
                ObjectNamePart::Function(_) => None,
            })
            .collect();
        let Some(last) = idents.last() else { return };
        if !self.is_routed(&last.value) {
            self.others.insert(last.value.to_ascii_lowercase());
            return;
        }
        // `users` or `wework.users`: another database's table is not this
        // one, and a name of three parts (which MariaDB refuses) is no
        // table of this database either: spliced, its qualifiers would go.
        let this_database = match idents.as_slice() {
            [_] => true,
            [db, _] => db.value.eq_ignore_ascii_case(self.logical_db),
            _ => false,
        };
        if !this_database {
            return;
        }
        let first = idents[0];
        if let (Some((start, _)), Some((_, end))) =
            (self.span_bytes(first.span), self.span_bytes(last.span))
        {
            let table = last.value.to_ascii_lowercase();
            self.tables.insert(table.clone());
            self.replacements.push(Replacement { start, end, table });
        }
    }

    fn collect_relations(&mut self, statement: &Statement) {
        let mut names = Vec::new();
        let _ = visit_relations(statement, |name| {
            names.push(name.clone());
            ControlFlow::<()>::Continue(())
        });
        for name in &names {
            self.relation(name);
        }
        // Qualifiers: `users.name`, `wework.users.name`.
        let mut qualified = Vec::new();
        let _ = visit_expressions(statement, |e| {
            if let Expr::CompoundIdentifier(ids) = e {
                if ids.len() >= 2 {
                    qualified.push(ids[..ids.len() - 1].to_vec());
                }
            }
            ControlFlow::<()>::Continue(())
        });
        if let Statement::Query(q) = statement {
            if let SetExpr::Select(s) = q.body.as_ref() {
                for item in &s.projection {
                    if let SelectItem::QualifiedWildcard(
                        sqlparser::ast::SelectItemQualifiedWildcardKind::ObjectName(n),
                        _,
                    ) = item
                    {
                        qualified.push(
                            n.0.iter()
                                .filter_map(|p| match p {
                                    ObjectNamePart::Identifier(i) => Some(i.clone()),
                                    ObjectNamePart::Function(_) => None,
                                })
                                .collect(),
                        );
                    }
                }
            }
        }
        let others = std::mem::take(&mut self.others);
        // A qualifier that is an alias (even one spelled like its table, as
        // in `FROM users users`) names the alias, which keeps its name.
        let aliases = table_aliases(statement);
        for qualifier in qualified {
            let is_alias = qualifier.len() == 1
                && aliases
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(&qualifier[0].value));
            if !is_alias {
                self.relation(&ObjectName::from(qualifier));
            }
        }
        // Qualifiers of unsharded tables are often aliases: only relations count.
        self.others = others;
    }

    /// For statements whose table names the visitor does not reach (DROP,
    /// SHOW): every word that names a routed table.
    fn collect_names_by_token(&mut self) {
        let list = TokenList::of(self.sql);
        let tokens = list.tokens();
        for (i, s) in tokens.iter().enumerate() {
            let (Token::Word(w) | Token::QuotedIdent(w)) = s.token else {
                continue;
            };
            if !self.is_routed(w) {
                continue;
            }
            // `wework.users`: the qualifier goes with the name.
            let start = match (
                i.checked_sub(2).map(|j| tokens.at(j)),
                i.checked_sub(1).map(|j| tokens.at(j)),
            ) {
                (Some(db), Some(dot)) if dot.token == Token::Punct(b'.') => match db.token {
                    Token::Word(d) | Token::QuotedIdent(d)
                        if d.eq_ignore_ascii_case(self.logical_db) =>
                    {
                        db.start
                    }
                    _ => s.start,
                },
                _ => s.start,
            };
            let table = w.to_ascii_lowercase();
            self.tables.insert(table.clone());
            self.replacements.push(Replacement {
                start,
                end: s.end,
                table,
            });
        }
    }

    /// A table's name as the rules know it: unqualified, unquoted, lower case.
    fn logical_name(&self, name: &str) -> String {
        self.dialect
            .unquoted(name.rsplit('.').next().unwrap_or(name))
            .to_ascii_lowercase()
    }

    fn collect_aliases(&mut self, from: &[sqlparser::ast::TableWithJoins]) {
        let factors = from
            .iter()
            .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)));
        for factor in factors {
            if let TableFactor::Table { name, alias, .. } = factor {
                let table = self.logical_name(&name.to_string());
                if let Some(alias) = alias {
                    self.aliases
                        .push((alias.name.value.to_ascii_lowercase(), table));
                }
            }
        }
    }

    /// The sharding column an expression names, if it is a plain column of
    /// a sharded table in this statement.
    fn sharding_column(&self, e: &Expr) -> Option<String> {
        self.sharding_column_of(e).map(|(_, column)| column)
    }

    /// The (table, sharding column) an expression names.
    fn sharding_column_of(&self, e: &Expr) -> Option<(String, String)> {
        let (qualifier, column) = match e {
            Expr::Identifier(i) => (None, i.value.as_str()),
            Expr::CompoundIdentifier(ids) if ids.len() >= 2 => (
                Some(ids[ids.len() - 2].value.to_ascii_lowercase()),
                ids[ids.len() - 1].value.as_str(),
            ),
            Expr::Nested(inner) => return self.sharding_column_of(inner),
            _ => return None,
        };
        let candidates: Vec<&String> = match &qualifier {
            Some(q) => {
                let table = self
                    .aliases
                    .iter()
                    .find(|(a, _)| a == q)
                    .map(|(_, t)| t)
                    .or_else(|| self.tables.get(q));
                table.into_iter().collect()
            }
            None => self.tables.iter().collect(),
        };
        candidates.into_iter().find_map(|t| {
            self.rules
                .sharding_columns(t)
                .iter()
                .find(|c| c.eq_ignore_ascii_case(column))
                .map(|c| (t.clone(), c.to_string()))
        })
    }

    /// Pairs of tables joined by equal sharding columns (`a.k = b.k` in ON or WHERE).
    fn sharding_joins(&self, statement: &Statement) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        let _ = visit_expressions(statement, |e| {
            if let Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } = e
            {
                if let (Some((a, _)), Some((b, _))) = (
                    self.sharding_column_of(left),
                    self.sharding_column_of(right),
                ) {
                    if a != b {
                        pairs.push((a, b));
                    }
                }
            }
            ControlFlow::<()>::Continue(())
        });
        pairs
    }

    /// The values of a list [`Condensed`] cut to its first item, read from
    /// the statement's text (integers, as [`Analyzer::value`] reads them).
    /// The first cut `IN` list of a sharding column among the conjuncts
    /// of `where_` (see [`SplitList`]).
    fn split_list(&self, where_: &Expr) -> Option<SplitList> {
        match where_ {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => self.split_list(left).or_else(|| self.split_list(right)),
            Expr::Nested(inner) => self.split_list(inner),
            Expr::In {
                expr,
                target: InTarget::List(list),
                negated: false,
                ..
            } => {
                let (table, column) = self.sharding_column_of(expr)?;
                let items = self.cut_list_items(list)?;
                Some(SplitList {
                    table,
                    column,
                    items,
                    separator: ", ".to_owned(),
                })
            }
            Expr::BinaryOp {
                op: BinaryOperator::Or,
                ..
            } => self.split_run(where_),
            _ => None,
        }
    }

    /// [`SplitList`] of an OR whose every term is `column = integer` on one
    /// sharding column, one of them standing for a cut run, written with
    /// nothing but names, `=`, `OR`, digits and spaces from its first
    /// value to its last (no parentheses or comments a node's own values
    /// could unbalance).
    fn split_run(&self, or: &Expr) -> Option<SplitList> {
        fn terms<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
            match e {
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Or,
                    right,
                } => {
                    terms(left, out);
                    terms(right, out);
                }
                other => out.push(other),
            }
        }
        let mut all = Vec::new();
        terms(or, &mut all);
        let mut named: Option<(String, String)> = None;
        let mut items: Option<std::ops::Range<usize>> = None;
        let mut cut = false;
        for term in all {
            let Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } = term
            else {
                return None;
            };
            let column = self.sharding_column_of(left)?;
            if *named.get_or_insert_with(|| column.clone()) != column {
                return None;
            }
            let Expr::Value(value) = right.as_ref() else {
                return None;
            };
            match &value.value {
                Value::Number(n, _) if n.bytes().all(|b| b.is_ascii_digit()) => {}
                _ => return None,
            }
            let (start, mut end) = self.span_bytes(value.span)?;
            if let Some(run) = self.condensed.cut_list(start) {
                cut = true;
                end = run.end;
            }
            items = Some(items.map_or(start..end, |r| r.start..end));
        }
        let ((table, column), items) = (named?, items?);
        let text = self.sql.get(items.clone())?;
        let plain = |b: u8| b.is_ascii_alphanumeric() || b" _.`=\t\r\n".contains(&b);
        if !cut || !text.bytes().all(plain) {
            return None;
        }
        // Each number a term's value (a name such as `2nd` could lex as
        // one): what a node's items are read as. Streamed: a run has
        // hundreds of thousands of tokens.
        let mut prev = None;
        let mut values = Vec::with_capacity(2);
        for t in Lexer::new(text) {
            if let Token::Number(_) = t.token {
                if prev.is_some() && prev != Some(Token::Punct(b'=')) {
                    return None;
                }
                if values.len() < 2 {
                    values.push(t);
                }
            }
            prev = Some(t.token);
        }
        let [first, second] = values.as_slice() else {
            return None;
        };
        Some(SplitList {
            table,
            column,
            separator: text[first.end..second.start].to_owned(),
            items,
        })
    }

    /// The items of the cut list (or run) whose first item is `list`'s
    /// one item, in the statement.
    fn cut_list_items(&self, list: &[Expr]) -> Option<std::ops::Range<usize>> {
        let [Expr::Value(first)] = list else {
            return None;
        };
        let (start, _) = self.span_bytes(first.span)?;
        self.condensed.cut_list(start)
    }

    /// The rows [`Condensed`] cut after the row that ends at `end`, read
    /// from the statement's text and appended to `rows`, their kept values
    /// appended to `values`:
    /// each value as [`Analyzer::value`] reads it from the parse.
    fn cut_rows(
        &self,
        end: usize,
        ph: &[Placeholder],
        kept: &RoutedValues,
        rows: &mut Vec<InsertRow>,
        values: &mut KeptValues,
    ) {
        let Some(range) = self.condensed.cut_rows(end) else {
            return;
        };
        let (mut row_start, mut column, mut minus) = (0, 0, false);
        for t in Lexer::new(&self.sql[range.clone()]) {
            let (start, end) = (range.start + t.start, range.start + t.end);
            let value = match t.token {
                Token::Punct(b'(') => {
                    row_start = start;
                    continue;
                }
                Token::Punct(b')') => {
                    // A short row's missing values, as `push_row` leaves them.
                    for _ in column..kept.width {
                        values.push(None);
                    }
                    rows.push(InsertRow::new(row_start, end));
                    column = 0;
                    continue;
                }
                Token::Punct(b',') => continue,
                Token::Punct(b'-') => {
                    minus = true;
                    continue;
                }
                _ if column >= kept.width || !kept.reads(column) => {
                    if column < kept.width {
                        values.push(None);
                    }
                    column += 1;
                    minus = false;
                    continue;
                }
                Token::Punct(b'?') => parameter_at(ph, start),
                Token::Number(n) => Some(number(n)),
                Token::Str(s) => self.string(s),
                tok if tok.is_word("NULL") => Some(Val::Lit(ShardValue::Null)),
                tok => Some(Val::Lit(ShardValue::Int(i64::from(tok.is_word("TRUE"))))),
            };
            values.push(match std::mem::take(&mut minus) {
                true => value.and_then(negated),
                false => value,
            });
            column += 1;
        }
    }

    /// A string literal's value as sqlparser reads it (escapes undone),
    /// from its text, quotes included.
    fn string(&self, literal: &str) -> Option<Val> {
        let tokens = sqlparser::tokenizer::Tokenizer::new(self.dialect.parser(), literal)
            .tokenize()
            .ok()?;
        match tokens.as_slice() {
            [sqlparser::tokenizer::Token::SingleQuotedString(s)
            | sqlparser::tokenizer::Token::DoubleQuotedString(s)] => {
                Some(Val::Lit(ShardValue::Text(s.clone())))
            }
            _ => None,
        }
    }

    fn value(&self, e: &Expr, placeholders: &[Placeholder]) -> Option<Val> {
        match e {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => Some(number(n)),
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                    let start = self.span_bytes(v.span).map(|(start, _)| start);
                    if self.condensed.emptied(start) {
                        // Not read here: the statement is analysed again whole.
                        return None;
                    }
                    Some(Val::Lit(ShardValue::Text(s.clone())))
                }
                Value::Null => Some(Val::Lit(ShardValue::Null)),
                Value::Boolean(b) => Some(Val::Lit(ShardValue::Int(i64::from(*b)))),
                Value::Placeholder(_) => {
                    let (start, _) = self.span_bytes(v.span)?;
                    parameter_at(placeholders, start)
                }
                _ => None,
            },
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } => negated(self.value(expr, placeholders)?),
            Expr::Nested(inner) => self.value(inner, placeholders),
            _ => None,
        }
    }

    fn condition(&self, e: &Expr, ph: &[Placeholder]) -> Cond {
        match e {
            Expr::BinaryOp { left, op, right } => match op {
                BinaryOperator::And => {
                    Cond::And(vec![self.condition(left, ph), self.condition(right, ph)])
                }
                BinaryOperator::Or => {
                    Cond::Or(vec![self.condition(left, ph), self.condition(right, ph)])
                }
                BinaryOperator::Eq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq => {
                    let (column, value, flipped) =
                        match (self.sharding_column(left), self.sharding_column(right)) {
                            (Some(c), _) if *op == BinaryOperator::Eq => {
                                // The first of a cut run of equalities stands for them all.
                                if let Some(items) =
                                    self.cut_list_items(std::slice::from_ref(right.as_ref()))
                                {
                                    return Cond::InText(c, items);
                                }
                                match self.value(right, ph) {
                                    Some(v) => (c, v, false),
                                    None => return Cond::Unknown,
                                }
                            }
                            (Some(c), _) => match self.value(right, ph) {
                                Some(v) => (c, v, false),
                                None => return Cond::Unknown,
                            },
                            (None, Some(c)) => match self.value(left, ph) {
                                Some(v) => (c, v, true),
                                None => return Cond::Unknown,
                            },
                            _ => return Cond::Unknown,
                        };
                    match (op, flipped) {
                        (BinaryOperator::Eq, _) => Cond::Eq(column, value),
                        (BinaryOperator::Lt, false) | (BinaryOperator::Gt, true) => {
                            Cond::Lt(column, value)
                        }
                        (BinaryOperator::LtEq, false) | (BinaryOperator::GtEq, true) => {
                            Cond::Le(column, value)
                        }
                        (BinaryOperator::Gt, false) | (BinaryOperator::Lt, true) => {
                            Cond::Gt(column, value)
                        }
                        _ => Cond::Ge(column, value),
                    }
                }
                _ => Cond::Unknown,
            },
            Expr::In {
                expr,
                target: InTarget::List(list),
                negated: false,
                ..
            } => match self.sharding_column(expr) {
                Some(c) => {
                    if let Some(items) = self.cut_list_items(list) {
                        return Cond::InText(c, items);
                    }
                    let values: Option<Vec<Val>> = list.iter().map(|v| self.value(v, ph)).collect();
                    values.map_or(Cond::Unknown, |v| Cond::In(c, v))
                }
                None => Cond::Unknown,
            },
            Expr::Between {
                expr,
                negated: false,
                low,
                high,
            } => match (
                self.sharding_column(expr),
                self.value(low, ph),
                self.value(high, ph),
            ) {
                (Some(c), Some(l), Some(h)) => Cond::Between(c, l, h),
                _ => Cond::Unknown,
            },
            Expr::Nested(inner) => self.condition(inner, ph),
            _ => Cond::Unknown,
        }
    }

    fn select_shape(&self, q: &Query) -> SelectShape {
        let mut shape = SelectShape {
            order_by: q.order_by.is_some(),
            limit: q.limit_clause.is_some(),
            // A subquery's locking clause locks too: the whole statement is
            // asked, from the tokens the caller lexed when it did.
            locking: !q.locks.is_empty()
                || match self.tokens {
                    Some(tokens) => self.dialect.lock_clause_in(tokens),
                    None => self.dialect.locks_rows(self.sql),
                },
            compound: q.with.is_some(),
            ..SelectShape::default()
        };
        match q.body.as_ref() {
            SetExpr::Select(s) => {
                shape.distinct = s.distinct.is_some();
                shape.having = s.having.is_some();
                shape.group_by = match &s.group_by {
                    GroupByExpr::All(_) => true,
                    GroupByExpr::Expressions(e, _) => !e.is_empty(),
                };
                let mut aggregates = false;
                let mut subquery = false;
                let _ = visit_expressions(&s.projection, |e| {
                    match e {
                        Expr::Function(f) => {
                            let name = f.name.to_string().to_ascii_uppercase();
                            if super::scatter::is_aggregate_name(&name) {
                                aggregates = true;
                            }
                        }
                        Expr::Subquery(_)
                        | Expr::Exists { .. }
                        | Expr::In {
                            target: InTarget::Subquery(_),
                            ..
                        } => subquery = true,
                        _ => {}
                    }
                    ControlFlow::<()>::Continue(())
                });
                let _ = visit_expressions(&s.selection, |e| {
                    if matches!(
                        e,
                        Expr::Subquery(_)
                            | Expr::Exists { .. }
                            | Expr::In {
                                target: InTarget::Subquery(_),
                                ..
                            }
                    ) {
                        subquery = true;
                    }
                    ControlFlow::<()>::Continue(())
                });
                shape.aggregates = aggregates;
                shape.compound |= subquery
                    || s.from.iter().any(|t| {
                        std::iter::once(&t.relation)
                            .chain(t.joins.iter().map(|j| &j.relation))
                            .any(|f| !matches!(f, TableFactor::Table { .. }))
                    });
            }
            _ => shape.compound = true,
        }
        shape
    }

    fn insert_shape(
        &self,
        ins: &sqlparser::ast::Insert,
        ph: &[Placeholder],
    ) -> Result<InsertShape, AnalyzeError> {
        let table = ins.table.to_string();
        let unsupported = |what: &str| {
            AnalyzeError::Unsupported(format!(
                "{what} on sharded or broadcast table {table} is not supported"
            ))
        };
        let columns: Vec<String> = ins
            .columns
            .iter()
            .map(|c| self.dialect.unquoted(&c.to_string()).to_ascii_lowercase())
            .collect();
        let columns_end = ins
            .columns
            .last()
            .and_then(|c| self.span_bytes(c.span()))
            .map(|(_, end)| end);
        let Some(source) = &ins.source else {
            return self.insert_set_shape(ins, ph, &table);
        };
        let first_row = match source.body.as_ref() {
            SetExpr::Values(values) => values.rows.first().map_or(0, |row| row.len()),
            _ => 0,
        };
        let kept = RoutedValues::of(self.rules, &self.logical_name(&table), &columns, first_row);
        let SetExpr::Values(values) = source.body.as_ref() else {
            return Err(unsupported("INSERT ... SELECT"));
        };
        let mut rows = Vec::with_capacity(values.rows.len());
        let mut kept_values = KeptValues::default();
        for row in &values.rows {
            let (Some(first), Some(last)) = (row.first(), row.last()) else {
                return Err(unsupported("an empty VALUES row"));
            };
            let (Some((first_start, _)), Some((last_start, last_end))) =
                (self.span_bytes(first.span()), self.span_bytes(last.span()))
            else {
                return Err(unsupported("a VALUES row without positions"));
            };
            let last_end = expression_end(self.sql, last_start, last_end);
            // Widen to the enclosing parentheses.
            let start = self.sql[..first_start].rfind('(').unwrap_or(first_start);
            let end = self.sql[last_end..]
                .find(')')
                .map_or(last_end, |p| last_end + p + 1);
            rows.push(InsertRow::new(start, end));
            kept.push_row(&mut kept_values, row, |v| self.value(v, ph));
            // Straight into the statement's rows: a list of its own, then
            // copied, was twice a 20 MB INSERT's 23 MB of rows at once.
            self.cut_rows(end, ph, &kept, &mut rows, &mut kept_values);
        }
        Ok(InsertShape {
            implicit_columns: columns.is_empty(),
            columns,
            columns_end,
            rows,
            values: kept_values,
            row_width: kept.width,
            updates_sharding_column: updates_sharding_column(self, ins),
            set_form: false,
        })
    }

    /// `INSERT ... SET a = 1, b = 2` as a one-row insert.
    fn insert_set_shape(
        &self,
        ins: &sqlparser::ast::Insert,
        ph: &[Placeholder],
        table: &str,
    ) -> Result<InsertShape, AnalyzeError> {
        let unsupported = || {
            AnalyzeError::Unsupported(format!(
                "this INSERT form on sharded or broadcast table {table} is not supported"
            ))
        };
        let (Some(first), Some(last)) = (ins.assignments.first(), ins.assignments.last()) else {
            return Err(unsupported());
        };
        let (Some((start, _)), Some((last_start, last_end))) = (
            self.span_bytes(first.target.span()),
            self.span_bytes(last.value.span()),
        ) else {
            return Err(unsupported());
        };
        let end = expression_end(self.sql, last_start, last_end);
        Ok(InsertShape {
            columns: ins
                .assignments
                .iter()
                .map(|a| {
                    self.dialect
                        .unquoted(&a.target.to_string())
                        .to_ascii_lowercase()
                })
                .collect(),
            columns_end: None,
            rows: vec![InsertRow::new(start, end)],
            values: {
                let mut values = KeptValues::default();
                for a in &ins.assignments {
                    values.push(self.value(&a.value, ph));
                }
                values
            },
            row_width: ins.assignments.len(),
            updates_sharding_column: updates_sharding_column(self, ins),
            set_form: true,
            implicit_columns: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::MARIADB;
    use shardgate_rules::Config;

    /// Every character's location maps to its byte offset, looked up
    /// backwards and forwards, in ASCII and in multi-byte texts.
    #[test]
    fn line_index_maps_every_location_in_any_order() {
        let wide = "é€😀".repeat(300);
        for sql in [
            "SELECT 1\nFROM t\n\nWHERE a = 'x'".to_owned(),
            "SELECT 'é', '🦀'\nFROM t WHERE a = '漢字' OR b = 2".to_owned(),
            format!("SELECT '{wide}'\n, 'é' -- {wide}\n\nFROM t WHERE a = 1"),
        ] {
            let index = LineIndex::new(&sql);
            let mut locations = Vec::new();
            let (mut line, mut column) = (1u64, 1u64);
            for (byte, ch) in sql.char_indices() {
                locations.push((Location::new(line, column), byte));
                (line, column) = if ch == '\n' {
                    (line + 1, 1)
                } else {
                    (line, column + 1)
                };
            }
            locations.push((Location::new(line, column), sql.len()));
            for (loc, byte) in locations.iter().rev().chain(locations.iter()) {
                assert_eq!(index.offset(&sql, *loc), Some(*byte), "{loc:?}");
            }
            assert_eq!(index.offset(&sql, Location::new(line, column + 1)), None);
            assert_eq!(index.offset(&sql, Location::new(line + 1, 1)), None);
        }
    }

    /// Analyses `sql` on a thread with a tokio worker's stack (2 MiB).
    fn analyze_on_a_worker_stack(sql: String) -> Result<Analysis, AnalyzeError> {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let config =
                    Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
                let rules = ShardingRules::new(&config).unwrap();
                analyze(&sql, &MARIADB, &rules, "wework")
            })
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn long_chains_analyse_on_a_worker_stack() {
        let terms = |n: usize, op: &str| {
            (0..n)
                .map(|i| format!("user_id = {i}"))
                .collect::<Vec<_>>()
                .join(op)
        };
        for (sql, ok) in [
            (
                format!("SELECT * FROM users WHERE {}", terms(1000, " OR ")),
                true,
            ),
            (
                format!("SELECT * FROM users WHERE {}", terms(200_000, " OR ")),
                true,
            ),
            (
                format!("SELECT * FROM users WHERE {} OR (", terms(200_000, " OR ")),
                false,
            ),
            (
                format!(
                    "SELECT * FROM users WHERE user_id = {}",
                    (0..20_000)
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(" + ")
                ),
                true,
            ),
            (
                format!(
                    "SELECT * FROM users WHERE user_id = {} + (",
                    (0..20_000)
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(" - ")
                ),
                false,
            ),
        ] {
            let analysed = analyze_on_a_worker_stack(sql.clone());
            assert_eq!(analysed.is_ok(), ok, "{:.80}: {analysed:?}", sql);
        }
    }

    /// An analysis as the whole text's reads: its cut lists' values held
    /// (`InText` as `In`), and no split list (the whole text's lists are
    /// not cut).
    fn as_whole(
        analysis: Result<Analysis, AnalyzeError>,
        sql: &str,
    ) -> Result<Analysis, AnalyzeError> {
        fn held(c: &mut Cond, sql: &str) {
            if let Cond::InText(column, items) = c {
                let values = cut_numbers(&sql[items.clone()]).map(number).collect();
                *c = Cond::In(column.clone(), values);
            }
            if let Cond::And(cs) | Cond::Or(cs) = c {
                cs.iter_mut().for_each(|c| held(c, sql));
            }
        }
        analysis.map(|a| match a {
            Analysis::Sharded(mut st) => {
                st.split_list = None;
                held(&mut st.condition, sql);
                Analysis::Sharded(st)
            }
            other => other,
        })
    }

    /// Past `MAX_PARSED_TOKENS` tokens (what `condensed` cuts aside) a
    /// statement on sharded tables is refused before the parse; long
    /// lists and plain rows do not count.
    #[test]
    fn statements_of_too_many_parsed_tokens_are_refused() {
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        let rows = |n: usize, row: &dyn Fn(usize) -> String| {
            (0..n).map(row).collect::<Vec<_>>().join(", ")
        };
        // 11 tokens a row.
        let computed = |n| {
            format!(
                "INSERT INTO users (user_id, name) VALUES {}",
                rows(n, &|i| format!("({i}, CONCAT('n', {i}))"))
            )
        };
        let analysed = |sql: &str| analyze(sql, &MARIADB, &rules, "wework");
        let too_large = |r: &Result<Analysis, AnalyzeError>| matches!(r, Err(AnalyzeError::TooLarge { tokens, .. }) if *tokens > MAX_PARSED_TOKENS);
        let refused = analysed(&computed(MAX_PARSED_TOKENS / 11 + 500));
        assert!(too_large(&refused), "{refused:?}");
        assert!(refused
            .unwrap_err()
            .to_string()
            .contains("smaller statements"));
        assert!(analysed(&computed(MAX_PARSED_TOKENS / 11 - 500)).is_ok());
        // A subquery weighs what its tree takes: 4 tokens and a SELECT.
        let subqueries = |n| {
            format!(
                "SELECT * FROM users WHERE name IN ({})",
                rows(n, &|_| "(SELECT 1)".to_owned())
            )
        };
        let per_subquery = 4 + SELECT_COST;
        let refused = analysed(&subqueries(MAX_PARSED_TOKENS / per_subquery + 100));
        assert!(too_large(&refused), "{refused:?}");
        // Under the bound it is parsed (planning refuses its subqueries).
        assert!(analysed(&subqueries(MAX_PARSED_TOKENS / per_subquery - 100)).is_ok());
        let plain = format!(
            "INSERT INTO users (user_id, name) VALUES {}",
            rows(200_000, &|i| format!("({i}, 'n{i}')"))
        );
        let list = format!(
            "SELECT * FROM users WHERE user_id IN ({})",
            rows(300_000, &|i| i.to_string())
        );
        for sql in [plain, list] {
            assert!(analysed(&sql).is_ok(), "{sql:.60}");
        }
        // Unsharded statements are not analysed: no bound.
        assert_eq!(
            analysed(&computed(10_000).replace("users", "plain")),
            Ok(Analysis::Unsharded)
        );
    }

    /// Kept values read back as pushed: integers inline up to 62 bits and
    /// beside beyond, NULL, parameters, absent values and others.
    #[test]
    fn kept_values_read_back_as_pushed() {
        let mut kept = KeptValues::default();
        let values: Vec<Option<Val>> = [
            0,
            -1,
            7,
            (1 << 61) - 1,
            -(1 << 61),
            1 << 61,
            -(1 << 61) - 1,
            i64::MAX,
            i64::MIN,
        ]
        .into_iter()
        .map(|i| Some(Val::Lit(ShardValue::Int(i))))
        .chain([
            None,
            Some(Val::Lit(ShardValue::Null)),
            Some(Val::Param(0)),
            Some(Val::Param(65_535)),
            Some(Val::Lit(ShardValue::Text("x".into()))),
            None,
        ])
        .collect();
        for value in &values {
            kept.push(value.clone());
        }
        let read: Vec<_> = (0..values.len())
            .map(|i| kept.get(i).map(Cow::into_owned))
            .collect();
        assert_eq!(read, values);
        // Integers beyond 62 bits and the text are kept beside.
        assert_eq!(kept.others.len(), 5);
        assert_eq!(std::mem::size_of::<Packed>(), 8);
    }

    /// INSERT rows keep the values routing reads: their table's sharding
    /// columns', up to the last of them; all of them without a column list.
    #[test]
    fn insert_rows_keep_the_values_routing_reads() {
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        let rows_of = |sql: &str| match analyze(sql, &MARIADB, &rules, "wework") {
            Ok(Analysis::Sharded(st)) => {
                let shape = st.insert.unwrap();
                (0..shape.rows.len())
                    .map(|i| {
                        (0..shape.row_width)
                            .map(|c| shape.row_value(i, c).map(Cow::into_owned))
                            .collect::<Vec<_>>()
                    })
                    .collect::<Vec<_>>()
            }
            other => panic!("{other:?}"),
        };
        let int = |i: i64| Some(Val::Lit(ShardValue::Int(i)));
        // Parsed rows and cut ones (64 or more) alike.
        for n in [3, 100] {
            let rows = (0..n)
                .map(|i| format!("('n{i}', {i}, 'e{i}')"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("INSERT INTO users (name, user_id, email) VALUES {rows}");
            let values = rows_of(&sql);
            let expected: Vec<_> = (0..n).map(|i| vec![None, int(i)]).collect();
            assert_eq!(values, expected, "{n} rows");
        }
        let rows = rows_of("INSERT INTO users VALUES (7, 'n', 'e')");
        assert_eq!(
            rows[0],
            vec![
                int(7),
                Some(Val::Lit(ShardValue::Text("n".into()))),
                Some(Val::Lit(ShardValue::Text("e".into())))
            ]
        );
        let rows = rows_of(
            "INSERT INTO message_records (id, tenant_id, created_at) VALUES (1, 't', '2024-03-01')",
        );
        assert_eq!(
            rows[0],
            vec![
                None,
                Some(Val::Lit(ShardValue::Text("t".into()))),
                Some(Val::Lit(ShardValue::Text("2024-03-01".into())))
            ]
        );
    }

    /// A statement with long literals analyses as its whole text does,
    /// whether the literals' values are read or not.
    #[test]
    fn long_literals_analyse_as_the_whole_text() {
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        let long = "a".repeat(10_000);
        let ids = (0..100)
            .map(|i| (i * 7).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let big_ids = (0..100)
            .map(|i| format!("{}{i}", u64::MAX))
            .collect::<Vec<_>>()
            .join(",\n");
        for (sql, emptied_read) in [
            (format!("SELECT user_id, name FROM users WHERE user_id = 1 OR name = '{long}'"), false),
            (format!("SELECT name, '{long}' x FROM users u WHERE u.status = 1 ORDER BY name LIMIT 3"), false),
            (format!("UPDATE users SET name = '{long}' WHERE user_id IN (1, 5) AND email = '{long}'"), false),
            (format!("SELECT * FROM message_records WHERE tenant_id = '{long}' AND created_at = '2024-03-01'"), true),
            // Not read: `name` does not route.
            (format!("INSERT INTO users (user_id, name) VALUES (1, '{long}'), (2, 'b')"), false),
            (format!("INSERT INTO message_records (created_at, tenant_id) VALUES ('2024-03-01', '{long}')"), true),
            (format!("SELECT status, COUNT(*) FROM users GROUP BY status HAVING MAX(name) > '{long}'"), true),
            (format!("SELECT name FROM users WHERE name = '{long}' AND"), false),
            (format!("SELECT * FROM users WHERE user_id IN ({ids})"), false),
            (format!("SELECT * FROM users WHERE user_id IN ({ids}) AND name IN ({ids}) ORDER BY name"), false),
            (format!("UPDATE users SET status = 2 WHERE user_id IN ({ids})\n AND email = '{long}'"), false),
            (format!("DELETE FROM users WHERE status IN ({ids}) OR user_id IN (3, 4)"), false),
            (format!("SELECT * FROM users WHERE user_id NOT IN ({ids})"), false),
            (format!("SELECT * FROM users WHERE user_id IN ({big_ids})"), false),
        ] {
            let named = named_tables(Lexer::new(&sql), &rules);
            let condensed = Condensed::of(&sql);
            assert!(condensed.is_condensed(), "{sql:.60}");
            let whole = analyzed(&sql, &Condensed::whole(&sql), None, &MARIADB, &rules, "wework", &named);
            let from_condensed = analyzed(&sql, &condensed, None, &MARIADB, &rules, "wework", &named);
            assert_eq!(condensed.asked(), emptied_read, "{sql:.60}");
            if !emptied_read && whole.is_ok() {
                assert_eq!(as_whole(from_condensed, &sql), whole, "{sql:.60}");
            }
            assert_eq!(as_whole(analyze(&sql, &MARIADB, &rules, "wework"), &sql), whole, "{sql:.60}");
        }
    }

    /// A statement with long runs of equalities or many INSERT rows
    /// analyses as its whole text does: the same rows, values and
    /// positions, the same values for each column under its ORs.
    #[test]
    fn long_runs_and_rows_analyse_as_the_whole_text() {
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        let run = |column: &str, n: usize| {
            (0..n)
                .map(|i| format!("{column} = {}", i * 7))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        let rows = |n: usize| {
            (0..n)
                .map(|i| match i % 3 {
                    0 => format!("({i}, 'n{i}', 'it''s\\n{i}', -{i})"),
                    1 => format!("( -9223372036854775808 , \"e{i}\" , NULL,1.50)"),
                    _ => "(?, ?, TRUE, FALSE)".to_owned(),
                })
                .collect::<Vec<_>>()
                .join(",\n")
        };
        /// The condition as sets, and the analysis without it.
        fn split(analysis: Result<Analysis, AnalyzeError>) -> (String, String) {
            /// `c` with its ORs and ANDs as sets: the values each column
            /// is equal to under an OR gathered.
            fn canonical(c: &Cond) -> String {
                fn gather<'c>(c: &'c Cond, or: bool, out: &mut Vec<&'c Cond>) {
                    match c {
                        Cond::Or(cs) if or => cs.iter().for_each(|c| gather(c, or, out)),
                        Cond::And(cs) if !or => cs.iter().for_each(|c| gather(c, or, out)),
                        c => out.push(c),
                    }
                }
                let mut terms = Vec::new();
                let or = !matches!(c, Cond::And(_));
                gather(c, or, &mut terms);
                let mut set = BTreeSet::new();
                for t in terms {
                    match t {
                        Cond::Eq(column, v) if or => {
                            set.insert(format!("{column} = {v:?}"));
                        }
                        Cond::In(column, vs) if or => {
                            set.extend(vs.iter().map(|v| format!("{column} = {v:?}")))
                        }
                        Cond::Or(_) | Cond::And(_) => {
                            set.insert(canonical(t));
                        }
                        other => {
                            set.insert(format!("{other:?}"));
                        }
                    }
                }
                format!("{}{set:?}", if or { "OR" } else { "AND" })
            }
            match analysis {
                Ok(Analysis::Sharded(mut st)) => {
                    let condition = std::mem::replace(&mut st.condition, Cond::Unknown);
                    (canonical(&condition), format!("{st:?}"))
                }
                other => (String::new(), format!("{other:?}")),
            }
        }
        for (sql, asked) in [
            (format!("SELECT * FROM users WHERE {}", run("user_id", 100)), false),
            (format!("SELECT * FROM users u WHERE u.user_id = 5 OR {}\n OR user_id = 2", run("u.user_id", 70)), false),
            (format!("SELECT * FROM users WHERE status = 1 AND {} OR user_id = 3 LIMIT 2", run("user_id", 80)), false),
            (format!("DELETE FROM users WHERE ({}) AND status = 2", run("status", 90)), false),
            (format!("UPDATE users SET name = 'x' WHERE {} OR {}", run("user_id", 65), run("status", 65)), false),
            (format!("SELECT status, COUNT(*) FROM users GROUP BY status HAVING {}", run("status", 66)), true),
            (format!("INSERT INTO users (user_id, name, email, status) VALUES {}", rows(100)), false),
            (format!("INSERT INTO users (user_id, name, email, status) VALUE {}\n ON DUPLICATE KEY UPDATE name = VALUES(name)", rows(64)), false),
            (format!("REPLACE users VALUES (1, 'a', 'b', 2), {} -- c", rows(70)), false),
            (format!("INSERT INTO users (user_id, name, email, status) VALUES {}, (1, 'a', 'b', 2) /* c */, {}", rows(70), rows(3)), false),
        ] {
            let named = named_tables(Lexer::new(&sql), &rules);
            let condensed = Condensed::of(&sql);
            assert!(condensed.is_condensed(), "{sql:.60}");
            let whole = analyzed(&sql, &Condensed::whole(&sql), None, &MARIADB, &rules, "wework", &named);
            let from_condensed = analyzed(&sql, &condensed, None, &MARIADB, &rules, "wework", &named);
            assert!(whole.is_ok(), "{sql:.60}: {whole:?}");
            assert_eq!(condensed.asked(), asked, "{sql:.60}");
            if !asked {
                assert_eq!(split(as_whole(from_condensed, &sql)), split(whole.clone()), "{sql:.60}");
            }
            assert_eq!(split(as_whole(analyze(&sql, &MARIADB, &rules, "wework"), &sql)), split(whole), "{sql:.60}");
        }
    }

    /// Found by the rewrite_splice fuzz target: a three-part name ending
    /// in a sharded table's name was spliced whole, its qualifiers
    /// dropped, so that a statement MariaDB refuses ran on a node's table.
    #[test]
    fn names_of_three_parts_are_not_the_logical_tables() {
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        for sql in [
            "SELECT * FROM `x`.`wework`.`users` u WHERE u.user_id = 3",
            "SELECT * FROM x.users.users",
        ] {
            let names_kept = match analyze(sql, &MARIADB, &rules, "wework") {
                Ok(Analysis::Sharded(st)) => st.replacements.is_empty(),
                Ok(Analysis::Unsharded) | Err(_) => true,
            };
            assert!(names_kept, "{sql}");
        }
        let Ok(Analysis::Sharded(st)) = analyze(
            "SELECT * FROM wework.users u JOIN x.y.users v",
            &MARIADB,
            &rules,
            "wework",
        ) else {
            panic!("wework.users is sharded");
        };
        let spliced: Vec<(usize, usize)> =
            st.replacements.iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(
            spliced,
            [(14, 26)],
            "only wework.users is the logical table"
        );
    }

    fn locking(sql: &str) -> bool {
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        match analyze(sql, &MARIADB, &rules, "wework").unwrap() {
            Analysis::Sharded(st) => st.select.locking,
            Analysis::Unsharded => panic!("unsharded: {sql}"),
        }
    }

    #[test]
    fn locking_reads_are_found_in_clauses_not_in_text() {
        for sql in [
            "SELECT * FROM users WHERE user_id = 5 FOR UPDATE",
            "SELECT * FROM users WHERE user_id > 5 LOCK IN SHARE MODE",
            "SELECT * FROM users ORDER BY name LIMIT 1 FOR UPDATE SKIP LOCKED",
            "SELECT * FROM users WHERE user_id = 5 FOR SHARE NOWAIT",
            "SELECT * FROM users WHERE user_id IN (SELECT user_id FROM orders FOR UPDATE)",
        ] {
            assert!(locking(sql), "{sql}");
        }
        for sql in [
            "SELECT * FROM users WHERE user_id = 5 AND name = 'lock in share mode'",
            "SELECT * FROM users WHERE name = 'FOR UPDATE'",
            "SELECT * FROM users /* FOR UPDATE */ WHERE user_id > 5",
            "SELECT * FROM users WHERE user_id > 5 -- LOCK IN SHARE MODE",
            "SELECT `for`, `update` FROM users",
        ] {
            assert!(!locking(sql), "{sql}");
        }
    }
}
