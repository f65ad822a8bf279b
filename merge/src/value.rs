//! One decoded column value, as every protocol's row codec produces it.

/// One decoded column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    UInt(u64),
    Double(f64),
    Float(f32),
    /// Canonical DECIMAL text.
    Decimal(String),
    /// Strings, blobs, and DATE/TIME types in canonical text form
    /// (`2024-01-31 23:59:59.5`, `-838:59:59`; see `temporal`).
    Bytes(Vec<u8>),
}

/// A numeric value as a double (mixed representations compare this way,
/// and FLOAT/DOUBLE columns encode from it).
pub fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::UInt(u) => *u as f64,
        Value::Double(d) => *d,
        Value::Float(f) => f64::from(*f),
        Value::Decimal(s) => s.parse().unwrap_or(0.0),
        Value::Null | Value::Bytes(_) => 0.0,
    }
}
