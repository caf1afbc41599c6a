//! L4 series: one per `(l4_protocol, server ip:port)`, fed by ended flows ([`FlowRecord`]), and the [`L4Row`].

use crate::red::OVERFLOW;
use crate::sketch::LatencySketch;
use crate::table::{Cell, SeriesKey};
use fathom_model::{CloseType, FlowRecord, L4Protocol};
use serde::{Deserialize, Serialize};

/// One L4 server endpoint per window (`--json metrics` prints these only when asked; see `docs/metrics.md`).
///
/// A [`FlowRecord`] arrives when its flow ends, so every count of a flow lands in the window containing its
/// `end_time_us`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct L4Row {
    /// Window start, µs since the epoch.
    pub window_start_us: u64,
    /// Window length in seconds: 1 or 60.
    pub window_s: u32,
    /// `tcp` or `udp`.
    pub l4_protocol: L4Protocol,
    /// Server `ip:port` (`[v6]:port`), or `__overflow__`.
    pub server: String,
    /// Flows that ended (flow records received).
    pub flow: u64,
    /// Flows whose opening was seen: TCP flows with a measured handshake, and every UDP flow.
    pub new_connection: u64,
    /// Flows closed by FIN.
    pub close_fin: u64,
    /// Flows closed by RST.
    pub close_rst: u64,
    /// Flows that timed out or were evicted from the flow table.
    pub close_timeout: u64,
    /// Retransmitted segments client → server.
    pub retrans_tx: u64,
    /// Retransmitted segments server → client.
    pub retrans_rx: u64,
    /// Packets client → server.
    pub packet_tx: u64,
    /// Packets server → client.
    pub packet_rx: u64,
    /// Frame bytes client → server.
    pub byte_tx: u64,
    /// Frame bytes server → client.
    pub byte_rx: u64,
    /// Bytes never seen (gaps) client → server.
    pub lost_byte_tx: u64,
    /// Bytes never seen (gaps) server → client.
    pub lost_byte_rx: u64,
    /// Median handshake RTT (µs); null without handshakes.
    pub rtt_p50_us: Option<u64>,
    /// 90th percentile handshake RTT (µs).
    pub rtt_p90_us: Option<u64>,
    /// 99th percentile handshake RTT (µs).
    pub rtt_p99_us: Option<u64>,
    /// Largest handshake RTT (µs), exact.
    pub rtt_max_us: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct L4Key {
    pub(crate) l4: L4Protocol,
    /// `None` for the overflow series.
    pub(crate) addr: Option<(Box<str>, u16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct L4KeyRef<'a> {
    pub(crate) l4: L4Protocol,
    pub(crate) addr: Option<(&'a str, u16)>,
}

impl<'a> L4KeyRef<'a> {
    pub(crate) fn of(f: &'a FlowRecord) -> Self {
        L4KeyRef {
            l4: f.l4_protocol,
            addr: Some((&f.ip_dst, f.port_dst)),
        }
    }
}

impl L4Key {
    pub(crate) fn render_server(&self) -> String {
        match &self.addr {
            Some((ip, port)) if ip.contains(':') => format!("[{ip}]:{port}"),
            Some((ip, port)) => format!("{ip}:{port}"),
            None => OVERFLOW.to_string(),
        }
    }
}

impl SeriesKey for L4Key {
    type Ref<'a> = L4KeyRef<'a>;

    fn as_key_ref(&self) -> L4KeyRef<'_> {
        L4KeyRef {
            l4: self.l4,
            addr: self.addr.as_ref().map(|(ip, p)| (&**ip, *p)),
        }
    }

    fn from_ref(r: L4KeyRef<'_>) -> Self {
        L4Key {
            l4: r.l4,
            addr: r.addr.map(|(ip, p)| (ip.into(), p)),
        }
    }

    fn overflow_of(r: L4KeyRef<'_>) -> Self {
        L4Key {
            l4: r.l4,
            addr: None,
        }
    }

    fn matches(&self, r: Self::Ref<'_>) -> bool {
        self.as_key_ref() == r
    }

    fn is_overflow(&self) -> bool {
        self.addr.is_none()
    }
}

/// Counters of an L4 window, also used as cumulative totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L4Counts {
    /// Flows ended.
    pub flow: u64,
    /// Flows whose opening was seen.
    pub new_connection: u64,
    /// FIN closes.
    pub close_fin: u64,
    /// RST closes.
    pub close_rst: u64,
    /// Timeouts and evictions.
    pub close_timeout: u64,
    /// Retransmissions client → server.
    pub retrans_tx: u64,
    /// Retransmissions server → client.
    pub retrans_rx: u64,
    /// Packets client → server.
    pub packet_tx: u64,
    /// Packets server → client.
    pub packet_rx: u64,
    /// Bytes client → server.
    pub byte_tx: u64,
    /// Bytes server → client.
    pub byte_rx: u64,
    /// Lost bytes client → server.
    pub lost_byte_tx: u64,
    /// Lost bytes server → client.
    pub lost_byte_rx: u64,
}

