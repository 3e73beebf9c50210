//! Sector-aware id reordering (after Starling, Wang et al., SIGMOD 2024, §4 "block
//! shuffling", in a simple greedy form): choose which nodes share a 4 KB block so that a
//! block holds graph neighbours. A beam search that fetches node u's block then gets u's
//! nearest neighbour's record in the same read, and can expand it without another I/O.
//!
//! Greedy: walk the graph breadth-first from the medoid; the first unplaced node u opens a
//! block, which is filled with u's closest unplaced out-neighbours (exact distance), then —
//! if u has too few — with the next unplaced nodes in BFS order. Runs in O(n·R) distance
//! computations; blocks stay full, so a node's position is still computed from its id.

use ssdann_layout::{Metric, Vector};

/// Returns `perm` with `perm[new_slot] = old_id`, a permutation of `0..n` that groups
/// neighbours into blocks of `nodes_per_block`. With `nodes_per_block == 1` it is the
/// identity.
pub fn block_order<T: Vector>(
    adjacency: &[Vec<u32>],
    medoid: u32,
    nodes_per_block: usize,
    data: &[T],
    dim: usize,
    metric: Metric,
) -> Vec<u32> {
    let vec_of = |id: u32| &data[id as usize * dim..(id as usize + 1) * dim];
    block_order_ranked(
        adjacency.len(),
        medoid,
        nodes_per_block,
        &mut |u, out| {
            out.clear();
            out.extend_from_slice(&adjacency[u as usize]);
            Ok(())
        },
        &mut |u, cands| {
            for c in cands.iter_mut() {
                c.0 = T::distance(metric, vec_of(u), vec_of(c.1));
            }
            Ok(())
        },
    )
    .unwrap_or_else(|e: std::convert::Infallible| match e {})
}

/// `neighbors(u, out)`: puts node u's out-list in `out`.
pub type ListFn<'a, E> = dyn FnMut(u32, &mut Vec<u32>) -> Result<(), E> + 'a;

/// `rank(u, cands)`: sets the key of each `(key, v)` in `cands` — u's unplaced
/// out-neighbours, keyed on entry by their position in u's list — to the order in which they
/// join u's block (smaller first): the distance from u (the metric's: squared L2, negated
/// inner product, ...), or the position left as it is.
pub type RankFn<'a, E> = dyn FnMut(u32, &mut [(f32, u32)]) -> Result<(), E> + 'a;

/// [`block_order`] without vectors: a node's out-neighbours are taken in list order, which
/// RobustPrune leaves closest first. `neighbors(u, out)` puts u's list in `out` (it may read
/// it from a file).
///
/// # Errors
/// Whatever `neighbors` returns.
pub fn block_order_by_list<E>(
    n: usize,
    medoid: u32,
    nodes_per_block: usize,
    neighbors: &mut ListFn<'_, E>,
) -> Result<Vec<u32>, E> {
    block_order_ranked(n, medoid, nodes_per_block, neighbors, &mut |_, _| Ok(()))
}

/// The greedy of [`block_order`] over lists and a ranking that may read from files (the
/// partitioned build, whose graph and vectors are not in RAM): `neighbors(u, out)` puts u's
/// list in `out`; `rank` orders u's unplaced out-neighbours ([`RankFn`]). `rank` is called
/// only when more of them are unplaced than u's block has room for — otherwise all join it.
///
/// # Errors
/// Whatever `neighbors` or `rank` returns.
pub fn block_order_ranked<E>(
    n: usize,
    medoid: u32,
    nodes_per_block: usize,
    neighbors: &mut ListFn<'_, E>,
    rank: &mut RankFn<'_, E>,
) -> Result<Vec<u32>, E> {
    if nodes_per_block <= 1 || n <= 1 {
        return Ok((0..n as u32).collect());
    }
    let mut list = Vec::new();
    // BFS order from the medoid, then every node BFS did not reach.
    let mut bfs: Vec<u32> = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    seen[medoid as usize] = true;
    bfs.push(medoid);
    let mut head = 0;
    while head < bfs.len() {
        let u = bfs[head];
        head += 1;
        neighbors(u, &mut list)?;
        for &v in &list {
            if !seen[v as usize] {
                seen[v as usize] = true;
                bfs.push(v);
            }
        }
    }
    bfs.extend((0..n as u32).filter(|&i| !seen[i as usize]));
    drop(seen);

    let mut placed = vec![false; n];
    let mut perm = Vec::with_capacity(n);
    let mut cursor = 0;
    let mut cands: Vec<(f32, u32)> = Vec::new();
    while perm.len() < n {
        while placed[bfs[cursor] as usize] {
            cursor += 1;
        }
        let u = bfs[cursor];
        placed[u as usize] = true;
        perm.push(u);
        let mut room = nodes_per_block - 1;
        cands.clear();
        neighbors(u, &mut list)?;
        cands.extend(
            list.iter()
                .enumerate()
                .filter(|&(_, &v)| !placed[v as usize])
                .map(|(pos, &v)| (pos as f32, v)),
        );
        if cands.len() > room {
            rank(u, &mut cands)?;
            cands.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        }
        for &(_, v) in &cands {
            if room == 0 || perm.len() == n {
                break;
            }
            placed[v as usize] = true;
            perm.push(v);
            room -= 1;
        }
        let mut k = cursor;
        while room > 0 && perm.len() < n {
            if !placed[bfs[k] as usize] {
                placed[bfs[k] as usize] = true;
                perm.push(bfs[k]);
                room -= 1;
            }
            k += 1;
        }
    }
    Ok(perm)
}

