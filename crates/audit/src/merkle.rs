//! The audit log's Merkle tree, as defined by RFC 6962 and RFC 9162 §2.1.
//!
//! Leaves are hashed as `SHA-256(0x00 ‖ data)` and interior nodes as `SHA-256(0x01 ‖ left ‖
//! right)`; the two prefixes keep a leaf from ever being passed off as a node. A tree of `n > 1`
//! leaves splits at `k`, the largest power of two smaller than `n`: its hash is
//! `node(MTH(D[0:k]), MTH(D[k:n]))`. The empty tree hashes to `SHA-256("")`.
//!
//! # Storage model
//!
//! A log keeps every *complete* subtree hash — a [`NodeId`] `(level, index)` covering leaves
//! `[index·2^level, (index+1)·2^level)` — as it grows; [`Frontier::push`] returns exactly the nodes
//! a new leaf completes. Complete nodes never change once written, so they can live in an
//! append-only table. Every hash a proof needs that is *not* complete (a subtree on the right edge
//! of the tree) is derived from complete nodes by the binary decomposition of its range, so a proof
//! at any size needs O(log n) stored nodes and never rehashes leaves.
//!
//! Building a proof is two steps: [`inclusion_nodes`] / [`consistency_nodes`] / [`frontier_nodes`]
//! name the stored nodes needed (fetch them in one query), then [`inclusion_proof`] /
//! [`consistency_proof`] / [`root_from_nodes`] assemble the proof from a lookup closure.
//!
//! Proofs are laid out as RFC 9162 §2.1.3.1 and §2.1.4.1 define them (deepest hash first) and are
//! checked with the verification algorithms of §2.1.3.2 and §2.1.4.2, so any RFC 9162 verifier
//! accepts them.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf, an interior node or a tree root.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 ‖ data)`: the hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // One 65-byte buffer hashes faster than three `update` calls.
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    Sha256::digest(buf).into()
}

/// `SHA-256("")`: the hash of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A complete, aligned subtree: leaves `[index·2^level, (index+1)·2^level)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u32,
    pub index: u64,
}

impl NodeId {
    /// The first leaf this subtree covers.
    pub fn start(self) -> u64 {
        self.index << self.level
    }

    /// How many leaves this subtree covers.
    pub fn width(self) -> u64 {
        1u64 << self.level
    }
}

/// Why a proof could not be built or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf {leaf} is outside a tree of size {size}")]
    LeafOutOfRange { leaf: u64, size: u64 },
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizeOrder { old_size: u64, new_size: u64 },
    #[error("stored node at level {level}, index {index} is missing")]
    MissingNode { level: u32, index: u64 },
    #[error("proof has {got} hashes where {expected} are expected")]
    WrongProofLength { expected: usize, got: usize },
    #[error("inclusion proof does not lead to the root")]
    RootMismatch,
    #[error("consistency proof does not match the old root")]
    OldRootMismatch,
    #[error("consistency proof does not match the new root")]
    NewRootMismatch,
    #[error("a tree of size {size} has {expected} complete subtrees on its right edge, got {got}")]
    FrontierMismatch {
        size: u64,
        expected: u32,
        got: usize,
    },
}

