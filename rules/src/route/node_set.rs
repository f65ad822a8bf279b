//! A set of node positions (into a sharded table's node list), kept as a
//! sorted vector: a routed statement mostly reaches one node or all of
//! them, and a vector costs one allocation where a tree set costs several.

/// Node positions, ascending, each once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NodeSet(Vec<usize>);

impl NodeSet {
    /// Positions `0..count`.
    pub(crate) fn all(count: usize) -> Self {
        NodeSet((0..count).collect())
    }

    /// The positions an ascending iterator yields (each once).
    pub(crate) fn from_ascending(positions: impl Iterator<Item = usize>) -> Self {
        let set = NodeSet(positions.collect());
        debug_assert!(set.0.windows(2).all(|w| w[0] < w[1]));
        set
    }

    /// Adds the positions of `other`. Sets are merged one by one as they
    /// are routed: an `IN` list of 200,000 values holds one set, not one
    /// per value.
    pub(crate) fn add(&mut self, other: NodeSet) {
        if other.0.iter().all(|p| self.contains(*p)) {
            return;
        }
        self.0.extend(other.0);
        self.0.sort_unstable();
        self.0.dedup();
    }

    /// Keeps the positions that are also in `other`.
    pub(crate) fn intersect(&mut self, other: &NodeSet) {
        self.0.retain(|p| other.contains(*p));
    }

    pub(crate) fn contains(&self, position: usize) -> bool {
        self.0.binary_search(&position).is_ok()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn first(&self) -> Option<usize> {
        self.0.first().copied()
    }

    /// The positions, ascending.
    pub(crate) fn into_vec(self) -> Vec<usize> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_and_intersection_stay_sorted_and_distinct() {
        let a = NodeSet::from_ascending([1, 4, 7].into_iter());
        let b = NodeSet::from_ascending([0, 4, 9].into_iter());
        let mut u = NodeSet::default();
        for set in [a.clone(), b.clone(), NodeSet::default(), a.clone()] {
            u.add(set);
        }
        assert_eq!(u.clone().into_vec(), [0, 1, 4, 7, 9]);
        u.intersect(&NodeSet::all(5));
        assert_eq!(u.clone().into_vec(), [0, 1, 4]);
        u.intersect(&b);
        assert_eq!(u.into_vec(), [0, 4]);
        assert!(a.contains(7) && !a.contains(5));
        assert_eq!(a.first(), Some(1));
        assert!(NodeSet::default().is_empty());
    }
}
