//! The first merge stage: one stream out of the per-node streams, either a
//! k-way merge by the plan's ORDER BY (a heap holding one head row per
//! node, ties going to the lower node index) or, without an order, the
//! nodes' rows one node after another.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::column::ColumnMeta;
use super::compare::compare_rows;
use super::engine::RowSource;
use super::error::MergeError;
use super::plan::{MergePlan, SortKey};
use super::value::Value;

/// A node's current head row in the heap.
struct Head<'p> {
    row: Vec<Value>,
    source: usize,
    keys: &'p [SortKey],
    columns: &'p [ColumnMeta],
}

impl Ord for Head<'_> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the smallest row.
    fn cmp(&self, other: &Self) -> Ordering {
        compare_rows(&other.row, &self.row, self.keys, self.columns)
            .then_with(|| other.source.cmp(&self.source))
    }
}

impl PartialOrd for Head<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head<'_> {}

pub(crate) struct NodeMerge<'p, S> {
    plan: &'p MergePlan,
    sources: Vec<S>,
    heap: BinaryHeap<Head<'p>>,
    started: bool,
    /// The node whose head was handed out last: pulled from lazily, so that
    /// nothing is read past the row that completes the LIMIT.
    refill: Option<usize>,
    /// Unordered mode: the node being drained.
    current: usize,
    rows_in: u64,
}

impl<'p, S: RowSource> NodeMerge<'p, S> {
    pub(crate) fn new(plan: &'p MergePlan, sources: Vec<S>) -> Self {
        NodeMerge {
            plan,
            heap: BinaryHeap::with_capacity(sources.len()),
            sources,
            started: false,
            refill: None,
            current: 0,
            rows_in: 0,
        }
    }

    /// Rows read from all nodes so far.
    pub(crate) fn rows_in(&self) -> u64 {
        self.rows_in
    }

    /// Rows held by this stage.
    pub(crate) fn in_flight(&self) -> usize {
        self.heap.len()
    }

    pub(crate) async fn next(&mut self) -> Result<Option<Vec<Value>>, MergeError> {
        if self.plan.order_by.is_empty() {
            while self.current < self.sources.len() {
                if let Some(row) = self.pull(self.current).await? {
                    return Ok(Some(row));
                }
                self.current += 1;
            }
            return Ok(None);
        }
        if !self.started {
            self.started = true;
            for source in 0..self.sources.len() {
                self.push_next(source).await?;
            }
        }
        if let Some(source) = self.refill.take() {
            self.push_next(source).await?;
        }
        Ok(self.heap.pop().map(|head| {
            self.refill = Some(head.source);
            head.row
        }))
    }

    async fn push_next(&mut self, source: usize) -> Result<(), MergeError> {
        if let Some(row) = self.pull(source).await? {
            self.heap.push(Head {
                row,
                source,
                keys: &self.plan.order_by,
                columns: &self.plan.columns,
            });
        }
        Ok(())
    }

    async fn pull(&mut self, source: usize) -> Result<Option<Vec<Value>>, MergeError> {
        let row = self.sources[source].next_row().await?;
        if let Some(row) = &row {
            if row.len() != self.plan.columns.len() {
                return Err(MergeError::Malformed(format!(
                    "node {source} sent a row of {} values for {} columns",
                    row.len(),
                    self.plan.columns.len()
                )));
            }
            self.rows_in += 1;
        }
        Ok(row)
    }
}
