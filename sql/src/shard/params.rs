//! Values of prepared-statement parameters, as a protocol's execute
//! message decodes them: for routing (as sharding values) and for running
//! a statement on several nodes as text (as SQL literals).

use shardgate_rules::ShardValue;

use crate::text::ClientCharset;

/// One bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Null,
    Int(i64),
    UInt(u64),
    Double(f64),
    /// DECIMAL as text.
    Decimal(String),
    /// A string in the client's character set (a blob: `binary`).
    Text {
        bytes: Vec<u8>,
        charset: ClientCharset,
    },
    /// DATE / DATETIME / TIMESTAMP / TIME in MySQL text form.
    Temporal(String),
}

impl ParamValue {
    /// The value as a sharding value.
    pub fn shard_value(&self) -> ShardValue {
        match self {
            ParamValue::Null => ShardValue::Null,
            ParamValue::Int(i) => ShardValue::Int(*i),
            ParamValue::UInt(u) => match i64::try_from(*u) {
                Ok(i) => ShardValue::Int(i),
                Err(_) => ShardValue::Text(u.to_string()),
            },
            ParamValue::Double(d) => ShardValue::Text(d.to_string()),
            ParamValue::Decimal(s) | ParamValue::Temporal(s) => match s.parse::<i64>() {
                Ok(i) => ShardValue::Int(i),
                Err(_) => ShardValue::Text(s.clone()),
            },
            ParamValue::Text { bytes, charset } => {
                ShardValue::Text(charset.decode(bytes).into_owned())
            }
        }
    }

    /// The value as an SQL literal. Strings become hex literals read in
    /// their character set (`CONVERT(X'E9' USING latin1)`: as the
    /// parameter, a string of the client's character set that compares by
    /// its collation), so no escaping rule of any sql_mode applies; blobs
    /// plain hex literals (binary strings).
    pub fn sql_literal(&self) -> String {
        match self {
            ParamValue::Null => "NULL".into(),
            ParamValue::Int(i) => i.to_string(),
            ParamValue::UInt(u) => u.to_string(),
            ParamValue::Double(d) => format!("{d:e}"),
            ParamValue::Decimal(s) => s.clone(),
            ParamValue::Temporal(s) => format!("'{s}'"),
            ParamValue::Text { bytes, charset }
                if charset.name() != "binary" && bytes.is_empty() =>
            {
                "''".into()
            }
            ParamValue::Text { bytes, charset } => {
                let mut hex = String::with_capacity(bytes.len() * 2 + 3);
                hex.push_str("X'");
                for byte in bytes {
                    hex.push_str(&format!("{byte:02X}"));
                }
                hex.push('\'');
                match charset.name() {
                    "binary" => hex,
                    name => format!("CONVERT({hex} USING {name})"),
                }
            }
        }
    }
}
