//! Combining per-node partial aggregates of one group: COUNT and SUM add
//! exactly (integers, decimals) or as doubles, MIN/MAX keep the extreme by
//! the column's ordering, AVG divides the merged sum by the merged count.

use std::cmp::Ordering;

use super::column::{ColumnMeta, TypeClass};
use super::compare::compare_values;
use super::decimal::Dec;
use super::error::MergeError;
use super::plan::{Aggregate, AggregateKind};
use super::value::Value;

/// A running numeric sum.
#[derive(Debug, Clone, Default)]
pub(crate) enum Sum {
    #[default]
    Empty,
    Int(i128),
    Dec(Dec),
    Float(f64),
}

impl Sum {
    fn add(&mut self, v: &Value) -> Result<(), MergeError> {
        let term = match v {
            Value::Null => return Ok(()),
            Value::Int(i) => Sum::Int(i128::from(*i)),
            Value::UInt(u) => Sum::Int(i128::from(*u)),
            Value::Double(d) => Sum::Float(*d),
            Value::Float(f) => Sum::Float(f64::from(*f)),
            Value::Decimal(s) => Sum::Dec(Dec::parse(s)?),
            Value::Bytes(b) => Sum::Dec(Dec::parse(&String::from_utf8_lossy(b))?),
        };
        *self = match (std::mem::take(self), term) {
            (Sum::Empty, t) => t,
            (Sum::Int(a), Sum::Int(b)) => Sum::Int(
                a.checked_add(b)
                    .ok_or_else(|| MergeError::Overflow("integer sum".into()))?,
            ),
            (Sum::Float(a), t) => Sum::Float(a + t.to_f64()),
            (s, Sum::Float(b)) => Sum::Float(s.to_f64() + b),
            (s, t) => Sum::Dec(s.to_dec().add(&t.to_dec())),
        };
        Ok(())
    }

    fn to_f64(&self) -> f64 {
        match self {
            Sum::Empty => 0.0,
            Sum::Int(i) => *i as f64,
            Sum::Dec(d) => d.to_f64(),
            Sum::Float(f) => *f,
        }
    }

    fn to_dec(&self) -> Dec {
        match self {
            Sum::Empty => Dec::from_i128(0),
            Sum::Int(i) => Dec::from_i128(*i),
            Sum::Dec(d) => d.clone(),
            // Shortest round-trip digits, never in exponent form.
            Sum::Float(f) => Dec::parse(&format!("{f}")).unwrap_or_else(|_| Dec::from_i128(0)),
        }
    }

    /// The sum as a value of `col`'s type; None for an empty sum.
    fn finish(&self, col: &ColumnMeta) -> Result<Option<Value>, MergeError> {
        if matches!(self, Sum::Empty) {
            return Ok(None);
        }
        let overflow = || MergeError::Overflow(format!("sum does not fit column {}", col.name));
        Ok(Some(match col.class {
            TypeClass::Int { .. } => {
                let i = match self {
                    Sum::Int(i) => *i,
                    other => other.to_dec().render(0).parse().map_err(|_| overflow())?,
                };
                if col.unsigned {
                    Value::UInt(u64::try_from(i).map_err(|_| overflow())?)
                } else {
                    Value::Int(i64::try_from(i).map_err(|_| overflow())?)
                }
            }
            TypeClass::Double => Value::Double(self.to_f64()),
            TypeClass::Float => Value::Float(self.to_f64() as f32),
            _ => Value::Decimal(self.to_dec().render(usize::from(col.decimals))),
        }))
    }
}

/// The running state of one aggregate within one group.
#[derive(Debug, Clone)]
pub(crate) enum Accumulator {
    Sum(Sum),
    /// Best (value, weight) so far, ignoring NULLs.
    Extreme(Option<(Value, Option<Value>)>),
    Avg {
        sum: Sum,
        count: Sum,
    },
    /// The last distinct value (and weight) counted, and the count.
    Distinct(Option<(Value, Option<Value>)>, i64),
}

