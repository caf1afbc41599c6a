//! A mergeable latency sketch with a bounded relative error (DDSketch with base-2 exponential buckets).
//!
//! # Why our own sketch
//!
//! [`LatencySketch`] is a DDSketch (Masson, Rim, Lee, VLDB 2019) whose bucket base is `γ = 2^(2^-scale)`, which
//! makes its buckets exactly the buckets of an OpenTelemetry *base-2 exponential histogram* at that scale. The
//! well-kept crates were considered: `sketches-ddsketch` counts in `u64`, works on `f64` and does not expose its
//! bins (so it cannot be exported losslessly as an OTLP exponential histogram); `hdrhistogram` has a bounded
//! *absolute* precision per magnitude and allocates its full value range up front (tens of KB per histogram at
//! 3 significant digits over 1 µs..1 h), which is too much per live series per window. The sketch here is
//! about 150 lines, stores `u32` counts over only the range it has seen, and merges by adding counts.
//!
//! # Accuracy guarantee
//!
//! Values are non-negative integers (microseconds). Zero has its own counter. A value `v >= 1` falls in bucket
//! `i = ceil(log2(v) * 2^scale) - 1`, the interval `(γ^i, γ^(i+1)]`. A quantile is answered with the point of
//! its bucket that minimises the relative error, `2 γ^(i+1) / (γ + 1)`, clamped to the exact `[min, max]`. For
//! the rank-`⌊q (n-1)⌋` value `x` (0-based, ascending) the estimate `e` satisfies
//! `|e - x| <= α x` with `α = (γ - 1) / (γ + 1)` ([`LatencySketch::relative_accuracy`]): about 1.08 % at the
//! default scale 5, 0.54 % at scale 6. (`log2` is computed in `f64`; a value within one ulp of a bucket boundary
//! may land in the neighbouring bucket, which adds at most ~1e-15 to the relative error.) Integer outputs
//! ([`LatencySketch::quantile_us`]) are rounded, adding at most 0.5 µs.
//!
//! # Size
//!
//! Counts are a dense `Vec<u32>` covering the smallest to the largest bucket seen. Over the whole `u64` range
//! there are `64 * 2^scale + 1` buckets, so a sketch is bounded by construction (8.2 KB at scale 5) without
//! collapsing buckets; a series whose latencies span 100 µs..100 ms uses ~320 buckets (1.3 KB) at scale 5.
//! Counts saturate at `u32::MAX` per bucket per window.
//!
//! # Merging
//!
//! Merging adds counts bucket by bucket: the merge of the sketches of two sets of values is exactly the sketch
//! of their union (same buckets, count, sum, min and max), so 1 s windows merge into 1 min windows losslessly.

use serde::{Deserialize, Serialize};

/// The default scale: `γ = 2^(1/32)`, relative accuracy ≈ 1.08 %.
pub const DEFAULT_SCALE: u8 = 5;
/// The largest supported scale (`γ = 2^(1/64)`, ≈ 0.54 %); larger scales would make sketches too big per series.
pub const MAX_SCALE: u8 = 6;

/// Mantissa bits of the bucket boundaries `2^(k/2^scale)`, `k = 1..2^scale`, per scale (computed once).
fn boundaries(scale: u8) -> &'static [u64] {
    static TABLES: std::sync::OnceLock<Vec<Vec<u64>>> = std::sync::OnceLock::new();
    let tables = TABLES.get_or_init(|| {
        (0..=MAX_SCALE)
            .map(|s| {
                let n = 1u32 << s;
                (1..n)
                    .map(|k| (f64::from(k) / f64::from(n)).exp2().to_bits() & ((1u64 << 52) - 1))
                    .collect()
            })
            .collect()
    });
    tables.get(usize::from(scale)).map_or(&[], Vec::as_slice)
}

/// Merging sketches of different scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot merge a sketch of scale {other} into a sketch of scale {this}")]
pub struct ScaleMismatch {
    /// The receiving sketch's scale.
    pub this: u8,
    /// The merged sketch's scale.
    pub other: u8,
}

