//! SELECTs over several data nodes that need their rows combined: the
//! derived columns and ORDER BY / LIMIT each node runs, and the merge plan
//! the rows go through (built once the column definitions are known).
//!
//! String keys are compared by sort-key columns the nodes compute (the
//! dialect's; `WEIGHT_STRING(...)` on MariaDB), so ordering and grouping
//! follow each column's collation exactly.

use sqlparser::ast::{
    DuplicateTreatment, Expr, FunctionArguments, GroupByExpr, LimitClause, OrderByKind,
    OrderBySort, Query, Select, SelectItem, Spanned, Value,
};

use super::analyze::Replacement;
use super::error::{MergeShapeError, Unmergeable};
use super::having::{ArithOp, CmpOp, Cond as HavingCond};
use crate::dialect::{Dialect, Placeholder};
use crate::lex::{Lexer, Spanned as Tok, Token, Tokens};
use shardgate_merge::plan::{Aggregate, AggregateKind, Compared, MergePlan, SortKey};
use shardgate_merge::ColumnMeta;

/// A column of the node result: a select item, or the k-th derived column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ix {
    Visible(usize),
    Derived(usize),
}

/// A compared value and, for strings, its collation weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColRef {
    pub value: Ix,
    pub weight: Option<Ix>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggSpec {
    /// COUNT(DISTINCT x): nodes group by x too; the merge counts distinct x.
    CountDistinct {
        value: ColRef,
    },
    Count,
    Sum,
    Min,
    Max,
    Avg {
        sum: Ix,
        count: Ix,
    },
}

impl AggSpec {
    /// The aggregate's SQL name, lower case.
    pub fn name(&self) -> &'static str {
        match self {
            AggSpec::CountDistinct { .. } => "count_distinct",
            AggSpec::Count => "count",
            AggSpec::Sum => "sum",
            AggSpec::Min => "min",
            AggSpec::Max => "max",
            AggSpec::Avg { .. } => "avg",
        }
    }
}

/// A LIMIT value: literal or parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitVal {
    Lit(u64),
    Param(usize),
}

/// A derived column: `prefix` + the original text of `range` + `suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    pub prefix: &'static str,
    pub range: (usize, usize),
    pub suffix: &'static str,
}

/// How a multi-node SELECT runs and merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScatterSelect {
    /// Where the derived columns go (just before the top-level FROM).
    pub insert_at: usize,
    /// The original ORDER BY ... LIMIT ..., replaced by the node's own.
    pub tail: (usize, usize),
    pub derived: Vec<Derived>,
    /// What each node sorts by.
    pub node_order: Vec<(Ix, bool)>,
    /// Whether nodes apply LIMIT 0, offset+count.
    pub node_limit: bool,
    pub offset: Option<LimitVal>,
    pub limit: Option<LimitVal>,
    pub order: Vec<(ColRef, bool)>,
    pub group: Option<Vec<ColRef>>,
    pub aggregates: Vec<(ColRef, AggSpec)>,
    pub order_after_group: Vec<(ColRef, bool)>,
    pub distinct: Option<Vec<ColRef>>,
    /// HAVING, evaluated on merged groups, and the clause's text, which
    /// nodes do not run.
    pub having: Option<(HavingCond, (usize, usize))>,
    /// What is appended to (or makes) the nodes' GROUP BY, and where: for
    /// COUNT(DISTINCT x) nodes group by x as well (its text, tables renamed
    /// per node, after `prefix`). `usize::MAX`: before the HAVING / ORDER
    /// BY / LIMIT tail.
    pub group_append: Option<GroupAppend>,
    /// A column nodes sort by after the group keys (COUNT(DISTINCT)'s value).
    pub node_order_extra: Option<Ix>,
    /// Whether a node's statement may run once more with no effect beyond
    /// its result (see `repeatable`).
    pub repeatable: bool,
}

/// See [`ScatterSelect::group_append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAppend {
    pub at: usize,
    pub prefix: &'static str,
    pub range: (usize, usize),
}

struct Item {
    text: (usize, usize),
    alias: Option<String>,
    aggregate: Option<(String, bool)>,
}

struct Builder<'a> {
    sql: &'a str,
    dialect: &'a dyn Dialect,
    offset: &'a dyn Fn(Span) -> Option<usize>,
    /// Whether the literal starting at an offset of `sql` was left out of
    /// the parse (see `condensed`): its value is not in the tree.
    emptied: &'a dyn Fn(Option<usize>) -> bool,
    items: Vec<Item>,
    wildcard: bool,
    derived: Vec<Derived>,
}

