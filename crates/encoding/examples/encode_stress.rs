//! Encode and decode realistic tagged logs in a loop and print logs/s (a stress companion to the criterion
//! bench; run with `cargo run --release -p fathom-encoding --example encode_stress`).

#[path = "../benches/support/gen.rs"]
mod gen;

use fathom_encoding::{Encoder, GlobalDictionary, SyncMode};
use std::time::Instant;

fn main() {
    let logs = gen::make_logs(gen::BATCH, 42);
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let mut enc = Encoder::new(1, SyncMode::Reliable);
    let mut server = GlobalDictionary::default();
    let (_, first) = enc.encode(&logs).expect("encode");
    server.decode(&first).expect("decode");
    let t = Instant::now();
    let mut last = Vec::new();
    for _ in 0..rounds {
        last = enc.encode(&logs).expect("encode").1;
    }
    let enc_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..rounds.div_ceil(5) {
        server.decode(&last).expect("decode");
    }
    let dec_s = t.elapsed().as_secs_f64();
    let n = (rounds * logs.len()) as f64;
    println!("encode: {:.0} logs/s", n / enc_s);
    println!(
        "decode: {:.0} logs/s",
        (rounds.div_ceil(5) * logs.len()) as f64 / dec_s
    );
    println!("batch: {} bytes for {} logs", last.len(), logs.len());
}