/// A DDSketch over non-negative integer values (µs) with base-2 exponential buckets. See the module docs for
/// the accuracy and size guarantees.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencySketch {
    scale: u8,
    /// Bucket index of `counts[0]`.
    offset: i32,
    counts: Vec<u32>,
    zero: u64,
    count: u64,
    sum: u64,
    min: u64,
    max: u64,
}

impl Default for LatencySketch {
    fn default() -> Self {
        LatencySketch::new(DEFAULT_SCALE)
    }
}

impl PartialEq for LatencySketch {
    /// Equal when they hold the same buckets and statistics (the dense layout may differ).
    fn eq(&self, other: &Self) -> bool {
        self.scale == other.scale
            && self.zero == other.zero
            && self.count == other.count
            && self.sum == other.sum
            && self.min == other.min
            && self.max == other.max
            && self.buckets().eq(other.buckets())
    }
}

/// The comparison above compares integers only, so it is an equivalence.
impl Eq for LatencySketch {}

impl LatencySketch {
    /// An empty sketch at `scale` (clamped to [`MAX_SCALE`]).
    pub fn new(scale: u8) -> LatencySketch {
        LatencySketch {
            scale: scale.min(MAX_SCALE),
            offset: 0,
            counts: Vec::new(),
            zero: 0,
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// A sketch rebuilt from its parts, as [`LatencySketch::buckets`] and the statistics accessors give them
    /// (for decoders of serialised sketches; `min` and `max` are ignored when `count` is 0).
    ///
    /// Returns `None` when the parts are inconsistent, so that a rebuilt sketch keeps every invariant the
    /// methods rely on: `scale` over [`MAX_SCALE`], a bucket index outside the range values `1..=u64::MAX` can
    /// reach (`-1..=64·2^scale`) or not strictly ascending, a zero bucket count, `count` smaller than `zero`
    /// plus the bucket counts, an empty sketch with values, or `min > max`.
    pub fn from_parts(
        scale: u8,
        zero: u64,
        count: u64,
        sum: u64,
        min: u64,
        max: u64,
        buckets: &[(i32, u32)],
    ) -> Option<LatencySketch> {
        if scale > MAX_SCALE {
            return None;
        }
        let top = 64i32 << scale;
        let mut total = zero;
        let mut prev: Option<i32> = None;
        for &(i, c) in buckets {
            if i < -1 || i > top || c == 0 || prev.is_some_and(|p| i <= p) {
                return None;
            }
            prev = Some(i);
            total = total.checked_add(u64::from(c))?;
        }
        let mut s = LatencySketch::new(scale);
        if count == 0 {
            return (total == 0).then_some(s);
        }
        if total > count || min > max {
            return None;
        }
        if let (Some(&(first, _)), Some(&(last, _))) = (buckets.first(), buckets.last()) {
            s.offset = first;
            s.counts = vec![0; (last - first) as usize + 1];
            for &(i, c) in buckets {
                if let Some(slot) = s.counts.get_mut((i - first) as usize) {
                    *slot = c;
                }
            }
        }
        s.zero = zero;
        s.count = count;
        s.sum = sum;
        s.min = min;
        s.max = max;
        Some(s)
    }

    /// The scale (`γ = 2^(2^-scale)`).
    pub fn scale(&self) -> u8 {
        self.scale
    }

    /// The bucket base `γ`.
    pub fn gamma(&self) -> f64 {
        (-f64::from(self.scale)).exp2().exp2()
    }

    /// The guaranteed relative accuracy `α = (γ - 1) / (γ + 1)` of [`LatencySketch::quantile`].
    pub fn relative_accuracy(&self) -> f64 {
        let g = self.gamma();
        (g - 1.0) / (g + 1.0)
    }

    /// The bucket index of `v >= 1`.
    #[inline]
    fn index(&self, v: u64) -> i32 {
        // v = m · 2^e with m in [1, 2) (exact for v < 2^53). Bucket e·2^s + k is (2^e·B_k, 2^e·B_(k+1)] with
        // B_k = 2^(k/2^s): an exact power of two is the top of bucket e·2^s − 1; otherwise k is the number of
        // boundaries B_1..B_(2^s−1) below m, compared as mantissa bits (no log2 on the hot path).
        let bits = (v as f64).to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i32 - 1023;
        let mantissa = bits & ((1u64 << 52) - 1);
        let base = exp << self.scale;
        if mantissa == 0 {
            return base - 1;
        }
        let table = boundaries(self.scale);
        base + table.partition_point(|&b| b < mantissa) as i32
    }

    /// The bucket index by the definition (`ceil(log2(v)·2^s) − 1`), for tests of [`LatencySketch::index`].
    #[cfg(test)]
    fn index_by_log2(&self, v: u64) -> i32 {
        let scaled = (v as f64).log2() * f64::from(1u32 << self.scale);
        scaled.ceil() as i32 - 1
    }

    /// Record one value.
    #[inline]
    pub fn add(&mut self, v: u64) {
        self.count += 1;
        self.sum = self.sum.saturating_add(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if v == 0 {
            self.zero += 1;
            return;
        }
        let idx = self.index(v);
        self.bump(idx, 1);
    }

    #[inline]
    fn bump(&mut self, idx: i32, n: u32) {
        if self.counts.is_empty() {
            self.offset = idx;
            self.counts.push(n);
            return;
        }
        if idx < self.offset {
            let grow = (self.offset - idx) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = idx;
        }
        let pos = (idx - self.offset) as usize;
        if pos >= self.counts.len() {
            self.counts.resize(pos + 1, 0);
        }
        if let Some(c) = self.counts.get_mut(pos) {
            *c = c.saturating_add(n);
        }
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the values recorded (saturating).
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Smallest value, `None` when empty.
    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest value, `None` when empty.
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Count of zero values.
    pub fn zero_count(&self) -> u64 {
        self.zero
    }

    /// Non-empty buckets in ascending order: `(index, count)`; bucket `i` is `(γ^i, γ^(i+1)]`.
    pub fn buckets(&self) -> impl Iterator<Item = (i32, u32)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (self.offset + i as i32, *c))
    }

    /// The dense bucket counts starting at bucket [`LatencySketch::offset`] (zeros included), as OTLP's
    /// exponential histogram wants them.
    pub fn dense_counts(&self) -> &[u32] {
        &self.counts
    }

    /// The index of the first entry of [`LatencySketch::dense_counts`].
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// Forget every value but keep the allocated buckets (no allocation in the next window).
    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.zero = 0;
        self.count = 0;
        self.sum = 0;
        self.min = u64::MAX;
        self.max = 0;
    }

    /// Add `other`'s values to this sketch: afterwards it is exactly the sketch of the union.
    ///
    /// # Errors
    /// [`ScaleMismatch`] when the scales differ (nothing is merged).
    pub fn merge(&mut self, other: &LatencySketch) -> Result<(), ScaleMismatch> {
        if other.scale != self.scale {
            return Err(ScaleMismatch {
                this: self.scale,
                other: other.scale,
            });
        }
        if other.count == 0 {
            return Ok(());
        }
        // Grow once to cover other's non-empty range, then add.
        let mut first = None;
        let mut last = None;
        for (i, _) in other.buckets() {
            first.get_or_insert(i);
            last = Some(i);
        }
        if let (Some(f), Some(l)) = (first, last) {
            self.bump(f, 0);
            self.bump(l, 0);
            for (i, c) in other.buckets() {
                self.bump(i, c);
            }
        }
        self.zero += other.zero;
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        Ok(())
    }

    /// The estimate of the `q`-quantile (`0 <= q <= 1`, clamped): the value of rank `⌊q (n-1)⌋` within the
    /// relative accuracy. `None` when empty. `q = 0` and `q = 1` give the exact min and max.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        let (min, max) = (self.min as f64, self.max as f64);
        if q <= 0.0 {
            return Some(min);
        }
        if q >= 1.0 {
            return Some(max);
        }
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        if rank < self.zero {
            return Some(0.0);
        }
        let mut seen = self.zero;
        let gamma = self.gamma();
        for (i, c) in self.buckets() {
            seen += u64::from(c);
            if seen > rank {
                let est = 2.0 * gamma.powi(i + 1) / (gamma + 1.0);
                return Some(est.clamp(min, max));
            }
        }
        Some(max)
    }

