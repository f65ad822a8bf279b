//! Long chains of one binary operator, regrouped into balanced trees right
//! after the parse.
//!
//! sqlparser builds `a OR b OR c …` (as ORMs write a long list of
//! alternatives) left-deep: one level per term. Every later walk of such a
//! tree — the analysis, sqlparser's own `Drop` and `Clone` — recurses once
//! per term, and a few thousand terms overflow a worker thread's stack.
//! Regrouped as a balanced tree the same chain is `log2(terms)` levels deep.
//!
//! Only chains of one and the same operator are regrouped, so AND never
//! moves across OR. The analysis reads AND and OR as sets of conditions
//! (their grouping does not change which rows they select) and reads no
//! other operator's grouping; the text sent to the data nodes is cut from
//! the client's, never printed from the tree, so no node sees the change.

use sqlparser::ast::{BinaryOperator, Expr, Statement, Value, VisitMut, VisitorMut};
use std::ops::ControlFlow;

/// Chains of fewer terms keep the parser's shape (every statement a person
/// writes): regrouping them would buy nothing.
const REGROUPED_FROM_TERMS: usize = 32;

/// Regroups every long chain of one binary operator in `statement`.
pub fn balance(statement: &mut Statement) {
    let _ = statement.visit(&mut Balancer);
}

struct Balancer;

impl VisitorMut for Balancer {
    type Break = ();

    /// Called on a chain's top before its terms are visited, so the walk
    /// below it is already shallow.
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if chain_terms(expr) >= REGROUPED_FROM_TERMS {
            let chain = std::mem::replace(expr, Expr::value(Value::Null));
            *expr = balanced(chain);
        }
        ControlFlow::Continue(())
    }
}

/// The number of terms in the left-deep chain of `expr`'s operator that
/// `expr` tops (1 when it is no binary operation).
fn chain_terms(expr: &Expr) -> usize {
    let Expr::BinaryOp { op: top, .. } = expr else {
        return 1;
    };
    let mut terms = 1;
    let mut at = expr;
    while let Expr::BinaryOp { left, op, .. } = at {
        if op != top {
            break;
        }
        terms += 1;
        at = left;
    }
    terms
}

/// `chain` (a left-deep chain of one operator) as a balanced tree of the
/// same terms in the same order.
fn balanced(chain: Expr) -> Expr {
    let Expr::BinaryOp { op, .. } = &chain else {
        return chain;
    };
    let op = op.clone();
    // Taken apart without recursion: the right terms from the last, then
    // the leftmost one. Terms stay boxed: they are moved, not copied.
    let mut rights = Vec::new();
    let mut at = chain;
    let first = loop {
        match at {
            Expr::BinaryOp { left, op: o, right } if o == op => {
                rights.push(right);
                at = *left;
            }
            other => break other,
        }
    };
    let count = rights.len() + 1;
    let mut terms = std::iter::once(Box::new(first)).chain(rights.into_iter().rev());
    *joined(&mut terms, count, &op)
}

/// The next `count` of `terms` joined by `op` into a tree `log2(count)`
/// deep (recursion as deep).
fn joined(
    terms: &mut impl Iterator<Item = Box<Expr>>,
    count: usize,
    op: &BinaryOperator,
) -> Box<Expr> {
    if count <= 1 {
        return terms
            .next()
            .unwrap_or_else(|| Box::new(Expr::value(Value::Null)));
    }
    let left = joined(terms, count / 2, op);
    let right = joined(terms, count - count / 2, op);
    Box::new(Expr::BinaryOp {
        left,
        op: op.clone(),
        right,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::{Dialect, MARIADB};
    use sqlparser::parser::Parser;

    fn depth(e: &Expr) -> usize {
        match e {
            Expr::BinaryOp { left, right, .. } => 1 + depth(left).max(depth(right)),
            Expr::Nested(inner) => 1 + depth(inner),
            _ => 1,
        }
    }

    fn selection(sql: &str) -> Expr {
        let mut statements = Parser::parse_sql(MARIADB.parser(), sql).unwrap();
        balance(&mut statements[0]);
        let Statement::Query(q) = statements.remove(0) else {
            panic!("a query")
        };
        let sqlparser::ast::SetExpr::Select(s) = *q.body else {
            panic!("a select")
        };
        s.selection.unwrap()
    }

    #[test]
    fn a_long_chain_is_regrouped_with_its_terms_in_order() {
        let terms: Vec<String> = (0..1000).map(|i| format!("user_id = {i}")).collect();
        let sql = format!("SELECT * FROM users WHERE {}", terms.join(" OR "));
        let e = selection(&sql);
        assert!(depth(&e) <= 12, "depth {}", depth(&e));
        // Printed without the grouping: the same text.
        assert_eq!(e.to_string(), terms.join(" OR "));
    }

    #[test]
    fn short_chains_and_mixed_operators_keep_the_parse() {
        let sql = "SELECT * FROM users WHERE a = 1 OR b = 2 AND c = 3 OR d = 4";
        let mut parsed = Parser::parse_sql(MARIADB.parser(), sql).unwrap();
        let before = parsed.clone();
        balance(&mut parsed[0]);
        assert_eq!(parsed, before);
        // A long OR chain of AND pairs: AND stays inside each term.
        let pairs: Vec<String> = (0..100).map(|i| format!("(a = {i} AND b = {i})")).collect();
        let sql = format!("SELECT * FROM users WHERE {}", pairs.join(" OR "));
        let e = selection(&sql);
        assert_eq!(e.to_string(), pairs.join(" OR "));
        assert!(depth(&e) <= 12);
    }
}
