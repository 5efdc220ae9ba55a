//! The coinbase's merkle branch: the sibling hashes on the path from the coinbase (always the first
//! transaction) to the merkle root. A job sends it once; every share folds its own coinbase txid up it.

use crate::hash::merkle_parent;

/// The branch for the coinbase, given the txids (internal byte order) of every other transaction in
/// block order.
pub fn coinbase_branch(txids: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut branch = Vec::new();
    // Level 0 without its first element (the coinbase, unknown here).
    let mut level: Vec<[u8; 32]> = txids.to_vec();
    while !level.is_empty() {
        branch.push(level[0]);
        // The coinbase's path pairs with level[0]; the rest pair among themselves.
        let rest = &level[1..];
        let mut next = Vec::with_capacity(rest.len().div_ceil(2));
        for pair in rest.chunks(2) {
            let right = pair.get(1).unwrap_or(&pair[0]);
            next.push(merkle_parent(&pair[0], right));
        }
        level = next;
    }
    branch
}

/// Folds a coinbase txid up the branch to the merkle root.
#[inline]
pub fn fold(coinbase_txid: [u8; 32], branch: &[[u8; 32]]) -> [u8; 32] {
    branch
        .iter()
        .fold(coinbase_txid, |node, sibling| merkle_parent(&node, sibling))
}

/// The merkle root of a whole list of txids (coinbase first), as the consensus rules define it.
pub fn root(txids: &[[u8; 32]]) -> [u8; 32] {
    assert!(!txids.is_empty(), "a block has at least its coinbase");
    let mut level = txids.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| merkle_parent(&pair[0], pair.get(1).unwrap_or(&pair[0])))
            .collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn folding_the_branch_gives_the_root(txids in proptest::collection::vec(any::<[u8; 32]>(), 1..40)) {
            let branch = coinbase_branch(&txids[1..]);
            prop_assert_eq!(fold(txids[0], &branch), root(&txids));
            // A branch has one hash per level above the leaves.
            let levels = (usize::BITS - (txids.len() - 1).leading_zeros()) as usize;
            prop_assert_eq!(branch.len(), if txids.len() == 1 { 0 } else { levels });
        }
    }

    #[test]
    fn coinbase_alone_has_empty_branch() {
        assert!(coinbase_branch(&[]).is_empty());
        assert_eq!(fold([7; 32], &[]), [7; 32]);
    }
}
