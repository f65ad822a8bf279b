//! Text-protocol rendering of FLOAT and DOUBLE values the way MariaDB prints
//! them: fixed decimals when the column declares them, otherwise the
//! shortest digits that read back to the same value, in plain notation for
//! moderate exponents and `1.5e20` style beyond.

/// Renders a DOUBLE.
pub(crate) fn format_f64(v: f64, fixed: Option<usize>) -> String {
    match fixed {
        Some(decimals) => format!("{v:.decimals$}"),
        None => general(format!("{v:e}"), format!("{v}")),
    }
}

/// Renders a FLOAT (shortest digits of the f32 itself).
pub(crate) fn format_f32(v: f32, fixed: Option<usize>) -> String {
    match fixed {
        Some(decimals) => format!("{v:.decimals$}"),
        None => general(format!("{v:e}"), format!("{v}")),
    }
}

/// Chooses between the exponent form (`1.5e20`, Rust's shortest digits)
/// and the plain form: MariaDB's `my_gcvt` switches to exponents when the
/// decimal point lies more than 15 digits away.
fn general(exp_form: String, plain: String) -> String {
    let exponent: i32 = exp_form
        .rsplit_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    if !(-15..=14).contains(&exponent) {
        exp_form
    } else {
        plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_mariadb() {
        assert_eq!(format_f64(0.1 + 0.2, None), "0.30000000000000004");
        assert_eq!(format_f64(1e14, None), "100000000000000");
        assert_eq!(format_f64(1e15, None), "1e15");
        assert_eq!(format_f64(-1.5e300, None), "-1.5e300");
        assert_eq!(format_f64(1e-20, None), "1e-20");
        assert_eq!(format_f64(2.5, Some(2)), "2.50");
        assert_eq!(format_f32(2.71, None), "2.71");
        assert_eq!(format_f32(1.5, Some(3)), "1.500");
    }
}