type Span = sqlparser::tokenizer::Location;

impl Builder<'_> {
    fn range(&self, e: &Expr) -> Result<(usize, usize), Unmergeable> {
        let span = e.span();
        match ((self.offset)(span.start), (self.offset)(span.end)) {
            (Some(a), Some(b)) if a < b => Ok((a, super::analyze::expression_end(self.sql, a, b))),
            _ => Err("an expression without a position".into()),
        }
    }

    /// The sort key of the expression at `range` (`WEIGHT_STRING(...)`).
    fn sort_key(&mut self, range: (usize, usize)) -> Ix {
        let (prefix, suffix) = self.dialect.sort_key();
        self.derive(prefix, range, suffix)
    }

    fn derive(&mut self, prefix: &'static str, range: (usize, usize), suffix: &'static str) -> Ix {
        let d = Derived {
            prefix,
            range,
            suffix,
        };
        if let Some(k) = self.derived.iter().position(|x| *x == d) {
            return Ix::Derived(k);
        }
        self.derived.push(d);
        Ix::Derived(self.derived.len() - 1)
    }

    fn text(&self, r: (usize, usize)) -> String {
        normalize(&self.sql[r.0..r.1])
    }

    /// The select item an ORDER BY / GROUP BY expression names.
    fn item_of(&self, e: &Expr) -> Result<Option<usize>, Unmergeable> {
        if let Expr::Value(v) = e {
            if let Value::Number(n, _) = &v.value {
                let pos: usize = n.parse().map_err(|_| format!("bad position {n}"))?;
                if self.wildcard {
                    return Err("a positional ORDER BY / GROUP BY with SELECT *".into());
                }
                return match pos.checked_sub(1).filter(|i| *i < self.items.len()) {
                    Some(i) => Ok(Some(i)),
                    None => Err(format!("position {pos} is not in the select list").into()),
                };
            }
        }
        if self.wildcard {
            return Ok(None);
        }
        if let Expr::Identifier(id) = e {
            if let Some(i) = self.items.iter().position(|it| {
                it.alias
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(&id.value))
            }) {
                return Ok(Some(i));
            }
        }
        let text = self.text(self.range(e)?);
        Ok(self.items.iter().position(|it| self.text(it.text) == text))
    }

    /// A non-aggregate key: a visible item when it is one, else derived.
    fn key(&mut self, e: &Expr) -> Result<ColRef, Unmergeable> {
        let (value, range) = match self.item_of(e)? {
            Some(i) => (Ix::Visible(i), self.items[i].text),
            None => {
                let r = self.range(e)?;
                (self.derive("", r, ""), r)
            }
        };
        let weight = Some(self.sort_key(range));
        Ok(ColRef { value, weight })
    }
}

fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// Aggregate functions, as MariaDB names them.
pub(crate) fn is_aggregate_name(name: &str) -> bool {
    matches!(
        name,
        "COUNT"
            | "SUM"
            | "MIN"
            | "MAX"
            | "AVG"
            | "GROUP_CONCAT"
            | "STD"
            | "STDDEV"
            | "STDDEV_POP"
            | "STDDEV_SAMP"
            | "VARIANCE"
            | "VAR_POP"
            | "VAR_SAMP"
            | "BIT_AND"
            | "BIT_OR"
            | "BIT_XOR"
            | "JSON_ARRAYAGG"
            | "JSON_OBJECTAGG"
    )
}

/// The aggregate an expression is, if it is exactly one call of an
/// aggregate function: (upper-case name, DISTINCT?).
fn aggregate_call(e: &Expr) -> Option<(String, bool)> {
    let Expr::Function(f) = e else { return None };
    let name = f.name.to_string().to_ascii_uppercase();
    let distinct = match &f.args {
        FunctionArguments::List(list) => {
            matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct))
        }
        _ => false,
    };
    is_aggregate_name(&name).then_some((name, distinct))
}