    /// [`LatencySketch::quantile`] rounded to an integer (µs).
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        self.quantile(q).map(|v| v.round() as u64)
    }

    /// Heap bytes held by the bucket array.
    pub fn heap_bytes(&self) -> usize {
        self.counts.capacity() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_parts_rebuilds_and_rejects() {
        let mut s = LatencySketch::new(5);
        for v in [0, 1, 7, 250, 250, 9_000, u64::MAX] {
            s.add(v);
        }
        let b: Vec<_> = s.buckets().collect();
        let r = LatencySketch::from_parts(5, s.zero_count(), s.count(), s.sum(), 0, u64::MAX, &b)
            .unwrap();
        assert_eq!(r, s);
        assert_eq!(r.quantile_us(0.5), s.quantile_us(0.5));
        assert_eq!(
            LatencySketch::from_parts(5, 0, 0, 0, 9, 1, &[]).unwrap(),
            LatencySketch::new(5)
        );
        assert!(LatencySketch::from_parts(7, 0, 1, 1, 1, 1, &[(0, 1)]).is_none());
        assert!(LatencySketch::from_parts(5, 0, 1, 1, 2, 1, &[(0, 1)]).is_none());
        assert!(LatencySketch::from_parts(5, 0, 1, 1, 1, 1, &[(-2, 1)]).is_none());
        assert!(LatencySketch::from_parts(5, 0, 1, 1, 1, 1, &[((64 << 5) + 1, 1)]).is_none());
        assert!(LatencySketch::from_parts(5, 0, 2, 1, 1, 1, &[(3, 1), (3, 1)]).is_none());
        assert!(LatencySketch::from_parts(5, 0, 1, 1, 1, 1, &[(3, 1), (4, 1)]).is_none());
        assert!(LatencySketch::from_parts(5, 0, 0, 0, 0, 0, &[(3, 1)]).is_none());
        assert!(LatencySketch::from_parts(5, 0, 1, 1, 1, 1, &[(3, 0)]).is_none());
    }

    #[test]
    fn powers_of_two_sit_on_upper_bucket_bounds() {
        let s = LatencySketch::new(5);
        assert_eq!(s.index(1), -1);
        assert_eq!(s.index(2), 31);
        assert_eq!(s.index(1024), 10 * 32 - 1);
        assert_eq!(s.index(u64::MAX), 64 * 32 - 1);
    }

    #[test]
    fn table_index_equals_the_log2_definition() {
        for scale in 0..=MAX_SCALE {
            let s = LatencySketch::new(scale);
            let mut x = 0x2545_F491_4F6C_DD1Du64;
            let samples = (1..200_000u64).chain((0..200_000).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> (x % 40)).max(1)
            }));
            for v in samples {
                assert_eq!(s.index(v), s.index_by_log2(v), "scale {scale} v {v}");
            }
        }
    }

    #[test]
    fn relative_accuracy_of_default_scale() {
        let s = LatencySketch::default();
        assert!((s.relative_accuracy() - 0.010_830).abs() < 1e-5);
    }

    #[test]
    fn empty_and_extremes() {
        let mut s = LatencySketch::default();
        assert_eq!(s.quantile(0.5), None);
        s.add(0);
        s.add(7);
        s.add(1_000_000);
        assert_eq!(s.quantile(0.0), Some(0.0));
        assert_eq!(s.quantile(1.0), Some(1_000_000.0));
        assert_eq!(s.quantile_us(0.5), Some(7));
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum(), 1_000_007);
    }

    #[test]
    fn clear_keeps_capacity() {
        let mut s = LatencySketch::default();
        for v in [10, 100, 1000] {
            s.add(v);
        }
        let cap = s.heap_bytes();
        s.clear();
        assert!(s.is_empty());
        assert_eq!(s.heap_bytes(), cap);
        s.add(100);
        assert_eq!(s.heap_bytes(), cap);
        assert_eq!(s.quantile_us(0.5), Some(100));
    }

    #[test]
    fn scale_mismatch_is_an_error() {
        let mut a = LatencySketch::new(5);
        let b = LatencySketch::new(4);
        assert_eq!(a.merge(&b), Err(ScaleMismatch { this: 5, other: 4 }));
    }
}
