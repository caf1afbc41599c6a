//! A crash-safe, append-only dictionary file.
//!
//! Record layout (little endian): `u32 payload_len`, `u32 crc32(payload)`, payload = varint key, varint id,
//! varint len, UTF-8 bytes. Records are only appended. On open, records are replayed until the first one that is
//! short, fails its checksum or does not continue its key's id sequence; the file is truncated there. So a torn
//! write (a crash in the middle of an append) loses at most the records written after the last
//! [`PersistentDictionary::sync`], never an earlier one, and never yields a wrong id.

use crate::dict::{Dictionary, Entry};
use crate::varint::{put_bytes, put_u64, Reader};
use crate::StoreError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest record accepted on replay (a value longer than this cannot have been written by us).
const MAX_RECORD: usize = 1 << 20;

/// A [`Dictionary`] backed by an append-only file, with stable ids across restarts.
#[derive(Debug)]
pub struct PersistentDictionary {
    dict: Dictionary,
    file: File,
    path: PathBuf,
    /// Bytes of valid records in the file.
    durable_len: u64,
    /// Records dropped at open (torn or corrupt tail).
    recovered_bytes_dropped: u64,
    buf: Vec<u8>,
}

impl PersistentDictionary {
    /// Open (or create) the dictionary file at `path`, replaying every valid record.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the file cannot be opened, read or truncated.
    pub fn open(path: impl AsRef<Path>, cap_bytes: usize) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let err_path = path.clone();
        let io = |source| StoreError::Io {
            path: err_path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io)?;
        let mut dict = Dictionary::new(cap_bytes);
        let builtin = dict.take_new_entries();
        let mut pos = 0usize;
        let mut restored_any = false;
        while let Some((entry, next)) = read_record(&data, pos) {
            if dict.restore(&entry).is_err() {
                break;
            }
            restored_any = true;
            pos = next;
        }
        dict.clear_journal();
        let durable_len = pos as u64;
        let dropped = data.len() as u64 - durable_len;
        if dropped > 0 {
            file.set_len(durable_len).map_err(io)?;
        }
        file.seek(SeekFrom::Start(durable_len)).map_err(io)?;
        let mut store = PersistentDictionary {
            dict,
            file,
            path,
            durable_len,
            recovered_bytes_dropped: dropped,
            buf: Vec::new(),
        };
        if !restored_any {
            // A new file starts with the built-in keys, so ids are the same on every agent.
            store.append(&builtin)?;
            store.file.sync_data().map_err(io)?;
        }
        Ok(store)
    }

    /// The dictionary (lookups and inserts; inserts become durable at the next [`Self::sync`]).
    pub fn dict(&mut self) -> &mut Dictionary {
        &mut self.dict
    }

    /// Read-only access.
    pub fn get(&self) -> &Dictionary {
        &self.dict
    }

    /// Bytes of a torn or corrupt tail dropped when the file was opened.
    pub fn recovered_bytes_dropped(&self) -> u64 {
        self.recovered_bytes_dropped
    }

    /// Write every entry added since the last sync and flush it to disk. Entries must be durable before they
    /// are sent to a receiver (an id sent but lost in a crash would be reused for another string).
    ///
    /// # Errors
    /// [`StoreError::Io`] on a write or fsync failure (the entries stay in memory; the file keeps its valid
    /// prefix).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        let entries = self.dict.take_new_entries();
        if entries.is_empty() {
            return Ok(());
        }
        self.append(&entries)?;
        self.file.sync_data().map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        self.buf.clear();
        let mut payload = Vec::new();
        for e in entries {
            payload.clear();
            put_u64(&mut payload, u64::from(e.key));
            put_u64(&mut payload, u64::from(e.id));
            put_bytes(&mut payload, e.value.as_bytes());
            self.buf
                .extend_from_slice(&(payload.len() as u32).to_le_bytes());
            self.buf
                .extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            self.buf.extend_from_slice(&payload);
        }
        self.file
            .write_all(&self.buf)
            .map_err(|source| StoreError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.durable_len += self.buf.len() as u64;
        Ok(())
    }
}

fn read_record(data: &[u8], pos: usize) -> Option<(Entry, usize)> {
    let head = data.get(pos..pos + 8)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_RECORD {
        return None;
    }
    let payload = data.get(pos + 8..pos + 8 + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let mut r = Reader::new(payload, pos + 8);
    let key = r.u32().ok()?;
    let id = r.u32().ok()?;
    let value = r.str().ok()?;
    if !r.is_empty() {
        return None;
    }
    Some((
        Entry {
            key,
            id,
            value: Arc::from(value),
        },
        pos + 8 + len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TagValueId;

    #[test]
    fn ids_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dict.log");
        let (k, a, b);
        {
            let mut s = PersistentDictionary::open(&p, 1 << 20).unwrap();
            k = s.dict().key_id("k8s.pod");
            a = s.dict().value_id(k, "web-a");
            b = s.dict().value_id(k, "web-b");
            s.sync().unwrap();
        }
        let mut s = PersistentDictionary::open(&p, 1 << 20).unwrap();
        assert_eq!(s.get().lookup_key("k8s.pod"), Some(k));
        assert_eq!(s.get().lookup(k, "web-a"), Some(a));
        assert_eq!(s.get().lookup(k, "web-b"), Some(b));
        assert_eq!(s.dict().value_id(k, "web-c"), TagValueId(3));
        assert_eq!(s.recovered_bytes_dropped(), 0);
    }

    /// Cut the file at every offset of the unsynced tail, and flip bytes in it: the synced prefix always
    /// survives intact and whatever else is restored is a correct prefix of what was written.
    #[test]
    fn torn_writes_lose_only_the_unsynced_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dict.log");
        let k;
        let synced_len;
        {
            let mut s = PersistentDictionary::open(&p, 1 << 20).unwrap();
            k = s.dict().key_id("svc");
            for i in 0..20 {
                s.dict().value_id(k, &format!("synced-{i}"));
            }
            s.sync().unwrap();
            synced_len = std::fs::metadata(&p).unwrap().len() as usize;
            for i in 0..10 {
                s.dict().value_id(k, &format!("tail-{i}"));
            }
            s.sync().unwrap();
        }
        let full = std::fs::read(&p).unwrap();
        let check = |bytes: &[u8]| {
            std::fs::write(&p, bytes).unwrap();
            let s = PersistentDictionary::open(&p, 1 << 20).unwrap();
            let d = s.get();
            for i in 0..20 {
                assert_eq!(d.lookup(k, &format!("synced-{i}")), Some(TagValueId(i + 1)));
            }
            // Tail entries that survived have exactly their original ids, in order.
            let n = d.len(k);
            for id in 21..=n {
                assert_eq!(
                    d.value(k, TagValueId(id)),
                    Some(format!("tail-{}", id - 21).as_str())
                );
            }
            // The file was truncated to its valid prefix: reopening again changes nothing.
            let again = PersistentDictionary::open(&p, 1 << 20).unwrap();
            assert_eq!(again.get().len(k), n);
            assert_eq!(again.recovered_bytes_dropped(), 0);
        };
        for cut in synced_len..=full.len() {
            check(&full[..cut]);
        }
        for i in synced_len..full.len() {
            let mut bad = full.clone();
            bad[i] ^= 0x5a;
            check(&bad);
        }
    }
}