fn contains_aggregate(e: &Expr) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(e, |x| {
        if aggregate_call(x).is_some() {
            found = true;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

/// Plans the merge of a SELECT over several nodes, or says why it cannot.
/// `tokens` are those of the statement's text, its cut lists' left out
/// (`lex::TokenList::of_statement`).
pub fn scatter_select(
    tokens: Tokens<'_, '_>,
    q: &Query,
    s: &Select,
    offset: &dyn Fn(Span) -> Option<usize>,
    emptied: &dyn Fn(Option<usize>) -> bool,
    placeholders: &[Placeholder],
    dialect: &dyn Dialect,
) -> Result<ScatterSelect, Unmergeable> {
    let sql = tokens.sql();
    let mut b = Builder {
        sql,
        dialect,
        offset,
        emptied,
        items: Vec::new(),
        wildcard: false,
        derived: Vec::new(),
    };
    for item in &s.projection {
        match item {
            SelectItem::UnnamedExpr(e) => b.items.push(Item {
                text: b.range(e)?,
                alias: None,
                aggregate: aggregate_call(e),
            }),
            SelectItem::ExprWithAlias { expr, alias } => b.items.push(Item {
                text: b.range(expr)?,
                alias: Some(alias.value.clone()),
                aggregate: aggregate_call(expr),
            }),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => b.wildcard = true,
            _ => return Err("this kind of select item".into()),
        }
    }
    for item in &s.projection {
        if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
            if aggregate_call(e).is_none() && contains_aggregate(e) {
                return Err("an expression over aggregates across data nodes".into());
            }
        }
    }
    let distinct_aggregates = b
        .items
        .iter()
        .filter(|i| i.aggregate.as_ref().is_some_and(|(_, d)| *d))
        .count();
    // Nodes group by COUNT(DISTINCT x)'s x as well: the other aggregates
    // then come in parts per x, which the merge folds as it folds nodes'.
    if distinct_aggregates > 1 {
        return Err("several COUNT(DISTINCT ...) across data nodes".into());
    }
    let group_exprs: Vec<&Expr> = match &s.group_by {
        GroupByExpr::Expressions(e, modifiers) if modifiers.is_empty() => e.iter().collect(),
        GroupByExpr::Expressions(..) => return Err("GROUP BY modifiers (WITH ROLLUP)".into()),
        GroupByExpr::All(_) => return Err("GROUP BY ALL".into()),
    };
    let order_exprs: Vec<(&Expr, bool)> = match &q.order_by {
        None => Vec::new(),
        Some(o) => match &o.kind {
            OrderByKind::Expressions(list) => list
                .iter()
                .map(|x| (&x.expr, matches!(x.options.sort, Some(OrderBySort::Desc))))
                .collect(),
            OrderByKind::All(_) => return Err("ORDER BY ALL".into()),
        },
    };
    let has_aggregates = b.items.iter().any(|i| i.aggregate.is_some());
    if b.wildcard && (has_aggregates || !group_exprs.is_empty()) {
        return Err("SELECT * with aggregates or GROUP BY across data nodes".into());
    }
    let (offset_val, limit_val) = limit_values(q, &b, placeholders)?;
    let mut out = ScatterSelect {
        insert_at: 0,
        tail: (0, 0),
        derived: Vec::new(),
        node_order: Vec::new(),
        node_limit: false,
        offset: offset_val,
        limit: limit_val,
        order: Vec::new(),
        group: None,
        aggregates: Vec::new(),
        order_after_group: Vec::new(),
        distinct: None,
        having: None,
        group_append: None,
        node_order_extra: None,
        repeatable: super::repeatable::repeatable(q),
    };
    if has_aggregates || !group_exprs.is_empty() {
        let mut keys = Vec::new();
        for g in &group_exprs {
            keys.push(b.key(g)?);
        }
        for i in 0..b.items.len() {
            let Some((name, distinct)) = b.items[i].aggregate.clone() else {
                continue;
            };
            let range = b.items[i].text;
            let arg = inner_args(sql, range);
            if distinct {
                let value = count_distinct_value(sql, &name, arg)?;
                let value = ColRef {
                    value: b.derive("", value, ""),
                    weight: Some(b.sort_key(value)),
                };
                out.aggregates.push((
                    ColRef {
                        value: Ix::Visible(i),
                        weight: None,
                    },
                    AggSpec::CountDistinct { value },
                ));
                // Nodes group by the value too, and sort by it after the keys.
                let range = value_range(&b, value.value);
                out.group_append = Some(match group_exprs.last() {
                    Some(last) => GroupAppend {
                        at: b.range(last)?.1,
                        prefix: ", ",
                        range,
                    },
                    None => GroupAppend {
                        at: usize::MAX,
                        prefix: " GROUP BY ",
                        range,
                    },
                });
                out.node_order_extra = Some(value.value);
                continue;
            }
            let spec = match name.as_str() {
                "COUNT" => AggSpec::Count,
                "SUM" => AggSpec::Sum,
                "MIN" => AggSpec::Min,
                "MAX" => AggSpec::Max,
                "AVG" => {
                    let arg = arg.ok_or("AVG without an argument")?;
                    AggSpec::Avg {
                        sum: b.derive("SUM(", arg, ")"),
                        count: b.derive("COUNT(", arg, ")"),
                    }
                }
                other => return Err(format!("{other}() across data nodes").into()),
            };
            let weight = matches!(spec, AggSpec::Min | AggSpec::Max).then(|| b.sort_key(range));
            out.aggregates.push((
                ColRef {
                    value: Ix::Visible(i),
                    weight,
                },
                spec,
            ));
        }
        // Nodes sort by the group keys so equal groups meet in the merge.
        out.node_order = keys.iter().map(|k| (k.value, false)).collect();
        out.order = keys.iter().map(|k| (*k, false)).collect();
        if let Some(extra) = out.node_order_extra {
            out.node_order.push((extra, false));
            let value = out
                .aggregates
                .iter()
                .find_map(|(_, a)| match a {
                    AggSpec::CountDistinct { value } => Some(*value),
                    _ => None,
                })
                .ok_or("COUNT(DISTINCT)")?;
            out.order.push((value, false));
        }
        let same_as_group = order_exprs.len() <= keys.len()
            && order_exprs
                .iter()
                .zip(&keys)
                .all(|((e, _), k)| b.key(e).map(|x| x.value == k.value).unwrap_or(false));
        if same_as_group && !order_exprs.is_empty() {
            for (i, (_, desc)) in order_exprs.iter().enumerate() {
                out.node_order[i].1 = *desc;
                out.order[i].1 = *desc;
            }
        } else {
            for (e, desc) in &order_exprs {
                let key = match b.item_of(e)? {
                    Some(i) if b.items[i].aggregate.is_some() => out
                        .aggregates
                        .iter()
                        .find(|(c, _)| c.value == Ix::Visible(i))
                        .map(|(c, _)| *c)
                        .ok_or("ORDER BY an aggregate")?,
                    _ if aggregate_call(e).is_some() => {
                        aggregate_column(&mut b, e, &mut out.aggregates)?
                    }
                    _ if contains_aggregate(e) => {
                        return Err("ORDER BY an expression over aggregates".into())
                    }
                    _ => b.key(e)?,
                };
                out.order_after_group.push((key, *desc));
            }
        }
        if let Some(h) = &s.having {
            let cond = having_cond(&mut b, h, &mut out.aggregates, placeholders)?;
            let range = having_range(tokens, b.dialect)?;
            out.having = Some((cond, range));
        }
        out.group = Some(keys);
    } else if s.having.is_some() {
        return Err("HAVING without GROUP BY or aggregates".into());
    } else if s.distinct.is_some() {
        if b.wildcard {
            return Err("SELECT DISTINCT * across data nodes".into());
        }
        let mut all = Vec::new();
        for (e, desc) in &order_exprs {
            if b.item_of(e)?.is_none() {
                return Err("SELECT DISTINCT ordered by a column it does not select".into());
            }
            let k = b.key(e)?;
            all.push((k, *desc));
        }
        let mut distinct = Vec::new();
        for i in 0..b.items.len() {
            let range = b.items[i].text;
            let k = ColRef {
                value: Ix::Visible(i),
                weight: Some(b.sort_key(range)),
            };
            if !all.iter().any(|(x, _): &(ColRef, bool)| x.value == k.value) {
                all.push((k, false));
            }
            distinct.push(k);
        }
        out.node_order = all.iter().map(|(k, d)| (k.value, *d)).collect();
        out.order = all;
        out.distinct = Some(distinct);
        out.node_limit = true;
    } else {
        for (e, desc) in &order_exprs {
            let k = b.key(e)?;
            out.order.push((k, *desc));
            out.node_order.push((k.value, *desc));
        }
        out.node_limit = true;
    }
    let (insert_at, tail) = clause_positions(sql, tokens, dialect)?;
    let tail_has_params = placeholders
        .iter()
        .any(|p| (tail.0..tail.1).contains(&p.start) && !limit_param_at(q, &b, p.start));
    if tail_has_params
        || b.derived.iter().any(|d| {
            placeholders
                .iter()
                .any(|p| (d.range.0..d.range.1).contains(&p.start))
        })
    {
        return Err("parameters in ORDER BY / GROUP BY across data nodes".into());
    }
    out.insert_at = insert_at;
    out.tail = tail;
    out.derived = b.derived;
    Ok(out)
}

/// The argument of COUNT(DISTINCT x): x's byte range.
fn count_distinct_value(
    sql: &str,
    name: &str,
    arg: Option<(usize, usize)>,
) -> Result<(usize, usize), Unmergeable> {
    if name != "COUNT" {
        return Err(format!("{name}(DISTINCT ...) across data nodes").into());
    }
    let (start, end) = arg.ok_or("COUNT(DISTINCT) without an argument")?;
    let tokens: Vec<Tok<'_>> = Lexer::new(&sql[start..end]).collect();
    let Some(first) = tokens.first().filter(|t| t.token.is_word("DISTINCT")) else {
        return Err("COUNT(DISTINCT) the proxy cannot read".into());
    };
    let mut depth = 0usize;
    for t in &tokens[1..] {
        match t.token {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth = depth.saturating_sub(1),
            Token::Punct(b',') if depth == 0 => {
                return Err("COUNT(DISTINCT) of several columns across data nodes".into())
            }
            _ => {}
        }
    }
    let value_start = start + first.end;
    let trimmed = sql[value_start..end].trim_start();
    Ok((end - trimmed.len(), end))
}

/// The text range of a derived column's expression.
fn value_range(b: &Builder<'_>, ix: Ix) -> (usize, usize) {
    match ix {
        Ix::Derived(k) => b.derived.get(k).map_or((0, 0), |d| d.range),
        Ix::Visible(i) => b.items.get(i).map_or((0, 0), |it| it.text),
    }
}

/// The column holding an aggregate call's merged value: its select item, or
/// a derived column registered as an aggregate.
fn aggregate_column(
    b: &mut Builder<'_>,
    e: &Expr,
    aggregates: &mut Vec<(ColRef, AggSpec)>,
) -> Result<ColRef, Unmergeable> {
    if let Some(i) = b.item_of(e)? {
        if let Some((c, _)) = aggregates.iter().find(|(c, _)| c.value == Ix::Visible(i)) {
            return Ok(*c);
        }
    }
    let (name, distinct) = aggregate_call(e).ok_or("an aggregate")?;
    if distinct {
        return Err("aggregates over DISTINCT values across data nodes".into());
    }
    let range = b.range(e)?;
    let value = b.derive("", range, "");
    let spec = match name.as_str() {
        "COUNT" => AggSpec::Count,
        "SUM" => AggSpec::Sum,
        "MIN" => AggSpec::Min,
        "MAX" => AggSpec::Max,
        "AVG" => {
            let arg = inner_args(b.sql, range).ok_or("AVG without an argument")?;
            AggSpec::Avg {
                sum: b.derive("SUM(", arg, ")"),
                count: b.derive("COUNT(", arg, ")"),
            }
        }
        other => return Err(format!("{other}() across data nodes").into()),
    };
    let weight = matches!(spec, AggSpec::Min | AggSpec::Max).then(|| b.sort_key(range));
    let c = ColRef { value, weight };
    aggregates.push((c, spec));
    Ok(c)
}

/// A HAVING condition over merged columns.
fn having_cond(
    b: &mut Builder<'_>,
    e: &Expr,
    aggregates: &mut Vec<(ColRef, AggSpec)>,
    placeholders: &[Placeholder],
) -> Result<HavingCond, Unmergeable> {
    use sqlparser::ast::{BinaryOperator as B, UnaryOperator as U};
    let sub = |x: &Expr, b: &mut Builder<'_>, a: &mut Vec<(ColRef, AggSpec)>| {
        having_cond(b, x, a, placeholders).map(Box::new)
    };
    Ok(match e {
        Expr::Nested(x) => having_cond(b, x, aggregates, placeholders)?,
        Expr::BinaryOp { left, op, right } => {
            let l = sub(left, b, aggregates)?;
            let r = sub(right, b, aggregates)?;
            match op {
                B::And => HavingCond::And(l, r),
                B::Or => HavingCond::Or(l, r),
                B::Eq => HavingCond::Compare(CmpOp::Eq, l, r),
                B::NotEq => HavingCond::Compare(CmpOp::Ne, l, r),
                B::Lt => HavingCond::Compare(CmpOp::Lt, l, r),
                B::LtEq => HavingCond::Compare(CmpOp::Le, l, r),
                B::Gt => HavingCond::Compare(CmpOp::Gt, l, r),
                B::GtEq => HavingCond::Compare(CmpOp::Ge, l, r),
                B::Plus => HavingCond::Arith(ArithOp::Add, l, r),
                B::Minus => HavingCond::Arith(ArithOp::Sub, l, r),
                B::Multiply => HavingCond::Arith(ArithOp::Mul, l, r),
                B::Divide => HavingCond::Arith(ArithOp::Div, l, r),
                other => return Err(format!("HAVING with the operator {other}").into()),
            }
        }
        Expr::UnaryOp { op: U::Not, expr } => HavingCond::Not(sub(expr, b, aggregates)?),
        Expr::UnaryOp { op: U::Minus, expr } => HavingCond::Neg(sub(expr, b, aggregates)?),
        Expr::IsNull(x) => HavingCond::IsNull(sub(x, b, aggregates)?, false),
        Expr::IsNotNull(x) => HavingCond::IsNull(sub(x, b, aggregates)?, true),
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } => {
            let x = sub(expr, b, aggregates)?;
            HavingCond::And(
                Box::new(HavingCond::Compare(
                    CmpOp::Ge,
                    x.clone(),
                    sub(low, b, aggregates)?,
                )),
                Box::new(HavingCond::Compare(CmpOp::Le, x, sub(high, b, aggregates)?)),
            )
        }
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => {
                if (b.emptied)(b.range(e).ok().map(|(start, _)| start)) {
                    // It stands for a cut run: the statement is analysed again whole.
                    return Err("a run of terms left out of the parse".into());
                }
                HavingCond::Number(n.clone())
            }
            Value::SingleQuotedString(t) | Value::DoubleQuotedString(t) => {
                if (b.emptied)(b.range(e).ok().map(|(start, _)| start)) {
                    // The statement is analysed again whole.
                    return Err("a literal left out of the parse".into());
                }
                HavingCond::Text(t.clone().into_bytes())
            }
            Value::Null => HavingCond::Null,
            Value::Placeholder(_) => {
                let (start, _) = b.range(e)?;
                let p = placeholders
                    .iter()
                    .find(|p| p.start == start)
                    .ok_or("a HAVING parameter")?;
                HavingCond::Param(p.index)
            }
            _ => return Err("HAVING with this literal".into()),
        },
        _ if aggregate_call(e).is_some() => {
            HavingCond::Column(aggregate_column(b, e, aggregates)?.value)
        }
        _ if contains_aggregate(e) => {
            return Err("HAVING with this expression over aggregates".into())
        }
        _ => match b.item_of(e)? {
            Some(i) => HavingCond::Column(Ix::Visible(i)),
            None => HavingCond::Column(b.key(e)?.value),
        },
    })
}

