//! pcap and pcapng files (optionally gzip-compressed), streamed in constant memory.
//!
//! The reader keeps one read buffer of [`FileSource::DEFAULT_CHUNK_SIZE`] bytes (or the size of the largest record,
//! up to [`FileSource::MAX_RECORD_LEN`]) and hands out packets as [`Bytes`] slices of it, so packet data is never
//! copied. Framing is checked before parsing: a record that does not fit in the rest of the input is reported as
//! [`CaptureError::Truncated`] at its offset, an impossible length or block as [`CaptureError::Malformed`].

use crate::source::{LinkType, Packet, PacketSource};
use crate::CaptureError;
use bytes::Bytes;
use pcap_parser::pcapng::Block;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const BOM: u32 = 0x1A2B_3C4D;

#[derive(Debug, Clone)]
struct Iface {
    link: LinkType,
    /// Timestamp units per second.
    res: u64,
    /// Seconds added to every timestamp.
    offset_s: i64,
}

#[derive(Debug, Clone)]
enum Format {
    Pcap {
        be: bool,
        nanos: bool,
        modified: bool,
        link: LinkType,
    },
    PcapNg {
        be: bool,
        ifaces: Vec<Iface>,
        last_ts_us: u64,
    },
}

/// A pcap or pcapng file (plain or gzip), read sequentially.
pub struct FileSource {
    reader: Box<dyn Read + Send>,
    buf: Bytes,
    pos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    eof: bool,
    chunk_size: usize,
    format: Format,
    gzip: bool,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("offset", &(self.base + self.pos as u64))
            .field("format", &self.format)
            .field("gzip", &self.gzip)
            .finish()
    }
}

fn io_err(offset: u64) -> impl FnOnce(std::io::Error) -> CaptureError {
    move |source| CaptureError::Io { offset, source }
}

impl FileSource {
    /// Read buffer size (reached after a few reads; the first reads are smaller so that small inputs stay cheap).
    pub const DEFAULT_CHUNK_SIZE: usize = 1 << 20;
    /// First read buffer size; it doubles per refill up to [`FileSource::DEFAULT_CHUNK_SIZE`].
    pub const INITIAL_CHUNK_SIZE: usize = 64 << 10;
    /// Largest record (pcap record or pcapng block) accepted; larger ones are malformed.
    pub const MAX_RECORD_LEN: usize = 64 << 20;

    /// Open a capture file. Gzip is detected by its magic bytes, not by the file name.
    ///
    /// # Errors
    /// When the file cannot be opened or does not start with a pcap/pcapng header.
    pub fn open(path: impl AsRef<Path>) -> Result<FileSource, CaptureError> {
        let file = File::open(path.as_ref()).map_err(io_err(0))?;
        FileSource::from_reader(file)
    }

