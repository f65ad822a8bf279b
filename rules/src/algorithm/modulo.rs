//! The `mod` algorithm: integer value mod N picks the N-th target.

use super::{euclid_index, AlgorithmError, ShardKey, ShardingAlgorithm, Targets};
use std::num::NonZeroU32;
use std::ops::Bound;

#[derive(Debug, Clone)]
pub struct Modulo {
    count: NonZeroU32,
}

impl Modulo {
    pub fn new(count: NonZeroU32) -> Self {
        Modulo { count }
    }
}

impl ShardingAlgorithm for Modulo {
    fn target(&self, key: ShardKey<'_>) -> Result<usize, AlgorithmError> {
        Ok(euclid_index(key.integer()?, self.count.get()))
    }

    fn targets_in_range(
        &self,
        _: Bound<ShardKey<'_>>,
        _: Bound<ShardKey<'_>>,
    ) -> Result<Targets, AlgorithmError> {
        Ok(Targets::All)
    }

    fn takes_integers(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn four() -> Modulo {
        Modulo::new(NonZeroU32::new(4).unwrap())
    }

    #[test]
    fn integers_and_integer_text_take_the_remainder() {
        assert_eq!(four().target(ShardKey::Int(0)), Ok(0));
        assert_eq!(four().target(ShardKey::Int(5)), Ok(1));
        assert_eq!(four().target(ShardKey::Int(67)), Ok(3));
        assert_eq!(four().target(ShardKey::Text("67")), Ok(3));
    }

    #[test]
    fn negative_values_use_the_euclidean_remainder() {
        assert_eq!(four().target(ShardKey::Int(-1)), Ok(3));
        assert_eq!(four().target(ShardKey::Int(i64::MIN)), Ok(0));
    }

    #[test]
    fn non_integers_are_refused_and_ranges_reach_everything() {
        assert_eq!(
            four().target(ShardKey::Text("7.5")),
            Err(AlgorithmError::NotInteger)
        );
        assert_eq!(four().target(ShardKey::Text("7abc")), Ok(3));
        let range = four().targets_in_range(Bound::Included(ShardKey::Int(1)), Bound::Unbounded);
        assert_eq!(range, Ok(Targets::All));
    }
}
