//! A min-heap of wake-ups. Whoever pops a key re-checks its own state, so a wake-up that is no
//! longer wanted (a refresh after a failover, a retransmission after the response) simply does
//! nothing: nothing is ever searched for or removed early, and each live object has at most a
//! few entries pending, so the heap stays as small as the swarm.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tokio::time::Instant;

struct Item<K> {
    at: Instant,
    /// Insertion order breaks ties, so equal times pop first-in first-out.
    seq: u64,
    key: K,
}

impl<K> PartialEq for Item<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<K> Eq for Item<K> {}
impl<K> PartialOrd for Item<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Item<K> {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Wake-ups keyed by `K`.
pub struct Deadlines<K> {
    heap: BinaryHeap<Item<K>>,
    next_seq: u64,
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<K> Deadlines<K> {
    pub fn at(&mut self, at: Instant, key: K) {
        self.next_seq += 1;
        self.heap.push(Item {
            at,
            seq: self.next_seq,
            key,
        });
    }

    /// The earliest wake-up.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|i| i.at)
    }

    /// The earliest key due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        if self.heap.peek()?.at > now {
            return None;
        }
        self.heap.pop().map(|i| i.key)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn pops_in_time_order_then_insertion_order() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.at(t0 + Duration::from_millis(20), "b");
        d.at(t0 + Duration::from_millis(10), "a");
        d.at(t0 + Duration::from_millis(20), "c");
        assert_eq!(d.next(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(d.pop_due(t0), None);
        let now = t0 + Duration::from_millis(20);
        let popped: Vec<_> = std::iter::from_fn(|| d.pop_due(now)).collect();
        assert_eq!(popped, vec!["a", "b", "c"]);
        assert!(d.is_empty());
    }
}