/// The byte range of the top-level HAVING clause (up to ORDER BY, LIMIT,
/// a locking clause of `dialect` or the end).
fn having_range(
    tokens: Tokens<'_, '_>,
    dialect: &dyn Dialect,
) -> Result<(usize, usize), Unmergeable> {
    let mut depth = 0usize;
    let mut start = None;
    let mut end = None;
    for (i, t) in tokens.iter().enumerate() {
        match t.token {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth = depth.saturating_sub(1),
            Token::Punct(b';') if depth == 0 => break,
            tok if depth == 0 && tok.is_word("HAVING") => start = Some(t.start),
            tok if depth == 0
                && start.is_some()
                && (["ORDER", "LIMIT", "WINDOW", "INTO"]
                    .iter()
                    .any(|w| tok.is_word(w))
                    || dialect.lock_clause_at(tokens, i)) =>
            {
                break
            }
            _ => {}
        }
        if start.is_some() {
            end = Some(t.end);
        }
    }
    match (start, end) {
        (Some(s), Some(e)) => Ok((s, e)),
        _ => Err("a HAVING clause the proxy cannot find".into()),
    }
}

fn limit_param_at(q: &Query, b: &Builder<'_>, at: usize) -> bool {
    let exprs: Vec<&Expr> = match &q.limit_clause {
        Some(LimitClause::LimitOffset { limit, offset, .. }) => limit
            .iter()
            .chain(offset.iter().map(|o| &o.value))
            .collect(),
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => vec![offset, limit],
        None => Vec::new(),
    };
    exprs.iter().any(|e| b.range(e).is_ok_and(|r| r.0 == at))
}