    /// Read a capture from any reader (plain or gzip).
    ///
    /// # Errors
    /// When the input does not start with a pcap/pcapng header.
    pub fn from_reader<R: Read + Send + 'static>(reader: R) -> Result<FileSource, CaptureError> {
        let mut br = BufReader::with_capacity(64 * 1024, reader);
        let head = br.fill_buf().map_err(io_err(0))?;
        let gzip = head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b;
        let reader: Box<dyn Read + Send> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(br))
        } else {
            Box::new(br)
        };
        let mut src = FileSource {
            reader,
            buf: Bytes::new(),
            pos: 0,
            base: 0,
            eof: false,
            chunk_size: Self::INITIAL_CHUNK_SIZE,
            format: Format::Pcap {
                be: false,
                nanos: false,
                modified: false,
                link: LinkType::ETHERNET,
            },
            gzip,
        };
        src.read_header()?;
        Ok(src)
    }

    /// Whether the input is gzip-compressed (offsets in errors are then offsets in the decompressed stream).
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// Whether the input is pcapng.
    pub fn is_pcapng(&self) -> bool {
        matches!(self.format, Format::PcapNg { .. })
    }

    /// Stream offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn avail(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Make at least `need` bytes available at `pos`. Returns false at end of input with fewer.
    fn ensure(&mut self, need: usize) -> Result<bool, CaptureError> {
        if self.avail() >= need {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        let cap = need.max(self.chunk_size);
        self.chunk_size = (self.chunk_size * 2).min(Self::DEFAULT_CHUNK_SIZE);
        let mut v = Vec::with_capacity(cap);
        v.extend_from_slice(&self.buf[self.pos..]);
        self.base += self.pos as u64;
        self.pos = 0;
        // `read_to_end` on a `Take` fills spare capacity without zeroing it first.
        while v.len() < cap {
            let want = (cap - v.len()) as u64;
            match (&mut self.reader).take(want).read_to_end(&mut v) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let offset = self.base + v.len() as u64;
                    self.buf = Bytes::from(v);
                    return Err(CaptureError::Io { offset, source: e });
                }
            }
        }
        self.buf = Bytes::from(v);
        Ok(self.avail() >= need)
    }

    fn truncated(&self, need: usize) -> CaptureError {
        CaptureError::Truncated {
            offset: self.offset(),
            have: self.avail() as u64,
            need: need as u64,
        }
    }

    fn malformed(&self, reason: &'static str) -> CaptureError {
        CaptureError::Malformed {
            offset: self.offset(),
            reason,
        }
    }

    fn read_header(&mut self) -> Result<(), CaptureError> {
        if !self.ensure(4)? {
            if self.avail() == 0 {
                return Err(CaptureError::NotACapture { magic: 0 });
            }
            return Err(self.truncated(24));
        }
        let magic = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if magic == PCAPNG_SHB {
            self.format = Format::PcapNg {
                be: false,
                ifaces: Vec::new(),
                last_ts_us: 0,
            };
            return Ok(()); // the SHB is read as the first block
        }
        if !self.ensure(24)? {
            return Err(self.truncated(24));
        }
        match pcap_parser::parse_pcap_header(&self.buf[self.pos..self.pos + 24]) {
            Ok((_, h)) => {
                self.format = Format::Pcap {
                    be: h.is_bigendian(),
                    nanos: h.is_nanosecond_precision(),
                    modified: h.is_modified_format(),
                    link: LinkType(h.network.0 as u32),
                };
                self.pos += 24;
                Ok(())
            }
            Err(_) => Err(CaptureError::NotACapture { magic }),
        }
    }

    fn next_pcap(
        &mut self,
        be: bool,
        nanos: bool,
        modified: bool,
        link: LinkType,
    ) -> Result<Option<Packet>, CaptureError> {
        let hdr = if modified { 24 } else { 16 };
        if !self.ensure(hdr)? {
            if self.avail() == 0 {
                return Ok(None);
            }
            return Err(self.truncated(hdr));
        }
        let b = &self.buf[self.pos..];
        let rd = |o: usize| {
            let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
            if be {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        let caplen = rd(8) as usize;
        if caplen > Self::MAX_RECORD_LEN {
            return Err(self.malformed("record length larger than 64 MiB"));
        }
        let total = hdr + caplen;
        if !self.ensure(total)? {
            return Err(self.truncated(total));
        }
        let rec = &self.buf[self.pos..self.pos + total];
        let parsed = if modified {
            pcap_parser::parse_pcap_frame_modified(rec)
        } else if be {
            pcap_parser::parse_pcap_frame_be(rec)
        } else {
            pcap_parser::parse_pcap_frame(rec)
        };
        let Ok((_, block)) = parsed else {
            return Err(self.malformed("unparsable pcap record"));
        };
        let frac = if nanos {
            u64::from(block.ts_usec) / 1000
        } else {
            u64::from(block.ts_usec)
        };
        let ts_us = u64::from(block.ts_sec) * 1_000_000 + frac;
        let orig_len = block.origlen.max(block.caplen);
        let data = self.buf.slice(self.pos + hdr..self.pos + total);
        self.pos += total;
        Ok(Some(Packet {
            ts_us,
            link_type: link,
            orig_len,
            data,
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Packet>, CaptureError> {
        loop {
            if !self.ensure(12)? {
                if self.avail() == 0 {
                    return Ok(None);
                }
                return Err(self.truncated(12));
            }
            let b = &self.buf[self.pos..];
            let raw_type = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let be = if raw_type == PCAPNG_SHB {
                // The byte-order magic decides the endianness of this section.
                let bom = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
                if bom == BOM {
                    false
                } else if bom == BOM.swap_bytes() {
                    true
                } else {
                    return Err(self.malformed("bad pcapng byte-order magic"));
                }
            } else {
                match &self.format {
                    Format::PcapNg { be, .. } => *be,
                    Format::Pcap { .. } => false,
                }
            };
            let len_raw = [b[4], b[5], b[6], b[7]];
            let len = if be {
                u32::from_be_bytes(len_raw)
            } else {
                u32::from_le_bytes(len_raw)
            } as usize;
            if len < 12 || !len.is_multiple_of(4) {
                return Err(self.malformed("bad pcapng block length"));
            }
            if len > Self::MAX_RECORD_LEN {
                return Err(self.malformed("pcapng block larger than 64 MiB"));
            }
            if !self.ensure(len)? {
                return Err(self.truncated(len));
            }
            let start = self.pos;
            let blk = &self.buf[start..start + len];
            let parsed = if be {
                pcap_parser::pcapng::parse_block_be(blk)
            } else {
                pcap_parser::pcapng::parse_block_le(blk)
            };
            let block = match parsed {
                Ok((_, block)) => block,
                Err(_) => return Err(self.malformed("unparsable pcapng block")),
            };
            let Format::PcapNg {
                be: fbe,
                ifaces,
                last_ts_us,
            } = &mut self.format
            else {
                return Err(self.malformed("pcapng block in a pcap file"));
            };
            let mut out = None;
            match block {
                Block::SectionHeader(_) => {
                    *fbe = be;
                    ifaces.clear();
                }
                Block::InterfaceDescription(idb) => {
                    let res = idb.ts_resolution().unwrap_or(1_000_000).max(1);
                    ifaces.push(Iface {
                        link: LinkType(idb.linktype.0 as u32),
                        res,
                        offset_s: idb.ts_offset(),
                    });
                }
                Block::EnhancedPacket(epb) => {
                    let Some(iface) = ifaces.get(epb.if_id as usize) else {
                        return Err(CaptureError::Malformed {
                            offset: self.base + start as u64,
                            reason: "packet on an undeclared pcapng interface",
                        });
                    };
                    let caplen = (epb.caplen as usize).min(epb.data.len());
                    let data = self.buf.slice_ref(&epb.data[..caplen]);
                    let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                    let us = (u128::from(ts) * 1_000_000 / u128::from(iface.res)) as i128
                        + i128::from(iface.offset_s) * 1_000_000;
                    let ts_us = us.clamp(0, i128::from(u64::MAX)) as u64;
                    *last_ts_us = ts_us;
                    out = Some(Packet {
                        ts_us,
                        link_type: iface.link,
                        orig_len: epb.origlen.max(caplen as u32),
                        data,
                    });
                }
                Block::SimplePacket(spb) => {
                    let Some(iface) = ifaces.first() else {
                        return Err(CaptureError::Malformed {
                            offset: self.base + start as u64,
                            reason: "packet on an undeclared pcapng interface",
                        });
                    };
                    let caplen = (spb.origlen as usize).min(spb.data.len());
                    let data = self.buf.slice_ref(&spb.data[..caplen]);
                    out = Some(Packet {
                        ts_us: *last_ts_us,
                        link_type: iface.link,
                        orig_len: spb.origlen.max(caplen as u32),
                        data,
                    });
                }
                _ => {}
            }
            self.pos += len;
            if out.is_some() {
                return Ok(out);
            }
        }
    }
}

impl PacketSource for FileSource {
    fn next_packet(&mut self) -> Result<Option<Packet>, CaptureError> {
        match self.format {
            Format::Pcap {
                be,
                nanos,
                modified,
                link,
            } => self.next_pcap(be, nanos, modified, link),
            Format::PcapNg { .. } => self.next_pcapng(),
        }
    }

    fn position(&self) -> u64 {
        self.offset()
    }
}
