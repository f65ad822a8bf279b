//! Streaming GROUP BY: merged rows with equal group keys arrive adjacent;
//! their partial aggregates are combined and the group is emitted when the
//! key changes. Other columns keep the group's first row's values.

use super::aggregate::Accumulator;
use super::compare::same_items;
use super::error::MergeError;
use super::plan::{Compared, MergePlan};
use super::value::Value;

struct Group {
    row: Vec<Value>,
    accs: Vec<Accumulator>,
}

pub(crate) struct Grouper<'p> {
    plan: &'p MergePlan,
    keys: &'p [Compared],
    current: Option<Group>,
    seen_rows: bool,
}

impl<'p> Grouper<'p> {
    pub(crate) fn new(plan: &'p MergePlan, keys: &'p [Compared]) -> Self {
        Grouper {
            plan,
            keys,
            current: None,
            seen_rows: false,
        }
    }

    /// Rows held by this stage.
    pub(crate) fn in_flight(&self) -> usize {
        usize::from(self.current.is_some())
    }

    /// Takes the next merged row; returns a finished group when `row` starts
    /// a new one.
    pub(crate) fn push(&mut self, row: Vec<Value>) -> Result<Option<Vec<Value>>, MergeError> {
        self.seen_rows = true;
        if let Some(group) = &mut self.current {
            if same_items(&group.row, &row, self.keys, &self.plan.columns) {
                Self::fold(self.plan, &mut group.accs, &row)?;
                return Ok(None);
            }
        }
        let done = match self.current.take() {
            Some(group) => Some(self.close(group)?),
            None => None,
        };
        let mut accs = self.new_accumulators();
        Self::fold(self.plan, &mut accs, &row)?;
        self.current = Some(Group { row, accs });
        Ok(done)
    }

    /// The last group after the input ended. Without GROUP BY there is
    /// exactly one group, even over no rows at all (COUNT 0, SUM NULL).
    pub(crate) fn finish(&mut self) -> Result<Option<Vec<Value>>, MergeError> {
        match self.current.take() {
            Some(group) => self.close(group).map(Some),
            None if self.keys.is_empty() && !self.seen_rows => {
                let group = Group {
                    row: vec![Value::Null; self.plan.columns.len()],
                    accs: self.new_accumulators(),
                };
                self.close(group).map(Some)
            }
            None => Ok(None),
        }
    }

    fn new_accumulators(&self) -> Vec<Accumulator> {
        self.plan
            .aggregates
            .iter()
            .map(|a| Accumulator::new(a.kind))
            .collect()
    }

    fn fold(plan: &MergePlan, accs: &mut [Accumulator], row: &[Value]) -> Result<(), MergeError> {
        for (acc, agg) in accs.iter_mut().zip(&plan.aggregates) {
            acc.add(row, agg, &plan.columns)?;
        }
        Ok(())
    }

    fn close(&self, mut group: Group) -> Result<Vec<Value>, MergeError> {
        for (acc, agg) in group.accs.iter().zip(&self.plan.aggregates) {
            acc.finish(agg, &self.plan.columns, &mut group.row)?;
        }
        Ok(group.row)
    }
}