/// The text between a function call's parentheses.
fn inner_args(sql: &str, range: (usize, usize)) -> Option<(usize, usize)> {
    let text = &sql[range.0..range.1];
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    (open + 1 < close).then_some((range.0 + open + 1, range.0 + close))
}

fn limit_values(
    q: &Query,
    b: &Builder<'_>,
    placeholders: &[Placeholder],
) -> Result<(Option<LimitVal>, Option<LimitVal>), Unmergeable> {
    let val = |e: &Expr| -> Result<LimitVal, Unmergeable> {
        match e {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => n
                    .parse()
                    .map(LimitVal::Lit)
                    .map_err(|_| format!("LIMIT {n}").into()),
                Value::Placeholder(_) => {
                    let (start, _) = b.range(e)?;
                    placeholders
                        .iter()
                        .find(|p| p.start == start)
                        .map(|p| LimitVal::Param(p.index))
                        .ok_or_else(|| "a LIMIT parameter".into())
                }
                _ => Err("a LIMIT that is not a number".into()),
            },
            _ => Err("a LIMIT that is not a number".into()),
        }
    };
    Ok(match &q.limit_clause {
        None => (None, None),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return Err("LIMIT BY".into());
            }
            (
                offset.as_ref().map(|o| val(&o.value)).transpose()?,
                limit.as_ref().map(val).transpose()?,
            )
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
            (Some(val(offset)?), Some(val(limit)?))
        }
    })
}

