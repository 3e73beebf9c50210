//! The per-search visited sets of the beam search: open addressing over (stamp, id) pairs,
//! so that a search thread's memory depends on how much one search touches (L × R ids
//! or so), not on n. DiskANN keeps a hash set per query for the same reason (an array of
//! n stamps per thread is 400 MB at 100M points). Reset is O(1): entries of an older stamp
//! count as empty.

/// A set of u32 ids with O(1) reset; grows (doubling) when half full, so a warm set never
/// allocates again for searches of the same size.
#[derive(Clone, Debug)]
pub struct HashVisited {
    /// `stamp << 32 | id`; an entry whose stamp is not `current` is empty.
    slots: Vec<u64>,
    current: u32,
    len: usize,
    shift: u32,
}

impl HashVisited {
    /// A set with room for `expected` ids before it first grows.
    pub fn with_capacity(expected: usize) -> Self {
        let cap = (expected.max(8) * 2).next_power_of_two();
        HashVisited {
            slots: vec![0; cap],
            current: 1,
            len: 0,
            shift: 64 - cap.trailing_zeros(),
        }
    }

    /// Forgets every id.
    pub fn reset(&mut self) {
        self.len = 0;
        self.current = self.current.wrapping_add(1);
        if self.current == 0 {
            self.slots.fill(0);
            self.current = 1;
        }
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn home(&self, id: u32) -> usize {
        // Fibonacci hashing: the top bits of id × 2⁶⁴/φ
        ((u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> self.shift) as usize
    }

    /// Marks `id`; returns true if it was not marked before.
    #[inline]
    pub fn insert(&mut self, id: u32) -> bool {
        let mask = self.slots.len() - 1;
        let key = (u64::from(self.current) << 32) | u64::from(id);
        let mut i = self.home(id);
        loop {
            let e = self.slots[i];
            if e == key {
                return false;
            }
            if (e >> 32) as u32 != self.current {
                self.slots[i] = key;
                self.len += 1;
                if self.len * 2 > self.slots.len() {
                    self.grow();
                }
                return true;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let old = std::mem::take(&mut self.slots);
        let cap = old.len() * 2;
        self.slots = vec![0; cap];
        self.shift = 64 - cap.trailing_zeros();
        self.len = 0;
        let cur = self.current;
        for e in old {
            if (e >> 32) as u32 == cur {
                self.insert(e as u32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_set_across_resets_growth_and_stamp_wraparound() {
        let mut h = HashVisited::with_capacity(4);
        let mut model = std::collections::HashSet::new();
        let mut x = 12345u32;
        for round in 0..50 {
            h.reset();
            model.clear();
            for _ in 0..(round * 37 % 500 + 1) {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let id = x % 2000; // many repeats
                assert_eq!(h.insert(id), model.insert(id), "round {round}, id {id}");
            }
            assert_eq!(h.len(), model.len());
        }
        // stamp wrap-around: every entry of stamp 0xFFFF_FFFF must read as empty after it
        h.current = u32::MAX;
        h.reset();
        assert!(h.is_empty() && h.insert(7) && !h.insert(7));
        assert!(h.insert(u32::MAX) && !h.insert(u32::MAX));
    }
}