impl Accumulator {
    pub(crate) fn new(kind: AggregateKind) -> Self {
        match kind {
            AggregateKind::Count | AggregateKind::Sum => Accumulator::Sum(Sum::Empty),
            AggregateKind::Min | AggregateKind::Max => Accumulator::Extreme(None),
            AggregateKind::Avg { .. } => Accumulator::Avg {
                sum: Sum::Empty,
                count: Sum::Empty,
            },
            AggregateKind::CountDistinct { .. } => Accumulator::Distinct(None, 0),
        }
    }

    /// Folds one node row of the group in.
    pub(crate) fn add(
        &mut self,
        row: &[Value],
        agg: &Aggregate,
        columns: &[ColumnMeta],
    ) -> Result<(), MergeError> {
        let col = agg.item.column;
        match (self, agg.kind) {
            (Accumulator::Sum(s), _) => s.add(&row[col])?,
            (Accumulator::Avg { sum, count }, AggregateKind::Avg { sum: si, count: ci }) => {
                sum.add(&row[si])?;
                count.add(&row[ci])?;
            }
            (Accumulator::Extreme(best), kind) => {
                if row[col] == Value::Null {
                    return Ok(());
                }
                let cand = (row[col].clone(), agg.item.weight.map(|w| row[w].clone()));
                let better = match best {
                    None => true,
                    Some(cur) => {
                        let ord = match (&cand.1, &cur.1, agg.item.weight) {
                            (Some(a), Some(b), Some(w)) => compare_values(a, b, &columns[w]),
                            _ => compare_values(&cand.0, &cur.0, &columns[col]),
                        };
                        match kind {
                            AggregateKind::Max => ord == Ordering::Greater,
                            _ => ord == Ordering::Less,
                        }
                    }
                };
                if better {
                    *best = Some(cand);
                }
            }
            (Accumulator::Distinct(last, count), AggregateKind::CountDistinct { value }) => {
                if row[value.column] == Value::Null {
                    return Ok(());
                }
                let cand = (
                    row[value.column].clone(),
                    value.weight.map(|w| row[w].clone()),
                );
                let repeated = last.as_ref().is_some_and(|prev| {
                    match (&cand.1, &prev.1, value.weight) {
                        (Some(a), Some(b), Some(w)) => compare_values(a, b, &columns[w]),
                        _ => compare_values(&cand.0, &prev.0, &columns[value.column]),
                    }
                    .is_eq()
                });
                if !repeated {
                    *count += 1;
                    *last = Some(cand);
                }
            }
            (Accumulator::Avg { .. } | Accumulator::Distinct(..), _) => {
                return Err(MergeError::Plan(format!("{:?} state mismatch", agg.kind)))
            }
        }
        Ok(())
    }

    /// Writes the merged result into the group's output row.
    pub(crate) fn finish(
        &self,
        agg: &Aggregate,
        columns: &[ColumnMeta],
        row: &mut [Value],
    ) -> Result<(), MergeError> {
        let col = &columns[agg.item.column];
        let value = match self {
            Accumulator::Sum(s) => match (s.finish(col)?, agg.kind) {
                (Some(v), _) => v,
                (None, AggregateKind::Count) if col.unsigned => Value::UInt(0),
                (None, AggregateKind::Count) => Value::Int(0),
                (None, _) => Value::Null,
            },
            Accumulator::Extreme(best) => {
                if let (Some(w), Some((_, Some(weight)))) = (agg.item.weight, best) {
                    row[w] = weight.clone();
                }
                best.as_ref().map_or(Value::Null, |(v, _)| v.clone())
            }
            Accumulator::Avg { sum, count } => average(sum, count, col)?,
            Accumulator::Distinct(_, count) if col.unsigned => Value::UInt(count.unsigned_abs()),
            Accumulator::Distinct(_, count) => Value::Int(*count),
        };
        row[agg.item.column] = value;
        Ok(())
    }
}

