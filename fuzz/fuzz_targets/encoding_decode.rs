#![no_main]
//! Arbitrary bytes into the batch decoder (with the checksum fixed up, so the fuzzer reaches the body), then a
//! valid batch of the decoded logs must round-trip.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut server = fathom_encoding::GlobalDictionary::default();
    let _ = server.decode(data);
    if data.len() >= fathom_encoding::HEADER_LEN {
        let mut fixed = data.to_vec();
        fixed[..4].copy_from_slice(&fathom_encoding::MAGIC);
        fixed[4] = fathom_encoding::VERSION;
        let body_len = (fixed.len() - fathom_encoding::HEADER_LEN) as u32;
        fixed[28..32].copy_from_slice(&body_len.to_le_bytes());
        if fixed[5] & 1 == 0 {
            fixed[24..28].copy_from_slice(&body_len.to_le_bytes());
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&fixed[..32]);
        h.update(&fixed[fathom_encoding::HEADER_LEN..]);
        let crc = h.finalize();
        fixed[32..36].copy_from_slice(&crc.to_le_bytes());
        if let Ok(batch) = server.decode(&fixed) {
            let mut enc = fathom_encoding::Encoder::new(1, fathom_encoding::SyncMode::Reliable);
            let (_, again) = enc.encode(&batch.logs).expect("re-encode decoded logs");
            let back = fathom_encoding::GlobalDictionary::default().decode(&again).expect("decode re-encoded");
            assert_eq!(back.logs, batch.logs);
        }
    }
});
