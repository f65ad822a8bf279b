//! Minimal calendar arithmetic: parse MySQL DATE / DATETIME / TIMESTAMP text
//! and RFC 3339 UTC instants, without pulling in a date-time crate.

use thiserror::Error;

/// A calendar date-time as MySQL prints it (no time zone: MySQL DATETIME
/// values carry none). Field order makes the derived `Ord` chronological.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub micros: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DateTimeError {
    #[error("'{0}' is not a date (expected YYYY-MM-DD[ HH:MM:SS[.ffffff]])")]
    Malformed(String),
    #[error("'{0}' is not a valid calendar date or time")]
    OutOfRange(String),
    #[error("'{0}' is not an RFC 3339 UTC instant (expected YYYY-MM-DDTHH:MM:SSZ)")]
    NotUtc(String),
}

/// A year and month, the unit the `month` algorithm shards by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    pub year: u16,
    pub month: u8,
}

impl YearMonth {
    pub fn previous(self) -> YearMonth {
        if self.month == 1 {
            YearMonth {
                year: self.year.saturating_sub(1),
                month: 12,
            }
        } else {
            YearMonth {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// The `%Y%m` rendering used as a table suffix, e.g. `202403`.
    pub fn suffix(self) -> String {
        format!("{:04}{:02}", self.year, self.month)
    }

    /// Parses a `%Y%m` suffix such as `202403`.
    pub fn from_suffix(suffix: &str) -> Option<YearMonth> {
        if suffix.len() != 6 || !suffix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year = suffix[..4].parse().ok()?;
        let month = suffix[4..].parse().ok()?;
        (1..=12)
            .contains(&month)
            .then_some(YearMonth { year, month })
    }
}

impl DateTime {
    pub fn year_month(&self) -> YearMonth {
        YearMonth {
            year: self.year,
            month: self.month,
        }
    }

    /// True for the first instant of a month (`YYYY-MM-01 00:00:00`).
    pub fn is_month_start(&self) -> bool {
        self.day == 1 && self.hour == 0 && self.minute == 0 && self.second == 0 && self.micros == 0
    }

    /// Parses `YYYY-MM-DD`, optionally followed by ` HH:MM:SS` (or `T` as the
    /// separator) and up to six fractional digits — the text forms MySQL
    /// accepts and returns for DATE, DATETIME and TIMESTAMP.
    pub fn parse(text: &str) -> Result<DateTime, DateTimeError> {
        let malformed = || DateTimeError::Malformed(text.to_string());
        let (date, time) = match text.find([' ', 'T']) {
            Some(at) => (&text[..at], Some(&text[at + 1..])),
            None => (text, None),
        };
        let [year, month, day] = split_fixed(date, '-', [4, 2, 2]).ok_or_else(malformed)?;
        let (hour, minute, second, micros) = match time {
            None => (0, 0, 0, 0),
            Some(time) => {
                let (hms, fraction) = match time.split_once('.') {
                    Some((hms, fraction)) => (hms, Some(fraction)),
                    None => (time, None),
                };
                let [h, m, s] = split_fixed(hms, ':', [2, 2, 2]).ok_or_else(malformed)?;
                (h, m, s, parse_micros(fraction).ok_or_else(malformed)?)
            }
        };
        let parsed = DateTime {
            year: u16::try_from(year).map_err(|_| malformed())?,
            month: u8::try_from(month).map_err(|_| malformed())?,
            day: u8::try_from(day).map_err(|_| malformed())?,
            hour: u8::try_from(hour).map_err(|_| malformed())?,
            minute: u8::try_from(minute).map_err(|_| malformed())?,
            second: u8::try_from(second).map_err(|_| malformed())?,
            micros,
        };
        let valid = (1..=12).contains(&parsed.month)
            && parsed.day >= 1
            && parsed.day <= days_in_month(parsed.year, parsed.month)
            && parsed.hour < 24
            && parsed.minute < 60
            && parsed.second < 60;
        if valid {
            Ok(parsed)
        } else {
            Err(DateTimeError::OutOfRange(text.to_string()))
        }
    }

    /// Milliseconds since 1970-01-01T00:00:00Z, reading this value as UTC.
    pub fn unix_millis(&self) -> i64 {
        let days = days_from_civil(
            i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
        );
        let seconds = days * 86_400
            + i64::from(self.hour) * 3_600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        seconds * 1_000 + i64::from(self.micros / 1_000)
    }
}

/// Parses an RFC 3339 instant in UTC (`Z` or `+00:00` offset) to Unix
/// milliseconds. Other offsets are refused rather than converted: the
/// snowflake epoch is documented as UTC and a silent shift would change ids.
pub fn parse_utc_millis(text: &str) -> Result<i64, DateTimeError> {
    let not_utc = || DateTimeError::NotUtc(text.to_string());
    let local = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix('z'))
        .or_else(|| text.strip_suffix("+00:00"))
        .ok_or_else(not_utc)?;
    if !local.contains(['T', 't']) {
        return Err(not_utc());
    }
    let local = local.replace('t', "T");
    Ok(DateTime::parse(&local)?.unix_millis())
}

pub fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

fn is_leap_year(year: u16) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12; // March = 0, so leap days fall last
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Splits `text` on `separator` into exactly three all-digit fields of the
/// given widths.
fn split_fixed(text: &str, separator: char, widths: [usize; 3]) -> Option<[u32; 3]> {
    let mut fields = text.split(separator);
    let mut values = [0u32; 3];
    for (value, width) in values.iter_mut().zip(widths) {
        let field = fields.next()?;
        if field.len() != width || !field.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *value = field.parse().ok()?;
    }
    fields.next().is_none().then_some(values)
}

fn parse_micros(fraction: Option<&str>) -> Option<u32> {
    let Some(fraction) = fraction else {
        return Some(0);
    };
    if fraction.is_empty() || fraction.len() > 6 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: u32 = fraction.parse().ok()?;
    let scale = 10u32.pow(6 - u32::try_from(fraction.len()).ok()?);
    Some(digits * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_mysql_forms() {
        let date = DateTime::parse("2024-03-15").unwrap();
        assert_eq!(
            (date.year, date.month, date.day, date.hour),
            (2024, 3, 15, 0)
        );
        let datetime = DateTime::parse("2024-03-15 10:20:30").unwrap();
        assert_eq!(
            (datetime.hour, datetime.minute, datetime.second),
            (10, 20, 30)
        );
        let precise = DateTime::parse("2024-03-15 10:20:30.123456").unwrap();
        assert_eq!(precise.micros, 123_456);
        assert_eq!(
            DateTime::parse("2024-03-15T10:20:30.5").unwrap().micros,
            500_000
        );
    }

    #[test]
    fn refuses_impossible_or_malformed_dates() {
        assert!(DateTime::parse("2024-02-29").is_ok());
        assert!(matches!(
            DateTime::parse("2023-02-29"),
            Err(DateTimeError::OutOfRange(_))
        ));
        assert!(matches!(
            DateTime::parse("2024-13-01"),
            Err(DateTimeError::OutOfRange(_))
        ));
        assert!(matches!(
            DateTime::parse("2024-01-01 24:00:00"),
            Err(DateTimeError::OutOfRange(_))
        ));
        for bad in [
            "",
            "2024-3-15",
            "20240315",
            "2024-03-15 10:20",
            "2024-03-15 10:20:30.",
            "abc",
        ] {
            assert!(
                matches!(DateTime::parse(bad), Err(DateTimeError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn utc_instants_become_unix_millis() {
        assert_eq!(parse_utc_millis("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_utc_millis("2024-01-01T00:00:00Z"),
            Ok(1_704_067_200_000)
        );
        assert_eq!(
            parse_utc_millis("2024-01-01T00:00:00.250+00:00"),
            Ok(1_704_067_200_250)
        );
        assert!(matches!(
            parse_utc_millis("2024-01-01T00:00:00+08:00"),
            Err(DateTimeError::NotUtc(_))
        ));
        assert!(matches!(
            parse_utc_millis("2024-01-01 00:00:00Z"),
            Err(DateTimeError::NotUtc(_))
        ));
    }

    #[test]
    fn year_month_steps_and_suffixes() {
        let january = YearMonth {
            year: 2024,
            month: 1,
        };
        assert_eq!(
            january.previous(),
            YearMonth {
                year: 2023,
                month: 12
            }
        );
        assert_eq!(january.suffix(), "202401");
        assert_eq!(
            YearMonth::from_suffix("202412"),
            Some(YearMonth {
                year: 2024,
                month: 12
            })
        );
        assert_eq!(YearMonth::from_suffix("202413"), None);
        assert_eq!(YearMonth::from_suffix("2024"), None);
    }
}
