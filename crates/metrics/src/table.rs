//! The series table shared by RED and L4 aggregation: interned keys, one 1 s and one 1 min cell per series,
//! window closing, the series cap with its overflow series, and idle eviction.
//!
//! Hot path: one hash of the borrowed key parts, one probe of a `hashbrown::HashTable<u32>` into a slab of
//! slots, and an update of the slot's open 1 s cell. Keys are turned into owned strings only when a series is
//! created; rows are built only when a window closes.

use crate::sketch::LatencySketch;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::{BuildHasher, Hash};

/// Microseconds in the two window lengths.
pub(crate) const SEC_US: u64 = 1_000_000;
pub(crate) const MIN_US: u64 = 60 * SEC_US;

/// A stored series key and its borrowed view used for lookups.
pub(crate) trait SeriesKey: Sized {
    /// The borrowed form built from a record without allocating.
    type Ref<'a>: Hash + Eq + Copy
    where
        Self: 'a;
    /// This key as a borrowed view.
    fn as_key_ref(&self) -> Self::Ref<'_>;
    /// The owned key of a view (allocates: once per new series).
    fn from_ref(r: Self::Ref<'_>) -> Self;
    /// The overflow key of the group (protocol) `r` belongs to.
    fn overflow_of(r: Self::Ref<'_>) -> Self;
    /// True for overflow keys.
    fn is_overflow(&self) -> bool;
    /// True when this key is `r`.
    fn matches(&self, r: Self::Ref<'_>) -> bool;
}

/// What one series accumulates per window.
pub(crate) trait Cell: Sized {
    /// The series key type.
    type Key: SeriesKey;
    /// The closed-window row.
    type Row;
    /// Cumulative totals kept for exporters.
    type Totals: Default + Clone;
    /// An empty cell.
    fn empty(scale: u8) -> Self;
    /// True when nothing was observed.
    fn is_empty(&self) -> bool;
    /// Add `other` into `self`.
    fn merge_from(&mut self, other: &Self);
    /// Empty the cell, keeping allocations.
    fn clear(&mut self);
    /// The row of this cell for `key`.
    fn to_row(&self, key: &Self::Key, window_start_us: u64, window_s: u32) -> Self::Row;
    /// Fold a closed 1 s cell into the cumulative totals.
    fn add_second(&self, totals: &mut Self::Totals);
    /// Record a closed 1 min cell in the totals (e.g. its quantiles).
    fn close_minute(&self, totals: &mut Self::Totals);
    /// The cell's sketch (latency or RTT), handed out with closed rows when asked for.
    fn sketch(&self) -> &LatencySketch;
}

/// What the hot path touches: the key, the open 1 s cell.
pub(crate) struct Slot<C: Cell> {
    pub(crate) key: C::Key,
    hash: u64,
    sec_start: u64,
    last_us: u64,
    sec: C,
}

/// What only window closing touches: the 1 min cell and the totals (kept apart so the hot slab stays small).
pub(crate) struct Cold<C: Cell> {
    min_start: u64,
    min: C,
    pub(crate) totals: C::Totals,
}

/// Counters of one table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableStats {
    pub(crate) overflow_records: u64,
    pub(crate) late_records: u64,
    pub(crate) series_created: u64,
    pub(crate) series_evicted: u64,
}

pub(crate) struct Table<C: Cell> {
    hasher: DefaultHashBuilder,
    index: HashTable<u32>,
    slots: Vec<Option<Slot<C>>>,
    /// Parallel to `slots`.
    cold: Vec<Cold<C>>,
    free: Vec<u32>,
    /// Live series, overflow series excluded.
    live: usize,
    cap: usize,
    scale: u8,
    /// Rows of closed windows, with their sketches when `keep_sketches`.
    pub(crate) pending: Vec<(C::Row, Option<LatencySketch>)>,
    pub(crate) keep_sketches: bool,
    pub(crate) stats: TableStats,
}

impl<C: Cell> Table<C> {
    pub(crate) fn new(cap: usize, scale: u8) -> Self {
        Table {
            hasher: DefaultHashBuilder::default(),
            index: HashTable::new(),
            slots: Vec::new(),
            cold: Vec::new(),
            free: Vec::new(),
            live: 0,
            cap,
            scale,
            pending: Vec::new(),
            keep_sketches: false,
            stats: TableStats::default(),
        }
    }

    /// Live series (overflow series excluded).
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Every series: its key and totals.
    pub(crate) fn series(&self) -> impl Iterator<Item = (&C::Key, &C::Totals)> {
        self.slots
            .iter()
            .zip(&self.cold)
            .filter_map(|(s, c)| s.as_ref().map(|s| (&s.key, &c.totals)))
    }

    fn find(&self, hash: u64, key: <C::Key as SeriesKey>::Ref<'_>) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(hash, |&id| {
                slots
                    .get(id as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.key.matches(key))
            })
            .copied()
    }