/// Inverse of a permutation: `inv[old_id] = new_slot`.
pub fn invert(perm: &[u32]) -> Vec<u32> {
    let mut inv = vec![0u32; perm.len()];
    for (new, &old) in perm.iter().enumerate() {
        inv[old as usize] = new as u32;
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_nearest_neighbours_and_is_a_permutation() {
        // points on a line 0..10, graph = both line neighbours
        let data: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let adj: Vec<Vec<u32>> = (0..10u32)
            .map(|i| {
                [i.checked_sub(1), (i < 9).then_some(i + 1)]
                    .into_iter()
                    .flatten()
                    .collect()
            })
            .collect();
        let perm = block_order(&adj, 4, 2, &data, 1, Metric::L2);
        let mut sorted = perm.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        // greedy pairs line neighbours: (4,3) (5,6) (2,1) (7,8), and the leftovers (0,9)
        let paired = perm
            .chunks(2)
            .filter(|b| (b[0] as i32 - b[1] as i32).abs() == 1)
            .count();
        assert_eq!(paired, 4, "{perm:?}");
        assert_eq!(&perm[..2], &[4, 3]);
        let inv = invert(&perm);
        assert!(perm
            .iter()
            .enumerate()
            .all(|(new, &old)| inv[old as usize] == new as u32));
        assert_eq!(
            block_order(&adj, 4, 1, &data, 1, Metric::L2),
            (0..10).collect::<Vec<_>>()
        );
        // by list order: lists closest first give the same blocks as exact distances
        let sorted_adj: Vec<Vec<u32>> = adj.clone();
        let by_list = block_order_by_list(10, 4, 2, &mut |u, out: &mut Vec<u32>| {
            out.clear();
            out.extend_from_slice(&sorted_adj[u as usize]);
            Ok::<(), ()>(())
        })
        .unwrap();
        let mut s2 = by_list.clone();
        s2.sort_unstable();
        assert_eq!(s2, (0..10).collect::<Vec<_>>());
        let paired = by_list
            .chunks(2)
            .filter(|b| (b[0] as i32 - b[1] as i32).abs() == 1)
            .count();
        assert_eq!(paired, 4, "{by_list:?}");
    }

    #[test]
    fn ranked_order_follows_distance_not_list_order() {
        // points on a line; each list holds every other point, farthest first: list order
        // alone pairs far points, the ranking by distance pairs line neighbours
        let n = 8u32;
        let lists: Vec<Vec<u32>> = (0..n)
            .map(|u| {
                let mut l: Vec<u32> = (0..n).filter(|&v| v != u).collect();
                l.sort_by_key(|&v| std::cmp::Reverse((v as i32 - u as i32).abs()));
                l
            })
            .collect();
        let mut neighbors = |u: u32, out: &mut Vec<u32>| {
            out.clear();
            out.extend_from_slice(&lists[u as usize]);
            Ok::<(), ()>(())
        };
        let mut ranked = 0;
        let perm = block_order_ranked(8, 0, 2, &mut neighbors, &mut |u, cands| {
            ranked += 1;
            cands
                .iter_mut()
                .for_each(|c| c.0 = (c.1 as f32 - u as f32).abs());
            Ok(())
        })
        .unwrap();
        assert_eq!(perm, vec![0, 1, 7, 6, 5, 4, 3, 2]);
        // the last block's first node has one unplaced neighbour, room for one: not ranked
        assert_eq!(ranked, 3);
        let by_list = block_order_by_list(8, 0, 2, &mut neighbors).unwrap();
        assert_eq!(&by_list[..2], &[0, 7]);
    }
}
