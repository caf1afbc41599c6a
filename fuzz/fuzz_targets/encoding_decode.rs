#![no_main]
//! Arbitrary bytes into both batch decoders (request logs and metric rows), each time with the header's magic,
//! version, lengths and checksum fixed up so the fuzzer reaches the body; whatever decodes must re-encode and
//! decode to the same rows (logs; metric rows with their latency sketches).

use fathom_encoding::{
    Encoder, GlobalDictionary, SyncMode, HEADER_LEN, MAGIC, METRIC_MAGIC, VERSION,
};
use libfuzzer_sys::fuzz_target;

fn fix_header(data: &[u8], magic: [u8; 4]) -> Vec<u8> {
    let mut fixed = data.to_vec();
    fixed[..4].copy_from_slice(&magic);
    fixed[4] = VERSION;
    let body_len = (fixed.len() - HEADER_LEN) as u32;
    fixed[28..32].copy_from_slice(&body_len.to_le_bytes());
    if fixed[5] & 1 == 0 {
        fixed[24..28].copy_from_slice(&body_len.to_le_bytes());
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&fixed[..32]);
    h.update(&fixed[HEADER_LEN..]);
    let crc = h.finalize();
    fixed[32..36].copy_from_slice(&crc.to_le_bytes());
    fixed
}

fuzz_target!(|data: &[u8]| {
    let mut server = GlobalDictionary::default();
    let _ = server.decode(data);
    let _ = server.decode_metrics(data);
    if data.len() < HEADER_LEN {
        return;
    }
    if let Ok(batch) = GlobalDictionary::default().decode(&fix_header(data, MAGIC)) {
        let mut enc = Encoder::new(1, SyncMode::Reliable);
        let (_, again) = enc.encode(&batch.logs).expect("re-encode decoded logs");
        let back = GlobalDictionary::default().decode(&again).expect("decode re-encoded");
        assert_eq!(back.logs, batch.logs);
    }
    if let Ok(m) = GlobalDictionary::default().decode_metrics(&fix_header(data, METRIC_MAGIC)) {
        let mut enc = Encoder::new(1, SyncMode::Reliable);
        let (_, again) = enc.encode_metrics(&m.batch).expect("re-encode decoded rows");
        let back = GlobalDictionary::default().decode_metrics(&again).expect("decode re-encoded rows");
        assert_eq!(back.batch, m.batch);
    }
});
