//! The `month` algorithm: the `%Y%m` suffix of a DATE / DATETIME /
//! TIMESTAMP value picks the target whose name ends with it
//! (`message_records_202403`). Ranges reach exactly the months they cover.

use super::{AlgorithmError, ShardKey, ShardingAlgorithm, Targets};
use crate::datetime::{DateTime, DateTimeError, YearMonth};
use std::collections::BTreeMap;
use std::ops::Bound;
use thiserror::Error;

#[derive(Debug, Clone)]
pub struct Month {
    /// Declared months and the position of their target.
    targets_by_month: BTreeMap<YearMonth, usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MonthTargetError {
    #[error("'{0}' does not end with a YYYYMM month suffix")]
    NoMonthSuffix(String),
    #[error("'{first}' and '{second}' are both for month {month}")]
    DuplicateMonth {
        first: String,
        second: String,
        month: String,
    },
}

impl Month {
    /// Builds the algorithm over target names that each end with `YYYYMM`.
    pub fn new(targets: &[String]) -> Result<Self, MonthTargetError> {
        let mut targets_by_month = BTreeMap::new();
        for (position, name) in targets.iter().enumerate() {
            let month =
                month_suffix(name).ok_or_else(|| MonthTargetError::NoMonthSuffix(name.clone()))?;
            if let Some(previous) = targets_by_month.insert(month, position) {
                return Err(MonthTargetError::DuplicateMonth {
                    first: targets[previous].clone(),
                    second: name.clone(),
                    month: month.suffix(),
                });
            }
        }
        Ok(Month { targets_by_month })
    }
}

impl ShardingAlgorithm for Month {
    fn target(&self, key: ShardKey<'_>) -> Result<usize, AlgorithmError> {
        let month = parse_date(key)?.year_month();
        self.targets_by_month
            .get(&month)
            .copied()
            .ok_or_else(|| AlgorithmError::NoTarget(month.suffix()))
    }

    fn targets_in_range(
        &self,
        lower: Bound<ShardKey<'_>>,
        upper: Bound<ShardKey<'_>>,
    ) -> Result<Targets, AlgorithmError> {
        let first = match lower {
            Bound::Included(key) | Bound::Excluded(key) => Some(parse_date(key)?.year_month()),
            Bound::Unbounded => None,
        };
        let last = match upper {
            Bound::Included(key) => Some(parse_date(key)?.year_month()),
            // `< '2024-03-01'` (or `< '2024-03-01 00:00:00'`) stops before March.
            Bound::Excluded(key) => {
                let date = parse_date(key)?;
                Some(if date.is_month_start() {
                    date.year_month().previous()
                } else {
                    date.year_month()
                })
            }
            Bound::Unbounded => None,
        };
        let covered = self
            .targets_by_month
            .iter()
            .filter(|(month, _)| {
                first.is_none_or(|first| **month >= first)
                    && last.is_none_or(|last| **month <= last)
            })
            .map(|(_, position)| *position)
            .collect();
        Ok(Targets::Only(covered))
    }
}

fn parse_date(key: ShardKey<'_>) -> Result<DateTime, AlgorithmError> {
    match key {
        ShardKey::Text(text) => Ok(DateTime::parse(text)?),
        // Dates reach us as text; a bare number is not taken for a date.
        ShardKey::Int(value) => Err(DateTimeError::Malformed(value.to_string()).into()),
    }
}

/// The month of a name ending in exactly six digits `YYYYMM`.
fn month_suffix(name: &str) -> Option<YearMonth> {
    let digits = name.bytes().rev().take_while(u8::is_ascii_digit).count();
    if digits != 6 {
        return None;
    }
    YearMonth::from_suffix(&name[name.len() - 6..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn year_2024() -> Month {
        let names: Vec<String> = (1..=12)
            .map(|month| format!("message_records_2024{month:02}"))
            .collect();
        Month::new(&names).unwrap()
    }

    fn covered(lower: Bound<ShardKey<'_>>, upper: Bound<ShardKey<'_>>) -> Vec<usize> {
        match year_2024().targets_in_range(lower, upper).unwrap() {
            Targets::Only(positions) => positions.into_iter().collect(),
            Targets::All => panic!("month ranges are always precise"),
        }
    }

    #[test]
    fn a_date_picks_its_month() {
        let month = year_2024();
        assert_eq!(month.target(ShardKey::Text("2024-01-01")), Ok(0));
        assert_eq!(month.target(ShardKey::Text("2024-02-29 23:59:59")), Ok(1));
        assert_eq!(
            month.target(ShardKey::Text("2024-12-31 23:59:59.999999")),
            Ok(11)
        );
    }

    #[test]
    fn undeclared_months_and_non_dates_are_errors() {
        let month = year_2024();
        assert_eq!(
            month.target(ShardKey::Text("2023-12-31")),
            Err(AlgorithmError::NoTarget("202312".into()))
        );
        assert_eq!(
            month.target(ShardKey::Text("2025-01-01")),
            Err(AlgorithmError::NoTarget("202501".into()))
        );
        assert!(matches!(
            month.target(ShardKey::Text("yesterday")),
            Err(AlgorithmError::NotDate(_))
        ));
        assert!(matches!(
            month.target(ShardKey::Int(20240315)),
            Err(AlgorithmError::NotDate(_))
        ));
    }

    #[test]
    fn ranges_cover_exactly_their_months() {
        let between = covered(
            Bound::Included(ShardKey::Text("2024-02-15")),
            Bound::Included(ShardKey::Text("2024-04-01")),
        );
        assert_eq!(between, [1, 2, 3]);
        let before_march = covered(
            Bound::Unbounded,
            Bound::Excluded(ShardKey::Text("2024-03-01")),
        );
        assert_eq!(before_march, [0, 1]);
        let up_to_march_first = covered(
            Bound::Unbounded,
            Bound::Included(ShardKey::Text("2024-03-01")),
        );
        assert_eq!(up_to_march_first, [0, 1, 2]);
        let from_november = covered(
            Bound::Excluded(ShardKey::Text("2024-11-30")),
            Bound::Unbounded,
        );
        assert_eq!(from_november, [10, 11]);
    }

    #[test]
    fn ranges_are_clipped_to_declared_months() {
        let wide = covered(
            Bound::Included(ShardKey::Text("2020-01-01")),
            Bound::Included(ShardKey::Text("2030-01-01")),
        );
        assert_eq!(wide.len(), 12);
        let outside = covered(
            Bound::Included(ShardKey::Text("2025-01-01")),
            Bound::Unbounded,
        );
        assert!(outside.is_empty());
        let reversed = covered(
            Bound::Included(ShardKey::Text("2024-05-01")),
            Bound::Included(ShardKey::Text("2024-03-01")),
        );
        assert!(reversed.is_empty());
    }

    #[test]
    fn targets_must_carry_distinct_month_suffixes() {
        let no_suffix = Month::new(&["t_1".to_string()]).unwrap_err();
        assert_eq!(
            no_suffix.to_string(),
            "'t_1' does not end with a YYYYMM month suffix"
        );
        assert!(matches!(
            Month::new(&["t_2024013".to_string()]),
            Err(MonthTargetError::NoMonthSuffix(_))
        ));
        let twice = Month::new(&["a_202401".to_string(), "b_202401".to_string()]).unwrap_err();
        assert_eq!(
            twice.to_string(),
            "'a_202401' and 'b_202401' are both for month 202401"
        );
    }
}