/// Where derived columns go (after the last select item) and the byte range
/// of the top-level ORDER BY ... LIMIT ... (empty, at the end of the query
/// proper, when there is none). The query proper ends at a locking clause
/// of `dialect` (`LOCK` is a column's name to PostgreSQL).
fn clause_positions(
    sql: &str,
    tokens: Tokens<'_, '_>,
    dialect: &dyn Dialect,
) -> Result<(usize, (usize, usize)), Unmergeable> {
    let mut depth = 0usize;
    let mut from = None;
    let mut tail_start = None;
    let mut tail_end = None;
    let mut core_end = tokens.last().map_or(sql.len(), |t| t.end);
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens.at(i);
        match t.token {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth = depth.saturating_sub(1),
            Token::Punct(b';') if depth == 0 => {
                core_end = tokens.get(i.wrapping_sub(1)).map_or(t.start, |p| p.end);
                break;
            }
            tok if depth == 0 && from.is_none() && tok.is_word("FROM") => {
                from = Some(tokens.get(i.wrapping_sub(1)).map_or(t.start, |p| p.end))
            }
            tok if depth == 0
                && from.is_some()
                && (tok.is_word("ORDER") || tok.is_word("LIMIT")) =>
            {
                tail_start.get_or_insert(t.start);
                // Consume to the end of the clause.
                let mut j = i + 1;
                let mut d = 0usize;
                while j < tokens.len() {
                    match tokens.at(j).token {
                        Token::Punct(b'(') => d += 1,
                        Token::Punct(b')') if d > 0 => d -= 1,
                        Token::Punct(b';') if d == 0 => break,
                        Token::Word(w)
                            if d == 0
                                && (["INTO", "PROCEDURE"]
                                    .iter()
                                    .any(|k| w.eq_ignore_ascii_case(k))
                                    || dialect.lock_clause_at(tokens, j))
                                || (d == 0
                                    && tok.is_word("ORDER")
                                    && w.eq_ignore_ascii_case("LIMIT")) =>
                        {
                            break
                        }
                        _ => {}
                    }
                    j += 1;
                }
                tail_end = Some(tokens.at(j - 1).end);
                i = j;
                continue;
            }
            _ if depth == 0
                && from.is_some()
                && tail_start.is_none()
                && dialect.lock_clause_at(tokens, i) =>
            {
                core_end = tokens.get(i.wrapping_sub(1)).map_or(t.start, |p| p.end);
                tail_start = Some(core_end);
                tail_end = Some(core_end);
                break;
            }
            _ => {}
        }
        i += 1;
    }
    let from = from.ok_or("a SELECT without FROM")?;
    let start = tail_start.unwrap_or(core_end);
    Ok((from, (start, tail_end.unwrap_or(start))))
}