impl L4Counts {
    fn add(&mut self, o: &L4Counts) {
        self.flow += o.flow;
        self.new_connection += o.new_connection;
        self.close_fin += o.close_fin;
        self.close_rst += o.close_rst;
        self.close_timeout += o.close_timeout;
        self.retrans_tx = self.retrans_tx.saturating_add(o.retrans_tx);
        self.retrans_rx = self.retrans_rx.saturating_add(o.retrans_rx);
        self.packet_tx = self.packet_tx.saturating_add(o.packet_tx);
        self.packet_rx = self.packet_rx.saturating_add(o.packet_rx);
        self.byte_tx = self.byte_tx.saturating_add(o.byte_tx);
        self.byte_rx = self.byte_rx.saturating_add(o.byte_rx);
        self.lost_byte_tx = self.lost_byte_tx.saturating_add(o.lost_byte_tx);
        self.lost_byte_rx = self.lost_byte_rx.saturating_add(o.lost_byte_rx);
    }
}

/// Cumulative totals of an L4 series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L4Totals {
    /// Counters since the series was created.
    pub counts: L4Counts,
    /// Handshakes measured.
    pub rtt_count: u64,
    /// Sum of handshake RTTs (µs).
    pub rtt_sum_us: u64,
    /// p50, p90, p99 and max handshake RTT (µs) of the last closed 1 min window with handshakes.
    pub last_minute_rtt_us: Option<[u64; 4]>,
}

#[derive(Debug, Clone)]
pub(crate) struct L4Cell {
    counts: L4Counts,
    rtt: LatencySketch,
}

impl L4Cell {
    #[inline]
    pub(crate) fn add(&mut self, f: &FlowRecord) {
        let c = &mut self.counts;
        c.flow += 1;
        let opened = match f.l4_protocol {
            L4Protocol::Tcp => f.rtt_us.is_some(),
            L4Protocol::Udp => true,
        };
        c.new_connection += u64::from(opened);
        match f.close_type {
            CloseType::Fin => c.close_fin += 1,
            CloseType::Rst => c.close_rst += 1,
            CloseType::Timeout | CloseType::Evicted => c.close_timeout += 1,
            CloseType::OpenAtEnd => {}
        }
        c.add(&L4Counts {
            retrans_tx: f.retrans_tx,
            retrans_rx: f.retrans_rx,
            packet_tx: f.packet_tx,
            packet_rx: f.packet_rx,
            byte_tx: f.byte_tx,
            byte_rx: f.byte_rx,
            lost_byte_tx: f.lost_byte_tx,
            lost_byte_rx: f.lost_byte_rx,
            ..L4Counts::default()
        });
        if let Some(rtt) = f.rtt_us {
            self.rtt.add(rtt);
        }
    }
}

impl Cell for L4Cell {
    type Key = L4Key;
    type Row = L4Row;
    type Totals = L4Totals;

    fn empty(scale: u8) -> Self {
        L4Cell {
            counts: L4Counts::default(),
            rtt: LatencySketch::new(scale),
        }
    }

    fn is_empty(&self) -> bool {
        self.counts.flow == 0
    }

    fn merge_from(&mut self, o: &Self) {
        self.counts.add(&o.counts);
        let _ = self.rtt.merge(&o.rtt);
    }

    fn clear(&mut self) {
        self.counts = L4Counts::default();
        self.rtt.clear();
    }

    fn to_row(&self, key: &L4Key, window_start_us: u64, window_s: u32) -> L4Row {
        let c = &self.counts;
        L4Row {
            window_start_us,
            window_s,
            l4_protocol: key.l4,
            server: key.render_server(),
            flow: c.flow,
            new_connection: c.new_connection,
            close_fin: c.close_fin,
            close_rst: c.close_rst,
            close_timeout: c.close_timeout,
            retrans_tx: c.retrans_tx,
            retrans_rx: c.retrans_rx,
            packet_tx: c.packet_tx,
            packet_rx: c.packet_rx,
            byte_tx: c.byte_tx,
            byte_rx: c.byte_rx,
            lost_byte_tx: c.lost_byte_tx,
            lost_byte_rx: c.lost_byte_rx,
            rtt_p50_us: self.rtt.quantile_us(0.5),
            rtt_p90_us: self.rtt.quantile_us(0.9),
            rtt_p99_us: self.rtt.quantile_us(0.99),
            rtt_max_us: self.rtt.max(),
        }
    }

    fn add_second(&self, t: &mut L4Totals) {
        t.counts.add(&self.counts);
        t.rtt_count += self.rtt.count();
        t.rtt_sum_us = t.rtt_sum_us.saturating_add(self.rtt.sum());
    }

    fn close_minute(&self, t: &mut L4Totals) {
        if let (Some(a), Some(b), Some(c), Some(d)) = (
            self.rtt.quantile_us(0.5),
            self.rtt.quantile_us(0.9),
            self.rtt.quantile_us(0.99),
            self.rtt.max(),
        ) {
            t.last_minute_rtt_us = Some([a, b, c, d]);
        }
    }

    fn sketch(&self) -> &LatencySketch {
        &self.rtt
    }
}
