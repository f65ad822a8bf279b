//! Exact decimal arithmetic on MySQL's canonical DECIMAL text, enough for
//! merging aggregates: parse, compare, add, divide by a row count with
//! rounding half away from zero, render with a fixed scale.
//!
//! Digits are kept as a plain decimal digit vector: sums of per-node
//! partial results are few and short (DECIMAL has at most 65 digits), so a
//! few dozen lines beat a bignum dependency and never lose precision.

use std::cmp::Ordering;

use super::error::MergeError;

/// An exact decimal: `(-1)^neg × digits × 10^-scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dec {
    neg: bool,
    /// Most significant first, without leading zeros; empty means zero.
    digits: Vec<u8>,
    scale: usize,
}

impl Dec {
    pub(crate) fn parse(text: &str) -> Result<Dec, MergeError> {
        let bad = || MergeError::Malformed(format!("not a decimal number: {text:?}"));
        let (neg, body) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad());
        }
        let mut digits = Vec::with_capacity(int_part.len() + frac_part.len());
        for b in int_part.bytes().chain(frac_part.bytes()) {
            if !b.is_ascii_digit() {
                return Err(bad());
            }
            digits.push(b - b'0');
        }
        Ok(Dec::new(neg, digits, frac_part.len()))
    }

    pub(crate) fn from_i128(v: i128) -> Dec {
        let digits = v
            .unsigned_abs()
            .to_string()
            .bytes()
            .map(|b| b - b'0')
            .collect();
        Dec::new(v < 0, digits, 0)
    }

    fn new(neg: bool, mut digits: Vec<u8>, scale: usize) -> Dec {
        let leading = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..leading);
        let neg = neg && !digits.is_empty();
        Dec { neg, digits, scale }
    }

    /// Digits of the magnitude at `scale` (which must be >= self.scale).
    fn digits_at(&self, scale: usize) -> Vec<u8> {
        let mut d = self.digits.clone();
        d.resize(d.len() + (scale - self.scale), 0);
        d
    }

    fn cmp_magnitude(a: &[u8], b: &[u8]) -> Ordering {
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }

    pub(crate) fn add(&self, other: &Dec) -> Dec {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.digits_at(scale), other.digits_at(scale));
        if self.neg == other.neg {
            return Dec::new(self.neg, add_magnitudes(&a, &b), scale);
        }
        match Dec::cmp_magnitude(&a, &b) {
            Ordering::Less => Dec::new(other.neg, sub_magnitudes(&b, &a), scale),
            _ => Dec::new(self.neg, sub_magnitudes(&a, &b), scale),
        }
    }

    /// `self / divisor` rounded half away from zero to `scale` digits.
    pub(crate) fn div_round(&self, divisor: u64, scale: usize) -> Dec {
        // Truncated quotient with one extra digit: floor(m·10^(scale+1-s)/d),
        // which equals floor(floor(m/10^k)/d) when digits must be dropped.
        let wanted = scale + 1;
        let mut num = self.digits.clone();
        if wanted >= self.scale {
            num.resize(num.len() + (wanted - self.scale), 0);
        } else {
            num.truncate(num.len().saturating_sub(self.scale - wanted));
        }
        let d = u128::from(divisor.max(1));
        let mut rem: u128 = 0;
        let mut quotient = Vec::with_capacity(num.len());
        for digit in num {
            let cur = rem * 10 + u128::from(digit);
            quotient.push((cur / d) as u8);
            rem = cur % d;
        }
        let last = quotient.pop().unwrap_or(0);
        let mut q = Dec::new(self.neg, quotient, scale);
        if last >= 5 {
            q.digits = add_magnitudes(&q.digits, &[1]);
            q.neg = self.neg;
        }
        q
    }

    /// Canonical text with exactly `scale` digits after the point, rounding
    /// half away from zero when digits are dropped.
    pub(crate) fn render(&self, scale: usize) -> String {
        let mut digits = if scale >= self.scale {
            self.digits_at(scale)
        } else {
            let keep = self.digits.len().saturating_sub(self.scale - scale);
            let round_up = self.digits.len() > keep && self.digits[keep] >= 5;
            let kept = self.digits[..keep].to_vec();
            if round_up {
                add_magnitudes(&kept, &[1])
            } else {
                kept
            }
        };
        let leading = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..leading);
        if digits.len() <= scale {
            let mut padded = vec![0; scale + 1 - digits.len()];
            padded.extend_from_slice(&digits);
            digits = padded;
        }
        let neg = self.neg && digits.iter().any(|&d| d != 0);
        let mut out = String::with_capacity(digits.len() + 2);
        if neg {
            out.push('-');
        }
        let int_len = digits.len() - scale;
        for (i, d) in digits.iter().enumerate() {
            if i == int_len {
                out.push('.');
            }
            out.push(char::from(b'0' + d));
        }
        out
    }

    pub(crate) fn to_f64(&self) -> f64 {
        self.render(self.scale).parse().unwrap_or(0.0)
    }
}