/// The ORDER BY / LIMIT a node runs, for derived columns numbered from
/// `__sg_0`, with `limit` = offset + count when nodes limit.
pub fn node_tail(sc: &ScatterSelect, limit: Option<u64>, dialect: &dyn Dialect) -> String {
    let mut out = String::new();
    if !sc.node_order.is_empty() {
        out.push_str(" ORDER BY ");
        let keys: Vec<String> = sc
            .node_order
            .iter()
            .map(|(ix, desc)| {
                let col = match ix {
                    Ix::Visible(i) => (i + 1).to_string(),
                    Ix::Derived(k) => dialect.quoted(&derived_name(*k)),
                };
                if *desc {
                    format!("{col} DESC")
                } else {
                    col
                }
            })
            .collect();
        out.push_str(&keys.join(", "));
    }
    if let (true, Some(n)) = (sc.node_limit, limit) {
        out.push_str(&format!(" LIMIT {n}"));
    }
    out
}

/// Renders derived columns for a node (tables inside them renamed).
pub fn derived_columns(
    sql: &str,
    sc: &ScatterSelect,
    replacements: &[Replacement],
    physical: &dyn Fn(&str) -> String,
    dialect: &dyn Dialect,
) -> String {
    let mut out = String::new();
    for (k, d) in sc.derived.iter().enumerate() {
        let text = node_text(sql, d.range, replacements, physical, dialect);
        out.push_str(&format!(", {}{}{} AS ", d.prefix, text, d.suffix));
        dialect.push_quoted(&mut out, &derived_name(k));
    }
    out
}

