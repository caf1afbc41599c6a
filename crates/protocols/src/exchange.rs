//! Pairing requests with responses in bounded space.

use crate::Correlation;
use fathom_model::{Direction, TimestampUs};
use std::collections::VecDeque;

/// Why a request left the table without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Older than the request timeout.
    Timeout,
    /// Pushed out because the table was full.
    Evicted,
    /// The flow ended first.
    FlowEnd,
}

impl EndReason {
    /// A stable snake_case name, for counters.
    pub const fn as_str(self) -> &'static str {
        match self {
            EndReason::Timeout => "timeout",
            EndReason::Evicted => "evicted",
            EndReason::FlowEnd => "flow_end",
        }
    }
}

/// A request waiting for its response.
#[derive(Debug, Clone)]
pub struct Paired<T> {
    /// Direction the request travelled.
    pub direction: Direction,
    /// How it pairs.
    pub correlation: Correlation,
    /// When it was inserted (capture time of its last byte).
    pub time_us: TimestampUs,
    /// The caller's request record.
    pub request: T,
}

/// A per-flow table of pending requests, oldest first, with a hard cap.
///
/// `Fifo` responses take the oldest pending `Fifo` request of the opposite direction; `ById` responses take the
/// pending request of the opposite direction with the same id (any age order, so out-of-order answers pair).
#[derive(Debug, Clone)]
pub struct ExchangeTable<T> {
    pending: VecDeque<Paired<T>>,
    cap: usize,
}

impl<T> ExchangeTable<T> {
    /// An empty table holding at most `cap` requests (at least 1).
    pub fn new(cap: usize) -> Self {
        ExchangeTable {
            pending: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Number of pending requests.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Add a request. If the table is full, the oldest request is returned, evicted. A `ById` request whose id
    /// is already pending in the same direction replaces it, and the old one is returned as evicted.
    pub fn insert(
        &mut self,
        direction: Direction,
        correlation: Correlation,
        time_us: TimestampUs,
        request: T,
    ) -> Option<Paired<T>> {
        let mut evicted = None;
        if let Correlation::ById(_) = correlation {
            if let Some(i) = self
                .pending
                .iter()
                .position(|p| p.direction == direction && p.correlation == correlation)
            {
                evicted = self.pending.remove(i);
            }
        }
        if evicted.is_none() && self.pending.len() >= self.cap {
            evicted = self.pending.pop_front();
        }
        self.pending.push_back(Paired {
            direction,
            correlation,
            time_us,
            request,
        });
        evicted
    }

    /// Take the request a response travelling in `response_direction` with `correlation` answers.
    pub fn take_match(
        &mut self,
        response_direction: Direction,
        correlation: Correlation,
    ) -> Option<Paired<T>> {
        let want = response_direction.reverse();
        let i = match correlation {
            Correlation::Unpaired => return None,
            Correlation::Fifo | Correlation::ById(_) => self
                .pending
                .iter()
                .position(|p| p.direction == want && p.correlation == correlation)?,
        };
        self.pending.remove(i)
    }

    /// Remove and return every request inserted at or before `deadline_us`, oldest first.
    pub fn expire(&mut self, deadline_us: TimestampUs) -> impl Iterator<Item = Paired<T>> + '_ {
        let n = self
            .pending
            .iter()
            .take_while(|p| p.time_us <= deadline_us)
            .count();
        self.pending.drain(..n)
    }

    /// Remove and return everything, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = Paired<T>> + '_ {
        self.pending.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::*;

    #[test]
    fn fifo_pairs_in_order() {
        let mut t = ExchangeTable::new(8);
        t.insert(ClientToServer, Correlation::Fifo, 1, "a");
        t.insert(ClientToServer, Correlation::Fifo, 2, "b");
        assert_eq!(
            t.take_match(ServerToClient, Correlation::Fifo)
                .unwrap()
                .request,
            "a"
        );
        assert_eq!(
            t.take_match(ServerToClient, Correlation::Fifo)
                .unwrap()
                .request,
            "b"
        );
        assert!(t.take_match(ServerToClient, Correlation::Fifo).is_none());
    }

    #[test]
    fn by_id_pairs_out_of_order_and_by_direction() {
        let mut t = ExchangeTable::new(8);
        t.insert(ClientToServer, Correlation::ById(1), 1, "c1");
        t.insert(ClientToServer, Correlation::ById(2), 2, "c2");
        t.insert(ServerToClient, Correlation::ById(1), 3, "s1");
        assert_eq!(
            t.take_match(ServerToClient, Correlation::ById(2))
                .unwrap()
                .request,
            "c2"
        );
        assert_eq!(
            t.take_match(ClientToServer, Correlation::ById(1))
                .unwrap()
                .request,
            "s1"
        );
        assert_eq!(
            t.take_match(ServerToClient, Correlation::ById(1))
                .unwrap()
                .request,
            "c1"
        );
        assert!(t.is_empty());
    }

    #[test]
    fn cap_evicts_oldest_and_expire_drains_old() {
        let mut t = ExchangeTable::new(2);
        assert!(t.insert(ClientToServer, Correlation::Fifo, 1, 1).is_none());
        assert!(t.insert(ClientToServer, Correlation::Fifo, 2, 2).is_none());
        assert_eq!(
            t.insert(ClientToServer, Correlation::Fifo, 3, 3)
                .unwrap()
                .request,
            1
        );
        let old: Vec<_> = t.expire(2).map(|p| p.request).collect();
        assert_eq!(old, vec![2]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn duplicate_id_replaces() {
        let mut t = ExchangeTable::new(4);
        t.insert(ClientToServer, Correlation::ById(7), 1, "old");
        assert_eq!(
            t.insert(ClientToServer, Correlation::ById(7), 2, "new")
                .unwrap()
                .request,
            "old"
        );
        assert_eq!(
            t.take_match(ServerToClient, Correlation::ById(7))
                .unwrap()
                .request,
            "new"
        );
    }
}