fn average(sum: &Sum, count: &Sum, col: &ColumnMeta) -> Result<Value, MergeError> {
    let n = match count {
        Sum::Empty => 0,
        Sum::Int(i) => *i,
        other => other.to_dec().render(0).parse().unwrap_or(0),
    };
    if n <= 0 || matches!(sum, Sum::Empty) {
        return Ok(Value::Null);
    }
    let divisor = u64::try_from(n).map_err(|_| MergeError::Overflow("AVG row count".to_owned()))?;
    Ok(match col.class {
        TypeClass::Double => Value::Double(sum.to_f64() / n as f64),
        TypeClass::Float => Value::Float((sum.to_f64() / n as f64) as f32),
        TypeClass::Int { .. } => Sum::Dec(sum.to_dec().div_round(divisor, 0))
            .finish(col)?
            .unwrap_or(Value::Null),
        _ => {
            let scale = usize::from(col.decimals);
            Value::Decimal(sum.to_dec().div_round(divisor, scale).render(scale))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::plan::Compared;
    use super::*;

    fn run(kind: AggregateKind, columns: &[ColumnMeta], rows: &[Vec<Value>]) -> Vec<Value> {
        let agg = Aggregate {
            item: Compared {
                column: 0,
                weight: None,
            },
            kind,
        };
        let mut acc = Accumulator::new(kind);
        for r in rows {
            acc.add(r, &agg, columns).unwrap();
        }
        let mut out = vec![Value::Null; columns.len()];
        acc.finish(&agg, columns, &mut out).unwrap();
        out
    }

    #[test]
    fn sums_keep_the_column_type() {
        let dec = [ColumnMeta::new("s", TypeClass::Decimal).with_decimals(2)];
        let d = |s: &str| vec![Value::Decimal(s.into())];
        let out = run(
            AggregateKind::Sum,
            &dec,
            &[d("1.10"), vec![Value::Null], d("-0.15")],
        );
        assert_eq!(out[0], Value::Decimal("0.95".into()));
        let out = run(
            AggregateKind::Sum,
            &dec,
            &[vec![Value::Null], vec![Value::Null]],
        );
        assert_eq!(out[0], Value::Null);
        let dbl = [ColumnMeta::new("s", TypeClass::Double).with_decimals(31)];
        let out = run(
            AggregateKind::Sum,
            &dbl,
            &[vec![Value::Double(0.5)], vec![Value::Double(1.0)]],
        );
        assert_eq!(out[0], Value::Double(1.5));
        let int = [ColumnMeta::new("c", TypeClass::Int { width: 8 })];
        let out = run(
            AggregateKind::Count,
            &int,
            &[vec![Value::Int(2)], vec![Value::Int(1)]],
        );
        assert_eq!(out[0], Value::Int(3));
        assert_eq!(run(AggregateKind::Count, &int, &[])[0], Value::Int(0));
        let agg = Aggregate {
            item: Compared {
                column: 0,
                weight: None,
            },
            kind: AggregateKind::Count,
        };
        let mut acc = Accumulator::new(AggregateKind::Count);
        acc.add(&[Value::Int(i64::MAX)], &agg, &int).unwrap();
        acc.add(&[Value::Int(1)], &agg, &int).unwrap();
        let mut out = [Value::Null];
        assert!(matches!(
            acc.finish(&agg, &int, &mut out),
            Err(MergeError::Overflow(_))
        ));
    }

    #[test]
    fn extremes_and_averages() {
        let int = [ColumnMeta::new("m", TypeClass::Int { width: 4 })];
        let rows = [vec![Value::Int(3)], vec![Value::Null], vec![Value::Int(-7)]];
        assert_eq!(run(AggregateKind::Min, &int, &rows)[0], Value::Int(-7));
        assert_eq!(run(AggregateKind::Max, &int, &rows)[0], Value::Int(3));
        let cols = [
            ColumnMeta::new("avg", TypeClass::Decimal).with_decimals(4),
            ColumnMeta::new("sum", TypeClass::Decimal),
            ColumnMeta::new("cnt", TypeClass::Int { width: 8 }),
        ];
        let kind = AggregateKind::Avg { sum: 1, count: 2 };
        let r = |s: &str, c: i64| vec![Value::Null, Value::Decimal(s.into()), Value::Int(c)];
        assert_eq!(
            run(kind, &cols, &[r("1", 1), r("2", 1)])[0],
            Value::Decimal("1.5000".into())
        );
        assert_eq!(
            run(kind, &cols, &[r("2", 3), r("0", 0)])[0],
            Value::Decimal("0.6667".into())
        );
        let empty = vec![Value::Null, Value::Null, Value::Int(0)];
        assert_eq!(run(kind, &cols, &[empty.clone(), empty])[0], Value::Null);
    }
}
