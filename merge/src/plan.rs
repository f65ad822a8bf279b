//! The merge plan: what the rewrite tells the engine about how node results
//! are ordered and how they must be combined.

use super::column::ColumnMeta;
use super::error::MergeError;

/// Default cap on rows buffered for `order_after_group`.
pub const DEFAULT_MAX_BUFFERED_ROWS: usize = 100_000;

/// A comparable item: a value column, and optionally the hidden
/// `WEIGHT_STRING(expr)` column that orders it by its collation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compared {
    pub column: usize,
    pub weight: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub item: Compared,
    pub descending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateKind {
    /// Per-node COUNT(*) or COUNT(col): summed.
    Count,
    /// NULL if every node's sum is NULL.
    Sum,
    Min,
    Max,
    /// COUNT(DISTINCT expr): nodes return one row per distinct `value` within
    /// each group, sorted by the group keys then `value`, so equal values
    /// from different nodes are adjacent; the merged count is the number of
    /// distinct non-NULL values. The item is the visible COUNT column.
    CountDistinct {
        value: Compared,
    },
    /// Value = merged `sum` column / merged `count` column (derived columns),
    /// rounded to the AVG column's decimals; NULL when the count is 0.
    Avg {
        sum: usize,
        count: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregate {
    /// The visible aggregate column (and the weight for MIN/MAX of strings).
    pub item: Compared,
    pub kind: AggregateKind,
}

/// The test a [`RowFilter`] applies to a merged row.
pub type RowTest = dyn Fn(&[super::value::Value]) -> Result<bool, MergeError> + Send + Sync;

/// A condition merged groups must meet (HAVING), checked after grouping.
#[derive(Clone)]
pub struct RowFilter(pub std::sync::Arc<RowTest>);

impl std::fmt::Debug for RowFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RowFilter")
    }
}

#[derive(Debug, Clone)]
pub struct MergePlan {
    /// Definitions of every column the nodes return (visible then derived),
    /// as received from one node: types, flags and decimals decide decoding,
    /// comparison and aggregate results.
    pub columns: Vec<ColumnMeta>,
    /// How every node's rows are sorted (the merge order). Empty: no order,
    /// rows are concatenated node by node.
    pub order_by: Vec<SortKey>,
    /// None = no grouping; Some(keys) = group by these (a prefix of
    /// `order_by`); Some(vec![]) = aggregates without GROUP BY (exactly one
    /// output row).
    pub group_by: Option<Vec<Compared>>,
    pub aggregates: Vec<Aggregate>,
    /// After grouping, sort the groups by these; buffers the groups (cap:
    /// `max_buffered_rows`).
    pub order_after_group: Vec<SortKey>,
    /// SELECT DISTINCT over these items: equal rows are adjacent in the
    /// merged (or re-sorted) order and only the first is kept.
    pub distinct: Option<Vec<Compared>>,
    pub offset: u64,
    pub limit: Option<u64>,
    /// Columns [0, visible) go to the client; the rest are dropped.
    pub visible: usize,
    pub max_buffered_rows: usize,
    /// Groups failing this are dropped before ordering, OFFSET and LIMIT.
    pub filter: Option<RowFilter>,
}

impl MergePlan {
    /// A plan that concatenates node results unchanged.
    pub fn new(columns: Vec<ColumnMeta>, visible: usize) -> Self {
        MergePlan {
            columns,
            order_by: Vec::new(),
            group_by: None,
            aggregates: Vec::new(),
            order_after_group: Vec::new(),
            distinct: None,
            offset: 0,
            limit: None,
            visible,
            max_buffered_rows: DEFAULT_MAX_BUFFERED_ROWS,
            filter: None,
        }
    }

    /// Checks that every referenced column exists, so the engine can index
    /// rows (whose width it checks against `columns`) without panicking.
    pub fn validate(&self) -> Result<(), MergeError> {
        let width = self.columns.len();
        let bad = |what: String| Err(MergeError::Plan(what));
        if self.visible > width {
            return bad(format!(
                "{} visible columns but {width} in total",
                self.visible
            ));
        }
        if !self.aggregates.is_empty() && self.group_by.is_none() {
            return bad("aggregates without a grouping".into());
        }
        let mut items: Vec<Compared> = Vec::new();
        items.extend(self.order_by.iter().map(|k| k.item));
        items.extend(self.order_after_group.iter().map(|k| k.item));
        items.extend(self.group_by.iter().flatten().copied());
        items.extend(self.distinct.iter().flatten().copied());
        for agg in &self.aggregates {
            items.push(agg.item);
            if let AggregateKind::Avg { sum, count } = agg.kind {
                items.push(Compared {
                    column: sum,
                    weight: None,
                });
                items.push(Compared {
                    column: count,
                    weight: None,
                });
            }
            if let AggregateKind::CountDistinct { value } = agg.kind {
                items.push(value);
            }
        }
        for item in items {
            if item.column >= width || item.weight.is_some_and(|w| w >= width) {
                return bad(format!("{item:?} is outside the {width} result columns"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::column::TypeClass;
    use super::*;

    #[test]
    fn validate_rejects_out_of_range_columns() {
        let cols = vec![ColumnMeta::new("a", TypeClass::Int { width: 4 })];
        let mut plan = MergePlan::new(cols, 1);
        assert!(plan.validate().is_ok());
        plan.order_by.push(SortKey {
            item: Compared {
                column: 0,
                weight: Some(1),
            },
            descending: false,
        });
        assert!(matches!(plan.validate(), Err(MergeError::Plan(_))));
        plan.order_by.clear();
        plan.visible = 2;
        assert!(plan.validate().is_err());
        plan.visible = 1;
        plan.aggregates.push(Aggregate {
            item: Compared {
                column: 0,
                weight: None,
            },
            kind: AggregateKind::Count,
        });
        assert!(plan.validate().is_err());
    }
}