/// The right edge of a tree: the roots of its maximal complete subtrees, largest first.
///
/// This is all the state needed to append leaves and to compute the root, so a log (or a
/// verifier) holds O(log n) hashes in memory whatever its size.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    subtrees: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// A frontier from its size and its subtree hashes (largest first), e.g. as read back from an
    /// export's prefix line. There must be exactly one hash per set bit of `size`.
    pub fn from_parts(size: u64, subtrees: Vec<Hash>) -> Result<Frontier, ProofError> {
        if subtrees.len() != size.count_ones() as usize {
            return Err(ProofError::FrontierMismatch {
                size,
                expected: size.count_ones(),
                got: subtrees.len(),
            });
        }
        Ok(Frontier { size, subtrees })
    }

    /// The frontier at `size`, from stored complete nodes (those [`frontier_nodes`] names): how a
    /// log resumes appending after a restart.
    pub fn from_nodes(
        size: u64,
        nodes: &impl Fn(NodeId) -> Option<Hash>,
    ) -> Result<Frontier, ProofError> {
        let subtrees = frontier_nodes(size)
            .into_iter()
            .map(|id| lookup(nodes, id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Frontier { size, subtrees })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree hashes, largest first.
    pub fn subtrees(&self) -> &[Hash] {
        &self.subtrees
    }

    /// Which complete nodes the subtrees are, largest first (parallel to [`Frontier::subtrees`]).
    pub fn node_ids(&self) -> Vec<NodeId> {
        frontier_nodes(self.size)
    }

    /// Appends a leaf hash; returns every node completed by it, the leaf itself (level 0) first.
    pub fn push(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let mut out = Vec::with_capacity(1 + self.size.trailing_ones() as usize);
        self.push_with(leaf, |id, hash| out.push((id, hash)));
        out
    }

    /// [`Frontier::push`] without allocating: `completed` is called for each node completed by
    /// the new leaf, the leaf itself first, then upwards.
    pub fn push_with(&mut self, leaf: Hash, mut completed: impl FnMut(NodeId, Hash)) {
        let index = self.size;
        completed(NodeId { level: 0, index }, leaf);
        let mut hash = leaf;
        let mut level = 0u32;
        // Like a binary counter: each trailing 1 bit of the old size is a complete subtree of the
        // same height as the one being carried, which the new leaf now completes a parent for.
        while (index >> level) & 1 == 1 {
            let Some(left) = self.subtrees.pop() else {
                // Unreachable while the popcount invariant holds (both constructors check it).
                break;
            };
            hash = node_hash(&left, &hash);
            level += 1;
            completed(
                NodeId {
                    level,
                    index: index >> level,
                },
                hash,
            );
        }
        self.subtrees.push(hash);
        // A log cannot reach 2^64 entries, so this cannot overflow in practice.
        self.size += 1;
    }

    /// The Merkle tree hash of the whole tree; [`empty_root`] if it has no leaves.
    pub fn root(&self) -> Hash {
        fold_right(self.subtrees.iter().copied()).unwrap_or_else(empty_root)
    }
}

/// Right fold of subtree hashes (largest first) into the hash of their concatenated range: the
/// RFC split of a range whose length is not a power of two always puts its largest complete
/// subtree on the left and the rest on the right.
fn fold_right(hashes: impl DoubleEndedIterator<Item = Hash>) -> Option<Hash> {
    let mut rev = hashes.rev();
    let mut acc = rev.next()?;
    for left in rev {
        acc = node_hash(&left, &acc);
    }
    Some(acc)
}

fn lookup(nodes: &impl Fn(NodeId) -> Option<Hash>, id: NodeId) -> Result<Hash, ProofError> {
    nodes(id).ok_or(ProofError::MissingNode {
        level: id.level,
        index: id.index,
    })
}

/// The largest power of two strictly smaller than `n` (`n ≥ 2`): where RFC 6962 splits a tree.
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The complete subtrees covering leaves `[start, end)`, largest first.
///
/// `start` must be a multiple of a power of two at least `end - start`; that holds for `[0, n)`
/// and for every range the RFC recursion produces, so each piece is aligned.
fn decompose(start: u64, end: u64, out: &mut Vec<NodeId>) {
    let mut at = start;
    while at < end {
        let level = 63 - (end - at).leading_zeros();
        out.push(NodeId {
            level,
            index: at >> level,
        });
        at += 1u64 << level;
    }
}

/// The hash of leaves `[start, end)` from stored complete nodes.
fn range_hash(
    start: u64,
    end: u64,
    nodes: &impl Fn(NodeId) -> Option<Hash>,
    scratch: &mut Vec<NodeId>,
) -> Result<Hash, ProofError> {
    scratch.clear();
    decompose(start, end, scratch);
    let hashes = scratch
        .iter()
        .map(|&id| lookup(nodes, id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(fold_right(hashes.into_iter()).unwrap_or_else(empty_root))
}

/// The leaf ranges whose hashes form the inclusion proof of `leaf` in a tree of `size`, in proof
/// order (RFC 9162 §2.1.3.1 `PATH`, unrolled: siblings are collected root-down, then reversed).
fn inclusion_ranges(leaf: u64, size: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if leaf >= size {
        return Err(ProofError::LeafOutOfRange { leaf, size });
    }
    let mut out = Vec::with_capacity(64);
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if leaf < lo + k {
            out.push((lo + k, hi));
            hi = lo + k;
        } else {
            out.push((lo, lo + k));
            lo += k;
        }
    }
    out.reverse();
    Ok(out)
}

/// The leaf ranges whose hashes form the consistency proof from `old_size` to `new_size`, in
/// proof order (RFC 9162 §2.1.4.1 `SUBPROOF`, unrolled like [`inclusion_ranges`]). Empty when
/// either tree is trivially consistent with the other (old size 0 or equal sizes).
fn consistency_ranges(old_size: u64, new_size: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizeOrder { old_size, new_size });
    }
    let mut out = Vec::with_capacity(64);
    if old_size == 0 || old_size == new_size {
        return Ok(out);
    }
    let (mut lo, mut hi) = (0u64, new_size);
    // SUBPROOF's flag `b`: true while the current subtree is the old tree's whole left part, whose
    // hash the verifier already has (the old root), so it is not sent.
    let mut whole_old_tree = true;
    loop {
        if old_size == hi {
            if !whole_old_tree {
                out.push((lo, hi));
            }
            break;
        }
        let k = split_point(hi - lo);
        if old_size <= lo + k {
            out.push((lo + k, hi));
            hi = lo + k;
        } else {
            out.push((lo, lo + k));
            lo += k;
            whole_old_tree = false;
        }
    }
    out.reverse();
    Ok(out)
}

