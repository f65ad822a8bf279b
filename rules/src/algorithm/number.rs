//! A string (or a number literal that is not a plain integer, like `7.0`
//! or `1e3`) as MariaDB reads it as a number: leading white space, a sign,
//! digits, a fraction, an exponent; whatever follows is ignored (with a
//! warning), and no digits at all read as 0. An integer column compares
//! with that number exactly, and stores it rounded half away from zero.

/// A string read as MariaDB's number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    /// The digits of the integer part, without leading zeros.
    integer: String,
    /// The digits after the point, without trailing zeros.
    fraction: String,
}

fn parse(text: &str) -> Decimal {
    let text = text.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let (negative, text) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let int_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let mut integer = text[..int_end].to_owned();
    let mut rest = &text[int_end..];
    let mut fraction = String::new();
    if let Some(after) = rest.strip_prefix('.') {
        let end = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        fraction = after[..end].to_owned();
        rest = &after[end..];
    }
    let has_digits = !integer.is_empty() || !fraction.is_empty();
    if let (Some(exp), true) = (rest.strip_prefix(['e', 'E']), has_digits) {
        let (sign, digits) = match exp.as_bytes().first() {
            Some(b'-') => (-1i64, &exp[1..]),
            Some(b'+') => (1, &exp[1..]),
            _ => (1, exp),
        };
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        // Exponents past a few hundred make every value 0 or out of range.
        let exponent = digits[..end].parse::<i64>().unwrap_or(i64::MAX).min(400) * sign;
        if exponent > 0 {
            let moved = (exponent as usize).min(fraction.len());
            integer.push_str(&fraction[..moved]);
            integer.extend(std::iter::repeat_n('0', exponent as usize - moved));
            fraction.drain(..moved);
        } else if exponent < 0 {
            let moved = (exponent.unsigned_abs() as usize).min(integer.len());
            let split = integer.len() - moved;
            let mut shifted: String =
                std::iter::repeat_n('0', exponent.unsigned_abs() as usize - moved).collect();
            shifted.insert_str(0, &integer[split..]);
            fraction.insert_str(0, &shifted);
            integer.truncate(split);
        }
    }
    let integer = integer.trim_start_matches('0').to_owned();
    let fraction = fraction.trim_end_matches('0').to_owned();
    Decimal {
        negative,
        integer,
        fraction,
    }
}

impl Decimal {
    fn to_i64(&self, round_up: bool) -> Option<i64> {
        let magnitude: i128 = if self.integer.is_empty() {
            0
        } else if self.integer.len() > 20 {
            return None;
        } else {
            self.integer.parse().ok()?
        };
        let magnitude = magnitude + i128::from(round_up);
        let value = if self.negative { -magnitude } else { magnitude };
        i64::try_from(value).ok()
    }
}

/// The integer an integer column compares equal with `text`: None when the
/// number has a fraction or lies beyond BIGINT (no row's value equals it).
pub fn compared_integer(text: &str) -> Option<i64> {
    let d = parse(text);
    if d.fraction.is_empty() {
        d.to_i64(false)
    } else {
        None
    }
}

/// The integer an integer column stores for `text`: rounded half away
/// from zero, clamped to BIGINT's range as MariaDB does outside strict mode
/// (in strict mode it refuses the row instead, and where it goes does not
/// matter).
pub fn stored_integer(text: &str) -> i64 {
    let d = parse(text);
    let round_up = d.fraction.as_bytes().first().is_some_and(|&b| b >= b'5');
    d.to_i64(round_up)
        .unwrap_or(if d.negative { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_as_mariadb_reads_strings() {
        for (text, expected) in [
            ("7", Some(7)),
            ("  +7", Some(7)),
            ("\t7", Some(7)),
            (" 7 ", Some(7)),
            ("7.0", Some(7)),
            ("7.", Some(7)),
            ("-7", Some(-7)),
            ("-0", Some(0)),
            ("1e3", Some(1000)),
            ("8.0e0", Some(8)),
            ("7abc", Some(7)),
            ("abc", Some(0)),
            ("", Some(0)),
            ("0x10", Some(0)),
            ("7.9", None),
            ("7.5", None),
            ("9007199254740993", Some(9_007_199_254_740_993)),
            ("9007199254740993.0", Some(9_007_199_254_740_993)),
            ("18446744073709551615", None),
            ("99999999999999999999", None),
            ("1.5e1", Some(15)),
            ("15e-1", None),
            ("1500e-2", Some(15)),
            ("1e400", None),
        ] {
            assert_eq!(compared_integer(text), expected, "{text:?}");
        }
    }

    #[test]
    fn stores_rounded_as_mariadb_does() {
        for (text, expected) in [
            ("7.5", 8),
            ("7.4", 7),
            ("-7.5", -8),
            ("9007199254740993.6", 9_007_199_254_740_994),
            ("1e3", 1000),
            ("7abc", 7),
            ("abc", 0),
            ("99999999999999999999", i64::MAX),
            ("-99999999999999999999", i64::MIN),
        ] {
            assert_eq!(stored_integer(text), expected, "{text:?}");
        }
    }
}
