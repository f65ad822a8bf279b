//! The merge entry point: pulls rows from the node streams through the
//! stages the plan asks for (k-way merge → GROUP BY → re-sort of groups →
//! DISTINCT → OFFSET/LIMIT) and pushes the visible columns to the sink.

use std::future::Future;

use super::compare::{compare_rows, same_items};
use super::error::MergeError;
use super::group::Grouper;
use super::kway::NodeMerge;
use super::plan::MergePlan;
use super::value::Value;

#[cfg(test)]
mod tests;

/// One data node's decoded rows, in the node's order.
pub trait RowSource: Send {
    fn next_row(&mut self) -> impl Future<Output = Result<Option<Vec<Value>>, MergeError>> + Send;
}

/// Where merged rows go; receives the visible columns only.
pub trait RowSink: Send {
    fn push_row(&mut self, row: &[Value]) -> impl Future<Output = Result<(), MergeError>> + Send;
}

/// What a merge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Rows pushed to the sink.
    pub rows_out: u64,
    /// Rows read from all nodes.
    pub rows_in: u64,
    /// Most rows held in memory at once.
    pub peak_buffered: usize,
}

/// Merges the node streams `sources` as `plan` says into `sink`. Stops
/// reading as soon as the LIMIT is satisfied; the caller discards the rest
/// of the nodes' results.
pub async fn merge<S: RowSource, K: RowSink>(
    plan: &MergePlan,
    sources: Vec<S>,
    sink: &mut K,
) -> Result<MergeStats, MergeError> {
    plan.validate()?;
    let mut out = Output {
        plan,
        sink,
        to_skip: plan.offset,
        remaining: plan.limit,
        last: None,
        rows_out: 0,
    };
    let mut input = NodeMerge::new(plan, sources);
    let mut grouper = plan
        .group_by
        .as_deref()
        .map(|keys| Grouper::new(plan, keys));
    let mut sorter = (!plan.order_after_group.is_empty()).then(|| Sorter {
        plan,
        rows: Vec::new(),
    });
    let mut peak = 0;
    while !out.done() {
        let Some(row) = input.next().await? else {
            break;
        };
        let held = input.in_flight()
            + grouper.as_ref().map_or(0, Grouper::in_flight)
            + sorter.as_ref().map_or(0, |s| s.rows.len())
            + 1;
        peak = peak.max(held);
        let row = match &mut grouper {
            Some(g) => match g.push(row)? {
                Some(group) => group,
                None => continue,
            },
            None => row,
        };
        if passes(plan, &row)? {
            deliver(row, &mut sorter, &mut out).await?;
        }
    }
    if !out.done() {
        if let Some(row) = grouper.as_mut().map(Grouper::finish).transpose()?.flatten() {
            if passes(plan, &row)? {
                deliver(row, &mut sorter, &mut out).await?;
            }
        }
    }
    if let Some(sorter) = sorter {
        peak = peak.max(sorter.rows.len());
        for row in sorter.into_sorted() {
            if out.done() {
                break;
            }
            out.emit(row).await?;
        }
    }
    Ok(MergeStats {
        rows_out: out.rows_out,
        rows_in: input.rows_in(),
        peak_buffered: peak,
    })
}

fn passes(plan: &MergePlan, row: &[Value]) -> Result<bool, MergeError> {
    match &plan.filter {
        Some(filter) => (filter.0)(row),
        None => Ok(true),
    }
}

async fn deliver<K: RowSink>(
    row: Vec<Value>,
    sorter: &mut Option<Sorter<'_>>,
    out: &mut Output<'_, K>,
) -> Result<(), MergeError> {
    match sorter {
        Some(sorter) => sorter.push(row),
        None => out.emit(row).await,
    }
}

/// Buffers rows (groups) to sort them by `order_after_group`. With a LIMIT
/// only the best `offset + limit` rows are kept (periodic sort + truncate,
/// stable, so ties keep their arrival order).
struct Sorter<'p> {
    plan: &'p MergePlan,
    rows: Vec<Vec<Value>>,
}

impl Sorter<'_> {
    fn keep(&self) -> Option<usize> {
        let limit = self.plan.limit?;
        usize::try_from(self.plan.offset.saturating_add(limit)).ok()
    }

    fn push(&mut self, row: Vec<Value>) -> Result<(), MergeError> {
        let cap = self.plan.max_buffered_rows;
        if self.rows.len() >= cap {
            self.compact();
            if self.rows.len() >= cap {
                return Err(MergeError::TooManyRows { cap });
            }
        }
        self.rows.push(row);
        if self
            .keep()
            .is_some_and(|keep| self.rows.len() >= keep.max(32) * 2)
        {
            self.compact();
        }
        Ok(())
    }

    fn sort(&mut self) {
        let (keys, columns) = (&self.plan.order_after_group, &self.plan.columns);
        self.rows.sort_by(|a, b| compare_rows(a, b, keys, columns));
    }

    fn compact(&mut self) {
        if let Some(keep) = self.keep() {
            self.sort();
            self.rows.truncate(keep);
        }
    }

    fn into_sorted(mut self) -> Vec<Vec<Value>> {
        self.sort();
        self.rows
    }
}

/// The last stage: DISTINCT, OFFSET, LIMIT, projection to visible columns.
struct Output<'a, K> {
    plan: &'a MergePlan,
    sink: &'a mut K,
    to_skip: u64,
    remaining: Option<u64>,
    /// The last row passed on, for DISTINCT.
    last: Option<Vec<Value>>,
    rows_out: u64,
}

impl<K: RowSink> Output<'_, K> {
    fn done(&self) -> bool {
        self.remaining == Some(0)
    }

    async fn emit(&mut self, row: Vec<Value>) -> Result<(), MergeError> {
        if let (Some(items), Some(last)) = (&self.plan.distinct, &self.last) {
            if same_items(last, &row, items, &self.plan.columns) {
                return Ok(());
            }
        }
        if self.to_skip > 0 {
            self.to_skip -= 1;
        } else {
            self.sink.push_row(&row[..self.plan.visible]).await?;
            self.rows_out += 1;
            if let Some(remaining) = &mut self.remaining {
                *remaining -= 1;
            }
        }
        if self.plan.distinct.is_some() {
            self.last = Some(row);
        }
        Ok(())
    }
}
