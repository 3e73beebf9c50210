//! The bounded, sorted candidate list of GreedySearch and beam search (DiskANN Alg. 1's list
//! `L`): at most `capacity` candidates ordered by (distance, id), each marked expanded or
//! not, with a cursor at the closest unexpanded one.

/// One candidate: a node id, its distance to the query, and whether it was expanded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Node id.
    pub id: u32,
    /// Distance to the query (squared L2 or negated inner product; PQ or exact).
    pub dist: f32,
    /// Whether the node's neighbours were already visited.
    pub expanded: bool,
}

/// Sorted candidate list of bounded size. Insertion is O(L) (a memmove), which beats a heap
/// for the L ≤ a few hundred used in practice.
#[derive(Clone, Debug, Default)]
pub struct NeighborQueue {
    items: Vec<Candidate>,
    capacity: usize,
    cursor: usize,
}

impl NeighborQueue {
    /// An empty list holding at most `capacity` candidates.
    pub fn new(capacity: usize) -> Self {
        NeighborQueue {
            items: Vec::with_capacity(capacity + 1),
            capacity,
            cursor: 0,
        }
    }

    /// Empties the list and sets a new capacity (keeps the allocation).
    pub fn reset(&mut self, capacity: usize) {
        self.items.clear();
        self.items.reserve(capacity + 1);
        self.capacity = capacity;
        self.cursor = 0;
    }

    /// Number of candidates held.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// The candidates, closest first.
    pub fn items(&self) -> &[Candidate] {
        &self.items
    }

    /// Inserts `id` at distance `dist` unless the list is full and `dist` is not better than
    /// the worst held. The caller guarantees an id is offered at most once (visited set).
    /// Returns whether it was inserted.
    #[inline]
    pub fn insert(&mut self, id: u32, dist: f32) -> bool {
        if self.items.len() == self.capacity {
            match self.items.last() {
                Some(last) if (dist, id) >= (last.dist, last.id) => return false,
                None => return false,
                _ => {}
            }
        }
        let pos = self.items.partition_point(|c| (c.dist, c.id) < (dist, id));
        self.items.insert(
            pos,
            Candidate {
                id,
                dist,
                expanded: false,
            },
        );
        if self.items.len() > self.capacity {
            self.items.pop();
        }
        if pos < self.cursor {
            self.cursor = pos;
        }
        true
    }

    /// The distance a new candidate must beat to enter: the worst held when the list is full,
    /// +∞ otherwise.
    #[inline]
    pub fn admission_bound(&self) -> f32 {
        if self.items.len() == self.capacity {
            self.items.last().map_or(f32::INFINITY, |c| c.dist)
        } else {
            f32::INFINITY
        }
    }

    /// Whether an unexpanded candidate remains.
    #[inline]
    pub fn has_unexpanded(&self) -> bool {
        self.cursor < self.items.len()
    }

    /// The id of the closest unexpanded candidate, without marking it (for prefetching).
    #[inline]
    pub fn peek_unexpanded(&self) -> Option<u32> {
        self.items.get(self.cursor).map(|c| c.id)
    }

    /// The distance of the closest unexpanded candidate (+∞ when none).
    #[inline]
    pub fn best_unexpanded_dist(&self) -> f32 {
        self.items
            .get(self.cursor)
            .map_or(f32::INFINITY, |c| c.dist)
    }

    /// Marks the closest unexpanded candidate expanded and returns it.
    #[inline]
    pub fn pop_unexpanded(&mut self) -> Option<Candidate> {
        let c = self.items.get_mut(self.cursor)?;
        c.expanded = true;
        let out = *c;
        self.advance_cursor();
        Some(out)
    }

    /// Marks up to `w` closest unexpanded candidates expanded and appends them to `out`
    /// (the beam of DiskANN's beam search).
    pub fn pop_unexpanded_beam(&mut self, w: usize, out: &mut Vec<Candidate>) {
        let mut taken = 0;
        let mut i = self.cursor;
        while taken < w && i < self.items.len() {
            if !self.items[i].expanded {
                self.items[i].expanded = true;
                out.push(self.items[i]);
                taken += 1;
            }
            i += 1;
        }
        self.advance_cursor();
    }

    /// Marks candidate `id` expanded if it is held and not yet expanded; returns whether it
    /// was (O(L) scan).
    pub fn mark_expanded(&mut self, id: u32) -> bool {
        match self.items.iter_mut().find(|c| c.id == id) {
            Some(c) if !c.expanded => {
                c.expanded = true;
                self.advance_cursor();
                true
            }
            _ => false,
        }
    }

    fn advance_cursor(&mut self) {
        while self.cursor < self.items.len() && self.items[self.cursor].expanded {
            self.cursor += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_best_sorted_and_expands_in_order() {
        let mut q = NeighborQueue::new(3);
        assert!(q.insert(1, 5.0));
        assert!(q.insert(2, 1.0));
        assert!(q.insert(3, 3.0));
        assert!(!q.insert(4, 9.0));
        assert!(q.insert(5, 2.0));
        assert_eq!(
            q.items().iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![2, 5, 3]
        );
        assert_eq!(q.pop_unexpanded().map(|c| c.id), Some(2));
        assert!(q.insert(6, 0.5));
        assert_eq!(q.pop_unexpanded().map(|c| c.id), Some(6));
        let mut beam = Vec::new();
        q.pop_unexpanded_beam(4, &mut beam);
        assert_eq!(beam.iter().map(|c| c.id).collect::<Vec<_>>(), vec![5]);
        assert!(!q.has_unexpanded());
        assert!(q.insert(7, 1.5));
        assert!(q.has_unexpanded());
        assert!(q.mark_expanded(7));
        assert!(!q.mark_expanded(7));
        assert!(!q.mark_expanded(99));
        assert!(!q.has_unexpanded());
        assert_eq!(
            q.items().iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![6, 2, 7]
        );
        assert!(q.pop_unexpanded().is_none());
    }
}