impl Ord for Dec {
    fn cmp(&self, other: &Dec) -> Ordering {
        match (self.neg, other.neg) {
            (false, true) => return Ordering::Greater,
            (true, false) => return Ordering::Less,
            _ => {}
        }
        let scale = self.scale.max(other.scale);
        let mag = Dec::cmp_magnitude(&self.digits_at(scale), &other.digits_at(scale));
        if self.neg {
            mag.reverse()
        } else {
            mag
        }
    }
}

impl PartialOrd for Dec {
    fn partial_cmp(&self, other: &Dec) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn add_magnitudes(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
    let mut carry = 0;
    let (mut i, mut j) = (a.len(), b.len());
    while i > 0 || j > 0 || carry > 0 {
        let mut s = carry;
        if i > 0 {
            i -= 1;
            s += a[i];
        }
        if j > 0 {
            j -= 1;
            s += b[j];
        }
        out.push(s % 10);
        carry = s / 10;
    }
    out.reverse();
    out
}

/// `a - b` for magnitudes with `a >= b`.
fn sub_magnitudes(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len());
    let mut borrow = 0;
    let mut j = b.len();
    for i in (0..a.len()).rev() {
        let sub = borrow
            + if j > 0 {
                j -= 1;
                b[j]
            } else {
                0
            };
        if a[i] >= sub {
            out.push(a[i] - sub);
            borrow = 0;
        } else {
            out.push(a[i] + 10 - sub);
            borrow = 1;
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Dec {
        Dec::parse(s).unwrap()
    }

    #[test]
    fn adds_with_signs_and_scales() {
        assert_eq!(d("1.25").add(&d("2.5")).render(2), "3.75");
        assert_eq!(d("-1.25").add(&d("2.5")).render(2), "1.25");
        assert_eq!(d("1.25").add(&d("-2.5")).render(2), "-1.25");
        assert_eq!(d("-0.5").add(&d("0.5")).render(1), "0.0");
        assert_eq!(d("999.99").add(&d("0.01")).render(2), "1000.00");
        let big = "99999999999999999999999999999999999999999999999999999999999999999";
        assert_eq!(
            d(big).add(&d("1")).render(0),
            "100000000000000000000000000000000000000000000000000000000000000000"
        );
    }

    #[test]
    fn divides_with_half_away_rounding() {
        assert_eq!(d("3").div_round(2, 4).render(4), "1.5000");
        assert_eq!(d("2").div_round(3, 4).render(4), "0.6667");
        assert_eq!(d("-2").div_round(3, 4).render(4), "-0.6667");
        assert_eq!(d("1").div_round(8, 2).render(2), "0.13");
        assert_eq!(d("-1").div_round(8, 2).render(2), "-0.13");
        assert_eq!(d("0.0001").div_round(3, 2).render(2), "0.00");
        assert_eq!(d("12.345678").div_round(1, 2).render(2), "12.35");
        assert_eq!(d("10").div_round(4, 0).render(0), "3");
    }

    #[test]
    fn renders_and_compares() {
        assert_eq!(d("1.005").render(2), "1.01");
        assert_eq!(d("-.5").render(0), "-1");
        assert_eq!(d("-0.004").render(2), "0.00");
        assert_eq!(d("007").render(1), "7.0");
        assert_eq!(Dec::from_i128(-42).render(0), "-42");
        assert!(d("-10") < d("-9.99"));
        assert!(d("10.0") > d("9.999"));
        assert_eq!(d("1.50").cmp(&d("1.5")), Ordering::Equal);
        assert!(Dec::parse("1e5").is_err());
        assert!(Dec::parse("-").is_err());
    }
}
