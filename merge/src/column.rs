//! What the merge needs to know of a result column, whatever protocol
//! brought it: how its values are represented, compared and aggregated.

/// How values of a column are represented and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeClass {
    /// An integer of `width` bytes (1, 2, 4 or 8).
    Int {
        width: usize,
    },
    Float,
    Double,
    Decimal,
    Date,
    DateTime,
    Time,
    /// Strings, blobs, enum, set, bit, json, geometry, NULL-typed.
    Bytes,
}

/// One result column as the merge sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMeta {
    /// Its name in the result (for error messages).
    pub name: String,
    pub class: TypeClass,
    /// An integer column without a sign: sums stay unsigned.
    pub unsigned: bool,
    /// Digits after the point of DECIMAL sums and averages.
    pub decimals: u8,
    /// Text whose order is its collation's, not its bytes': merges order
    /// it by a sort-key column when the plan has one.
    pub collated: bool,
}

impl ColumnMeta {
    /// A signed column of `class` without decimals.
    pub fn new(name: &str, class: TypeClass) -> Self {
        ColumnMeta {
            name: name.to_owned(),
            class,
            unsigned: false,
            decimals: 0,
            collated: false,
        }
    }

    pub fn with_decimals(mut self, decimals: u8) -> Self {
        self.decimals = decimals;
        self
    }
}
