//! Bounded IPv4 fragment reassembly.

use crate::counters::FragmentCounters;
use crate::decode::FragInfo;
use crate::Config;
use hashbrown::HashMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    id: u16,
}

#[derive(Debug)]
struct Datagram {
    first_us: u64,
    frags: Vec<(usize, Vec<u8>)>,
    bytes: usize,
    total: Option<usize>,
}

/// Pending fragmented datagrams, bounded by [`Config`] caps.
#[derive(Debug, Default)]
pub(crate) struct Defrag {
    pending: HashMap<FragKey, Datagram>,
}

impl Defrag {
    /// Add a fragment. Returns the reassembled L4 bytes when the datagram completes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add(
        &mut self,
        cfg: &Config,
        stats: &mut FragmentCounters,
        now_us: u64,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        info: FragInfo,
        data: &[u8],
        wire_len: usize,
    ) -> Option<Vec<u8>> {
        stats.received += 1;
        let key = FragKey {
            src,
            dst,
            proto,
            id: info.id,
        };
        let end = info.offset + data.len();
        if data.len() != wire_len
            || (info.more && !data.len().is_multiple_of(8))
            || end > cfg.max_frag_bytes
        {
            // Cut by the snap length, or impossible geometry: the datagram can never be rebuilt correctly.
            stats.dropped_invalid += 1;
            if let Some(d) = self.pending.remove(&key) {
                stats.dropped_invalid += d.frags.len() as u64;
            }
            return None;
        }
        if !self.pending.contains_key(&key) && self.pending.len() >= cfg.max_frag_datagrams {
            stats.dropped_cap += 1;
            return None;
        }
        let dg = self.pending.entry(key).or_insert_with(|| Datagram {
            first_us: now_us,
            frags: Vec::new(),
            bytes: 0,
            total: None,
        });
        if dg.frags.len() >= cfg.max_frags_per_datagram
            || dg.bytes + data.len() > cfg.max_frag_bytes
        {
            stats.dropped_cap += 1 + dg.frags.len() as u64;
            self.pending.remove(&key);
            return None;
        }
        if !info.more {
            if dg.total.is_some_and(|t| t != end) {
                stats.dropped_invalid += 1 + dg.frags.len() as u64;
                self.pending.remove(&key);
                return None;
            }
            dg.total = Some(end);
        }
        dg.bytes += data.len();
        let at = dg.frags.partition_point(|(o, _)| *o <= info.offset);
        dg.frags.insert(at, (info.offset, data.to_vec()));
        let total = dg.total?;
        // Complete when the fragments cover [0, total) without a hole.
        let mut covered = 0usize;
        for (o, d) in &dg.frags {
            if *o > covered {
                return None;
            }
            covered = covered.max(o + d.len());
        }
        if covered < total {
            return None;
        }
        let dg = self.pending.remove(&key)?;
        let mut out = vec![0u8; total];
        for (o, d) in &dg.frags {
            let n = d.len().min(total.saturating_sub(*o));
            if let (Some(dst), Some(src)) = (out.get_mut(*o..o + n), d.get(..n)) {
                dst.copy_from_slice(src);
            }
        }
        stats.reassembled += 1;
        Some(out)
    }

    /// Drop datagrams older than the timeout.
    pub(crate) fn sweep(&mut self, cfg: &Config, stats: &mut FragmentCounters, now_us: u64) {
        if self.pending.is_empty() {
            return;
        }
        self.pending.retain(|_, d| {
            let keep = d.first_us.saturating_add(cfg.frag_timeout_us) > now_us;
            if !keep {
                stats.dropped_timeout += d.frags.len() as u64;
            }
            keep
        });
    }

    /// Datagrams pending.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}
