//! DATE/DATETIME/TIMESTAMP/TIME values in their canonical text form
//! (`2024-01-31 23:59:59.500`, `-838:59:59`): the parts of a value, text
//! from parts, and TIME ordering. Row codecs convert their protocol's
//! binary forms through these.

use super::column::TypeClass;

/// The fields of a temporal value.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parts {
    pub negative: bool,
    pub year: u32,
    pub month: u32,
    pub day: u32,
    /// For TIME: total hours (may exceed 24).
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micros: u32,
}

/// A TIME's signed value in microseconds, for ordering.
pub fn time_micros(text: &[u8]) -> i64 {
    let p = parse(text, TypeClass::Time);
    let secs = i64::from(p.hour) * 3600 + i64::from(p.minute) * 60 + i64::from(p.second);
    let v = secs * 1_000_000 + i64::from(p.micros);
    if p.negative {
        -v
    } else {
        v
    }
}

/// The parts of canonical text (unparsable fields read as zero).
pub fn parse(text: &[u8], class: TypeClass) -> Parts {
    let mut p = Parts::default();
    let (negative, body) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    p.negative = negative && class == TypeClass::Time;
    let (main, frac) = match body.iter().position(|&b| b == b'.') {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, &[][..]),
    };
    let fields: Vec<u32> = main
        .split(|b| !b.is_ascii_digit())
        .filter(|f| !f.is_empty())
        .map(|f| {
            f.iter().fold(0u32, |n, d| {
                n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
            })
        })
        .collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or(0);
    if class == TypeClass::Time {
        (p.hour, p.minute, p.second) = (field(0), field(1), field(2));
    } else {
        (p.year, p.month, p.day) = (field(0), field(1), field(2));
        (p.hour, p.minute, p.second) = (field(3), field(4), field(5));
    }
    let mut micros = 0u32;
    for i in 0..6 {
        let digit = frac
            .get(i)
            .filter(|b| b.is_ascii_digit())
            .map_or(0, |b| b - b'0');
        micros = micros * 10 + u32::from(digit);
    }
    p.micros = micros;
    p
}

fn fraction(p: &Parts, decimals: u8) -> String {
    let digits = match decimals {
        1..=6 => usize::from(decimals),
        _ if p.micros != 0 => 6,
        _ => return String::new(),
    };
    let full = format!("{:06}", p.micros);
    format!(".{}", &full[..digits])
}

/// Canonical text of `p` as a value of `class`, with `decimals`
/// fractional digits (as the column declares).
pub fn format(p: &Parts, class: TypeClass, decimals: u8) -> Vec<u8> {
    if class == TypeClass::Time {
        format_time(p, decimals)
    } else {
        format_datetime(p, class, decimals)
    }
}

fn format_datetime(p: &Parts, class: TypeClass, decimals: u8) -> Vec<u8> {
    let date = format!("{:04}-{:02}-{:02}", p.year, p.month, p.day);
    if class == TypeClass::Date {
        return date.into_bytes();
    }
    format!(
        "{date} {:02}:{:02}:{:02}{}",
        p.hour,
        p.minute,
        p.second,
        fraction(p, decimals)
    )
    .into_bytes()
}

fn format_time(p: &Parts, decimals: u8) -> Vec<u8> {
    format!(
        "{}{:02}:{:02}:{:02}{}",
        if p.negative { "-" } else { "" },
        p.hour,
        p.minute,
        p.second,
        fraction(p, decimals)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_orders_negative_and_long_values() {
        assert!(time_micros(b"-01:00:00") < time_micros(b"00:00:00"));
        assert!(time_micros(b"-00:00:00.5") < time_micros(b"00:00:00"));
        assert!(time_micros(b"100:00:00") > time_micros(b"99:59:59.999999"));
        assert!(time_micros(b"-100:00:00") < time_micros(b"-99:00:00"));
    }
}
