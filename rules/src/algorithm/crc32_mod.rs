//! The `crc32_mod` algorithm: CRC-32 (IEEE, the one MySQL's `CRC32()`
//! computes) of the value's UTF-8 text, mod N. Integers use value mod N, so
//! numeric keys stay cheap and predictable.

use super::{euclid_index, AlgorithmError, ShardKey, ShardingAlgorithm, Targets};
use std::num::NonZeroU32;
use std::ops::Bound;

#[derive(Debug, Clone)]
pub struct Crc32Modulo {
    count: NonZeroU32,
}

impl Crc32Modulo {
    pub fn new(count: NonZeroU32) -> Self {
        Crc32Modulo { count }
    }
}

impl ShardingAlgorithm for Crc32Modulo {
    fn target(&self, key: ShardKey<'_>) -> Result<usize, AlgorithmError> {
        Ok(match key {
            ShardKey::Int(value) => euclid_index(value, self.count.get()),
            ShardKey::Text(text) => euclid_index(
                i64::from(crc32fast::hash(text.as_bytes())),
                self.count.get(),
            ),
        })
    }

    fn targets_in_range(
        &self,
        _: Bound<ShardKey<'_>>,
        _: Bound<ShardKey<'_>>,
    ) -> Result<Targets, AlgorithmError> {
        Ok(Targets::All)
    }

    fn places_by_column_type(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_mysql_crc32() {
        // MySQL: SELECT CRC32('MySQL') = 3259397556 (the manual's example), CRC32('acme') = 96778814.
        assert_eq!(crc32fast::hash(b"acme"), 96_778_814);
        assert_eq!(crc32fast::hash(b"MySQL"), 3_259_397_556);
        let four = Crc32Modulo::new(NonZeroU32::new(4).unwrap());
        assert_eq!(four.target(ShardKey::Text("acme")), Ok(2));
        assert_eq!(four.target(ShardKey::Text("MySQL")), Ok(0));
    }

    #[test]
    fn integers_use_value_mod_n() {
        let four = Crc32Modulo::new(NonZeroU32::new(4).unwrap());
        assert_eq!(four.target(ShardKey::Int(7)), Ok(3));
        assert_eq!(four.target(ShardKey::Int(-7)), Ok(1));
    }
}