fn nodes_of(ranges: &[(u64, u64)]) -> Vec<NodeId> {
    let mut ids = Vec::with_capacity(ranges.len() * 2);
    for &(start, end) in ranges {
        decompose(start, end, &mut ids);
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn proof_of(
    ranges: &[(u64, u64)],
    nodes: &impl Fn(NodeId) -> Option<Hash>,
) -> Result<Vec<Hash>, ProofError> {
    let mut scratch = Vec::with_capacity(64);
    ranges
        .iter()
        .map(|&(start, end)| range_hash(start, end, nodes, &mut scratch))
        .collect()
}

/// Which stored complete nodes an inclusion proof of `leaf` in a tree of `size` needs
/// (deduplicated, sorted).
pub fn inclusion_nodes(leaf: u64, size: u64) -> Result<Vec<NodeId>, ProofError> {
    Ok(nodes_of(&inclusion_ranges(leaf, size)?))
}

/// The RFC 9162 inclusion proof of `leaf` in a tree of `size`, from stored complete nodes.
pub fn inclusion_proof(
    leaf: u64,
    size: u64,
    nodes: &impl Fn(NodeId) -> Option<Hash>,
) -> Result<Vec<Hash>, ProofError> {
    proof_of(&inclusion_ranges(leaf, size)?, nodes)
}

/// Which stored complete nodes a consistency proof from `old_size` to `new_size` needs
/// (deduplicated, sorted).
pub fn consistency_nodes(old_size: u64, new_size: u64) -> Result<Vec<NodeId>, ProofError> {
    Ok(nodes_of(&consistency_ranges(old_size, new_size)?))
}

/// The RFC 9162 consistency proof from `old_size` to `new_size`, from stored complete nodes.
/// Empty when `old_size` is 0 or equals `new_size`.
pub fn consistency_proof(
    old_size: u64,
    new_size: u64,
    nodes: &impl Fn(NodeId) -> Option<Hash>,
) -> Result<Vec<Hash>, ProofError> {
    proof_of(&consistency_ranges(old_size, new_size)?, nodes)
}

/// Which stored complete nodes make up the frontier (and so the root) of a tree of `size`: the
/// binary decomposition of `size`, largest first.
pub fn frontier_nodes(size: u64) -> Vec<NodeId> {
    let mut ids = Vec::with_capacity(size.count_ones() as usize);
    decompose(0, size, &mut ids);
    ids
}

/// The root of a tree of `size` from stored complete nodes only (the binary decomposition of
/// `size`, see [`frontier_nodes`]).
pub fn root_from_nodes(
    size: u64,
    nodes: &impl Fn(NodeId) -> Option<Hash>,
) -> Result<Hash, ProofError> {
    range_hash(0, size, nodes, &mut Vec::with_capacity(64))
}

/// How many hashes an inclusion proof of `leaf` in a tree of `size` has (`leaf < size`): one per
/// level below the point where the paths to `leaf` and to the last leaf part, plus one per left
/// sibling above it.
fn inclusion_proof_len(leaf: u64, size: u64) -> usize {
    let inner = 64 - (leaf ^ (size - 1)).leading_zeros();
    let border = (leaf >> inner).count_ones();
    (inner + border) as usize
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2): that `leaf_hash` is leaf number `leaf` of the
/// tree of `size` whose root is `root`.
pub fn verify_inclusion(
    leaf: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if leaf >= size {
        return Err(ProofError::LeafOutOfRange { leaf, size });
    }
    // The length check is implied by the algorithm below, but makes the error say what is wrong.
    let expected = inclusion_proof_len(leaf, size);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    let (mut f_n, mut s_n) = (leaf, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                got: proof.len(),
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                // A right-edge node with no right sibling: skip the levels it is promoted through.
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 || r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2): that the tree of `new_size` with root
/// `new_root` extends the tree of `old_size` with root `old_root`.
///
/// Beyond the RFC (which covers `0 < old_size < new_size`): equal sizes need an empty proof and
/// equal roots; old size 0 needs an empty proof and the empty tree's root as `old_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    let expected = consistency_ranges(old_size, new_size)?.len();
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    if old_size == 0 {
        return if *old_root == empty_root() {
            Ok(())
        } else {
            Err(ProofError::OldRootMismatch)
        };
    }
    if old_size == new_size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::NewRootMismatch)
        };
    }
    // When the old tree is a complete subtree, its root is the proof's implicit first element.
    let old_is_complete = old_size.is_power_of_two();
    let mut path = old_is_complete
        .then_some(old_root)
        .into_iter()
        .chain(proof.iter());
    let Some(first) = path.next() else {
        return Err(ProofError::WrongProofLength { expected, got: 0 });
    };
    let (mut f_n, mut s_n) = (old_size - 1, new_size - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (*first, *first);
    for c in path {
        if s_n == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                got: proof.len(),
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if f_r != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if s_n != 0 || s_r != *new_root {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    // ---- a naive, recursive RFC 6962 implementation straight from the definitions ----

    fn naive_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
            }
        }
    }

    fn naive_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = split_point(n as u64) as usize;
        if m < k {
            let mut p = naive_path(m, &leaves[..k]);
            p.push(naive_root(&leaves[k..]));
            p
        } else {
            let mut p = naive_path(m - k, &leaves[k..]);
            p.push(naive_root(&leaves[..k]));
            p
        }
    }

    fn naive_subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if whole {
                Vec::new()
            } else {
                vec![naive_root(leaves)]
            };
        }
        let k = split_point(n as u64) as usize;
        if m <= k {
            let mut p = naive_subproof(m, &leaves[..k], whole);
            p.push(naive_root(&leaves[k..]));
            p
        } else {
            let mut p = naive_subproof(m - k, &leaves[k..], false);
            p.push(naive_root(&leaves[..k]));
            p
        }
    }

    fn naive_consistency(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        if m == 0 || m == leaves.len() {
            Vec::new()
        } else {
            naive_subproof(m, leaves, true)
        }
    }

    /// The left/right decisions of `naive_path`: what a proof's hashes mean for (leaf, size).
    fn naive_shape(m: usize, n: usize) -> Vec<bool> {
        if n <= 1 {
            return Vec::new();
        }
        let k = split_point(n as u64) as usize;
        let mut s = if m < k {
            naive_shape(m, k)
        } else {
            naive_shape(m - k, n - k)
        };
        s.push(m < k);
        s
    }

    /// The decisions of `naive_subproof`, likewise.
    fn naive_cons_shape(m: usize, n: usize) -> Vec<u8> {
        fn go(m: usize, n: usize, whole: bool, out: &mut Vec<u8>) {
            if m == n {
                out.push(if whole { 2 } else { 3 });
                return;
            }
            let k = split_point(n as u64) as usize;
            if m <= k {
                go(m, k, whole, out);
                out.push(0);
            } else {
                go(m - k, n - k, false, out);
                out.push(1);
            }
        }
        let mut out = Vec::new();
        if m != 0 && m != n {
            go(m, n, true, &mut out);
        }
        out
    }

    /// Builds the tree with `Frontier::push`, keeping every returned node, as a store would.
    fn build(leaves: &[Hash]) -> (Frontier, HashMap<NodeId, Hash>) {
        let mut f = Frontier::new();
        let mut nodes = HashMap::new();
        for leaf in leaves {
            for (id, h) in f.push(*leaf) {
                assert!(nodes.insert(id, h).is_none(), "node {id:?} completed twice");
            }
        }
        (f, nodes)
    }

    fn leaves(n: usize, salt: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("{salt}:{i}").as_bytes()))
            .collect()
    }

    fn h(s: &str) -> Hash {
        let v = hex::decode(s).expect("test vector is hex");
        v.try_into().expect("test vector is 32 bytes")
    }

    // ---- RFC 6962 reference vectors (certificate-transparency / transparency-dev test data) ----

    fn reference_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|d| leaf_hash(&hex::decode(d).expect("hex")))
        .collect()
    }

    const REFERENCE_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn reference_roots_for_every_size() {
        let leaves = reference_leaves();
        let mut f = Frontier::new();
        assert_eq!(f.root(), h(REFERENCE_ROOTS[0]));
        assert_eq!(empty_root(), h(REFERENCE_ROOTS[0]));
        for (i, leaf) in leaves.iter().enumerate() {
            f.push(*leaf);
            assert_eq!(f.root(), h(REFERENCE_ROOTS[i + 1]), "size {}", i + 1);
        }
        let (_, nodes) = build(&leaves);
        for size in 0..=8u64 {
            let root = root_from_nodes(size, &|id| nodes.get(&id).copied()).expect("nodes");
            assert_eq!(root, h(REFERENCE_ROOTS[size as usize]));
        }
    }

    #[test]
    fn reference_complete_nodes() {
        let (_, nodes) = build(&reference_leaves());
        let expect = [
            (
                1,
                0,
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            ),
            (
                1,
                1,
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            ),
            (
                1,
                2,
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            ),
            (
                1,
                3,
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            ),
            (
                2,
                0,
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ),
            (
                2,
                1,
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ),
            (
                3,
                0,
                "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
            ),
        ];
        for (level, index, hash) in expect {
            assert_eq!(
                nodes[&NodeId { level, index }],
                h(hash),
                "node {level}/{index}"
            );
        }
        assert_eq!(nodes.len(), 8 + 4 + 2 + 1);
    }

    #[test]
    fn reference_proofs() {
        let leaves = reference_leaves();
        let (_, nodes) = build(&leaves);
        let get = |id| nodes.get(&id).copied();
        let root8 = h(REFERENCE_ROOTS[8]);
        let cases: [(u64, &[&str]); 2] = [
            (
                0,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (leaf, want) in cases {
            let proof = inclusion_proof(leaf, 8, &get).expect("proof");
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(proof, want, "inclusion of leaf {leaf}");
            verify_inclusion(leaf, 8, &leaves[leaf as usize], &proof, &root8).expect("verifies");
        }
        let consistency: [(u64, u64, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, want) in consistency {
            let proof = consistency_proof(old, new, &get).expect("proof");
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(proof, want, "consistency {old} -> {new}");
            verify_consistency(
                old,
                new,
                &h(REFERENCE_ROOTS[old as usize]),
                &h(REFERENCE_ROOTS[new as usize]),
                &proof,
            )
            .expect("verifies");
        }
    }

    #[test]
    fn split_point_is_the_rfc_one_not_the_midpoint() {
        for (n, k) in [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (1000, 512)] {
            assert_eq!(split_point(n), k, "n = {n}");
        }
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }

    #[test]
    fn push_returns_exactly_the_completed_nodes() {
        let mut f = Frontier::new();
        let l = leaves(8, 1);
        let ids = |v: Vec<(NodeId, Hash)>| v.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(ids(f.push(l[0])), [NodeId { level: 0, index: 0 }]);
        assert_eq!(
            ids(f.push(l[1])),
            [NodeId { level: 0, index: 1 }, NodeId { level: 1, index: 0 }]
        );
        assert_eq!(ids(f.push(l[2])), [NodeId { level: 0, index: 2 }]);
        assert_eq!(
            ids(f.push(l[3])),
            [
                NodeId { level: 0, index: 3 },
                NodeId { level: 1, index: 1 },
                NodeId { level: 2, index: 0 }
            ]
        );
        assert_eq!(f.subtrees().len(), 1);
        assert_eq!(f.node_ids(), [NodeId { level: 2, index: 0 }]);
    }

    #[test]
    fn frontier_from_parts_checks_the_count() {
        assert_eq!(
            Frontier::from_parts(5, vec![[0; 32]]),
            Err(ProofError::FrontierMismatch {
                size: 5,
                expected: 2,
                got: 1
            })
        );
        assert!(Frontier::from_parts(0, vec![]).is_ok());
    }

    #[test]
    fn missing_node_is_named() {
        let (_, mut nodes) = build(&leaves(10, 2));
        nodes.remove(&NodeId { level: 1, index: 4 });
        let get = |id| nodes.get(&id).copied();
        assert_eq!(
            root_from_nodes(10, &get),
            Err(ProofError::MissingNode { level: 1, index: 4 })
        );
        assert_eq!(
            inclusion_proof(0, 10, &get),
            Err(ProofError::MissingNode { level: 1, index: 4 })
        );
    }

    #[test]
    fn out_of_range_arguments_are_refused() {
        assert_eq!(
            inclusion_nodes(5, 5),
            Err(ProofError::LeafOutOfRange { leaf: 5, size: 5 })
        );
        assert_eq!(
            consistency_nodes(6, 5),
            Err(ProofError::SizeOrder {
                old_size: 6,
                new_size: 5
            })
        );
        let r = [7u8; 32];
        assert!(verify_inclusion(3, 3, &r, &[], &r).is_err());
        assert!(verify_consistency(4, 3, &r, &r, &[]).is_err());
        // Old size 0: only the empty tree's root is consistent with anything.
        assert_eq!(verify_consistency(0, 3, &empty_root(), &r, &[]), Ok(()));
        assert_eq!(
            verify_consistency(0, 3, &r, &r, &[]),
            Err(ProofError::OldRootMismatch)
        );
        assert_eq!(
            verify_consistency(3, 3, &r, &[8u8; 32], &[]),
            Err(ProofError::NewRootMismatch)
        );
    }

    #[test]
    fn node_counts_stay_logarithmic_at_a_million() {
        let n = 1_000_000u64;
        for leaf in [0, 1, 499_999, 999_999] {
            let ids = inclusion_nodes(leaf, n).expect("in range");
            assert!(ids.len() <= 40, "leaf {leaf}: {} nodes", ids.len());
        }
        for old in [1, 2, 3, 524_288, 999_999] {
            let ids = consistency_nodes(old, n).expect("in range");
            assert!(ids.len() <= 45, "old {old}: {} nodes", ids.len());
        }
    }

    fn flip(mut h: Hash, byte: usize) -> Hash {
        h[byte % 32] ^= 0x01;
        h
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn frontier_matches_naive(n in 0usize..300, salt in any::<u64>()) {
            let l = leaves(n, salt);
            let (f, nodes) = build(&l);
            prop_assert_eq!(f.root(), naive_root(&l));
            prop_assert_eq!(f.size(), n as u64);
            // Every stored node is the naive hash of its range, and all complete subtrees exist.
            let mut complete = 0;
            for level in 0..10u32 {
                let width = 1usize << level;
                for index in 0..(n / width) {
                    let id = NodeId { level, index: index as u64 };
                    let want = naive_root(&l[index * width..(index + 1) * width]);
                    prop_assert_eq!(nodes.get(&id), Some(&want));
                    complete += 1;
                }
            }
            prop_assert_eq!(nodes.len(), complete);
            let again = Frontier::from_parts(f.size(), f.subtrees().to_vec()).expect("round trip");
            prop_assert_eq!(&again, &f);
            let from_nodes = Frontier::from_nodes(f.size(), &|id| nodes.get(&id).copied()).expect("nodes");
            prop_assert_eq!(&from_nodes, &f);
            for size in 0..=n {
                let r = root_from_nodes(size as u64, &|id| nodes.get(&id).copied()).expect("nodes");
                prop_assert_eq!(r, naive_root(&l[..size]));
            }
        }

        #[test]
        fn inclusion_proofs_verify_and_match_naive(
            n in 1usize..2000, salt in any::<u64>(), pick in any::<u64>(), byte in 0usize..32,
        ) {
            let l = leaves(n, salt);
            let (f, nodes) = build(&l);
            let root = f.root();
            let leaf = (pick % n as u64) as usize;
            let ids = inclusion_nodes(leaf as u64, n as u64).expect("in range");
            // Only the named nodes may be consulted.
            let get = |id: NodeId| if ids.binary_search(&id).is_ok() { nodes.get(&id).copied() } else { None };
            let proof = inclusion_proof(leaf as u64, n as u64, &get).expect("nodes present");
            prop_assert_eq!(&proof, &naive_path(leaf, &l));
            prop_assert_eq!(proof.len(), inclusion_proof_len(leaf as u64, n as u64));
            prop_assert_eq!(verify_inclusion(leaf as u64, n as u64, &l[leaf], &proof, &root), Ok(()));

            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i] = flip(bad[i], byte);
                prop_assert!(verify_inclusion(leaf as u64, n as u64, &l[leaf], &bad, &root).is_err());
            }
            prop_assert!(verify_inclusion(leaf as u64, n as u64, &flip(l[leaf], byte), &proof, &root).is_err());
            prop_assert!(verify_inclusion(leaf as u64, n as u64, &l[leaf], &proof, &flip(root, byte)).is_err());
            if n > 1 {
                let other = (leaf + 1 + (pick as usize % (n - 1))) % n;
                prop_assert!(verify_inclusion(other as u64, n as u64, &l[leaf], &proof, &root).is_err());
            }
            // A wrong size fails unless it describes the very same path (e.g. leaf 0 of 3 and of
            // 4: the verifier only sees hashes, so an RFC 9162 proof cannot tell those apart).
            for wrong in [n + 1, n.saturating_sub(1), 2 * n] {
                if wrong > leaf && naive_shape(leaf, wrong) != naive_shape(leaf, n) {
                    prop_assert!(verify_inclusion(leaf as u64, wrong as u64, &l[leaf], &proof, &root).is_err());
                }
            }
            let mut longer = proof.clone();
            longer.push(root);
            prop_assert!(verify_inclusion(leaf as u64, n as u64, &l[leaf], &longer, &root).is_err());
            if !proof.is_empty() {
                prop_assert!(verify_inclusion(leaf as u64, n as u64, &l[leaf], &proof[1..], &root).is_err());
            }
        }

        #[test]
        fn consistency_proofs_verify_and_match_naive(
            n in 1usize..2000, salt in any::<u64>(), pick in any::<u64>(), byte in 0usize..32,
        ) {
            let l = leaves(n, salt);
            let (f, nodes) = build(&l);
            let new_root = f.root();
            let old = (pick % (n as u64 + 1)) as usize;
            let old_root = naive_root(&l[..old]);
            let ids = consistency_nodes(old as u64, n as u64).expect("in range");
            let get = |id: NodeId| if ids.binary_search(&id).is_ok() { nodes.get(&id).copied() } else { None };
            let proof = consistency_proof(old as u64, n as u64, &get).expect("nodes present");
            prop_assert_eq!(&proof, &naive_consistency(old, &l));
            prop_assert_eq!(verify_consistency(old as u64, n as u64, &old_root, &new_root, &proof), Ok(()));

            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i] = flip(bad[i], byte);
                prop_assert!(verify_consistency(old as u64, n as u64, &old_root, &new_root, &bad).is_err());
            }
            prop_assert!(verify_consistency(old as u64, n as u64, &flip(old_root, byte), &new_root, &proof).is_err());
            if old > 0 {
                // With old size 0 any new root is consistent, by definition.
                prop_assert!(verify_consistency(old as u64, n as u64, &old_root, &flip(new_root, byte), &proof).is_err());
            }
            if old > 0 && old < n {
                let shape = naive_cons_shape(old, n);
                for (m, k) in [(old + 1, n), (old - 1, n), (old, n + 1), (old, n - 1), (old, 2 * n)] {
                    if m <= k && naive_cons_shape(m, k) != shape {
                        prop_assert!(verify_consistency(m as u64, k as u64, &old_root, &new_root, &proof).is_err());
                    }
                }
                let mut longer = proof.clone();
                longer.push(new_root);
                prop_assert!(verify_consistency(old as u64, n as u64, &old_root, &new_root, &longer).is_err());
                prop_assert!(verify_consistency(old as u64, n as u64, &old_root, &new_root, &proof[1..]).is_err());
            }
        }
    }
}
