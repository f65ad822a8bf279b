//! Values the proxy reads back from a data source (`SELECT @@session.x`
//! after `SET x = expression`) as literals the session's settings replay.

/// A value read back from `SELECT @@session.x` as a literal to replay.
pub fn literal_from_read_back(value: Option<&str>) -> String {
    match value {
        None => "NULL".to_owned(),
        Some(v) if !v.is_empty() && v.parse::<f64>().is_ok() && !v.contains(['e', 'E']) => {
            v.to_owned()
        }
        Some(v) => format!("'{}'", v.replace('\'', "''")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_back_literals() {
        assert_eq!(literal_from_read_back(Some("0")), "0");
        assert_eq!(literal_from_read_back(Some("")), "''");
        assert_eq!(literal_from_read_back(Some("ANSI,IT'S")), "'ANSI,IT''S'");
        assert_eq!(literal_from_read_back(None), "NULL");
    }
}