    fn insert(&mut self, hash: u64, key: C::Key) -> u32 {
        if !key.is_overflow() {
            self.live += 1;
        }
        self.stats.series_created += 1;
        let slot = Slot {
            key,
            hash,
            sec_start: 0,
            last_us: 0,
            sec: C::empty(self.scale),
        };
        let cold = Cold {
            min_start: 0,
            min: C::empty(self.scale),
            totals: C::Totals::default(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                if let Some(s) = self.slots.get_mut(id as usize) {
                    *s = Some(slot);
                }
                if let Some(c) = self.cold.get_mut(id as usize) {
                    *c = cold;
                }
                id
            }
            None => {
                self.slots.push(Some(slot));
                self.cold.push(cold);
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.index.insert_unique(hash, id, |&other| {
            slots
                .get(other as usize)
                .and_then(Option::as_ref)
                .map_or(0, |s| s.hash)
        });
        id
    }

    /// The slot id of `key`, created if needed; past the cap, the group's overflow series.
    fn slot_id(&mut self, key: <C::Key as SeriesKey>::Ref<'_>) -> u32 {
        let hash = self.hasher.hash_one(key);
        if let Some(id) = self.find(hash, key) {
            return id;
        }
        if self.live < self.cap {
            return self.insert(hash, C::Key::from_ref(key));
        }
        self.stats.overflow_records += 1;
        let over = C::Key::overflow_of(key);
        let ohash = self.hasher.hash_one(over.as_key_ref());
        let found = self.find(ohash, over.as_key_ref());
        match found {
            Some(id) => id,
            None => self.insert(ohash, over),
        }
    }

    /// Add one record at time `t_us` to `key`'s open 1 s cell. `closed_until` is the start of the oldest open
    /// 1 s window: earlier records are late and counted in the oldest open window.
    pub(crate) fn observe(
        &mut self,
        key: <C::Key as SeriesKey>::Ref<'_>,
        t_us: u64,
        closed_until: u64,
        update: impl FnOnce(&mut C),
    ) {
        let id = self.slot_id(key) as usize;
        let (Some(Some(slot)), Some(cold)) = (self.slots.get_mut(id), self.cold.get_mut(id)) else {
            return;
        };
        let mut bucket = t_us.max(closed_until);
        bucket -= bucket % SEC_US;
        let mut late = t_us < closed_until;
        if slot.sec.is_empty() {
            slot.sec_start = bucket;
        } else if bucket > slot.sec_start {
            // This series moved on to a later second: its open second is complete.
            roll_second(slot, cold, &mut self.pending, self.keep_sketches);
            slot.sec_start = bucket;
        } else if bucket < slot.sec_start {
            // Older than this series' open second (out of order): count it in the open second.
            late = true;
        }
        self.stats.late_records += u64::from(late);
        slot.last_us = slot.last_us.max(t_us);
        update(&mut slot.sec);
    }

    /// Close the windows that end at or before `until_us` (1 s windows) and `until_us` (1 min windows), and
    /// evict series idle since before `evict_before_us`.
    pub(crate) fn close(&mut self, until_us: u64, evict_before_us: u64) {
        for (maybe, cold) in self.slots.iter_mut().zip(self.cold.iter_mut()) {
            let Some(slot) = maybe else { continue };
            if !slot.sec.is_empty() && slot.sec_start + SEC_US <= until_us {
                roll_second(slot, cold, &mut self.pending, self.keep_sketches);
            }
            if !cold.min.is_empty() && cold.min_start + MIN_US <= until_us {
                close_minute(&slot.key, cold, &mut self.pending, self.keep_sketches);
            }
        }
        self.evict(evict_before_us);
    }

    /// Close every window now.
    pub(crate) fn flush(&mut self) {
        for (maybe, cold) in self.slots.iter_mut().zip(self.cold.iter_mut()) {
            let Some(slot) = maybe else { continue };
            if !slot.sec.is_empty() {
                roll_second(slot, cold, &mut self.pending, self.keep_sketches);
            }
            if !cold.min.is_empty() {
                close_minute(&slot.key, cold, &mut self.pending, self.keep_sketches);
            }
        }
    }

    fn evict(&mut self, before_us: u64) {
        let scale = self.scale;
        for (id, (maybe, cold)) in self.slots.iter_mut().zip(&mut self.cold).enumerate() {
            let idle = maybe
                .as_ref()
                .is_some_and(|s| s.sec.is_empty() && cold.min.is_empty() && s.last_us < before_us);
            if !idle {
                continue;
            }
            let Some(slot) = maybe.take() else { continue };
            let id = id as u32;
            if let Ok(entry) = self.index.find_entry(slot.hash, |&x| x == id) {
                entry.remove();
            }
            if !slot.key.is_overflow() {
                self.live = self.live.saturating_sub(1);
            }
            // Free the cold cell's memory too.
            *cold = Cold {
                min_start: 0,
                min: C::empty(scale),
                totals: C::Totals::default(),
            };
            self.free.push(id);
            self.stats.series_evicted += 1;
        }
    }
}

/// Close `slot`'s 1 s cell: emit its row, fold it into the 1 min cell (closing that first if it belongs to an
/// earlier minute) and into the totals.
type Pending<C> = Vec<(<C as Cell>::Row, Option<LatencySketch>)>;

fn roll_second<C: Cell>(slot: &mut Slot<C>, cold: &mut Cold<C>, out: &mut Pending<C>, keep: bool) {
    let minute = slot.sec_start - slot.sec_start % MIN_US;
    if !cold.min.is_empty() && cold.min_start != minute {
        close_minute(&slot.key, cold, out, keep);
    }
    if cold.min.is_empty() {
        cold.min_start = minute;
    }
    out.push((
        slot.sec.to_row(&slot.key, slot.sec_start, 1),
        keep.then(|| slot.sec.sketch().clone()),
    ));
    cold.min.merge_from(&slot.sec);
    slot.sec.add_second(&mut cold.totals);
    slot.sec.clear();
}

fn close_minute<C: Cell>(key: &C::Key, cold: &mut Cold<C>, out: &mut Pending<C>, keep: bool) {
    out.push((
        cold.min.to_row(key, cold.min_start, 60),
        keep.then(|| cold.min.sketch().clone()),
    ));
    cold.min.close_minute(&mut cold.totals);
    cold.min.clear();
}