/// The name of derived column `k` in a node's result.
fn derived_name(k: usize) -> String {
    format!("__sg_{k}")
}

/// The text of `range` of `sql` as a node runs it: tables renamed.
pub fn node_text(
    sql: &str,
    range: (usize, usize),
    replacements: &[Replacement],
    physical: &dyn Fn(&str) -> String,
    dialect: &dyn Dialect,
) -> String {
    let inner: Vec<Replacement> = replacements
        .iter()
        .filter(|r| r.start >= range.0 && r.end <= range.1)
        .map(|r| Replacement {
            start: r.start - range.0,
            end: r.end - range.0,
            table: r.table.clone(),
        })
        .collect();
    super::rewrite::splice_tables(&sql[range.0..range.1], &inner, physical, dialect)
}

/// The merge plan for node results with these columns.
pub fn merge_plan(
    sc: &ScatterSelect,
    columns: Vec<ColumnMeta>,
    offset: u64,
    limit: Option<u64>,
    having: Option<&HavingCond>,
) -> Result<MergePlan, MergeShapeError> {
    let derived = sc.derived.len();
    let visible =
        columns
            .len()
            .checked_sub(derived)
            .ok_or(MergeShapeError::FewerColumnsThanDerived {
                columns: columns.len(),
                derived,
            })?;
    let ix = |i: Ix| match i {
        Ix::Visible(v) => v,
        Ix::Derived(k) => visible + k,
    };
    let mut plan = MergePlan::new(columns, visible);
    let cmp = |c: &ColRef| {
        let value = ix(c.value);
        let weight = c
            .weight
            .map(ix)
            .filter(|_| plan.columns.get(value).is_some_and(|c| c.collated));
        Compared {
            column: value,
            weight,
        }
    };
    let keys = |list: &[(ColRef, bool)]| -> Vec<SortKey> {
        list.iter()
            .map(|(c, desc)| SortKey {
                item: cmp(c),
                descending: *desc,
            })
            .collect()
    };
    plan.order_by = keys(&sc.order);
    plan.order_after_group = keys(&sc.order_after_group);
    plan.group_by = sc.group.as_ref().map(|g| g.iter().map(cmp).collect());
    plan.distinct = sc.distinct.as_ref().map(|d| d.iter().map(cmp).collect());
    plan.aggregates = sc
        .aggregates
        .iter()
        .map(|(c, spec)| Aggregate {
            item: cmp(c),
            kind: match spec {
                AggSpec::CountDistinct { value } => {
                    AggregateKind::CountDistinct { value: cmp(value) }
                }
                AggSpec::Count => AggregateKind::Count,
                AggSpec::Sum => AggregateKind::Sum,
                AggSpec::Min => AggregateKind::Min,
                AggSpec::Max => AggregateKind::Max,
                AggSpec::Avg { sum, count } => AggregateKind::Avg {
                    sum: ix(*sum),
                    count: ix(*count),
                },
            },
        })
        .collect();
    plan.offset = offset;
    plan.limit = limit;
    if let Some(cond) = having {
        let bound = cond.bind(&ix, &|_| None)?;
        plan.filter = Some(shardgate_merge::plan::RowFilter(std::sync::Arc::new(
            move |row| bound.passes(row),
        )));
    }
    Ok(plan)
}
