//! Encode and decode realistic tagged logs in a loop and print logs/s (a stress companion to the criterion
//! bench; run with `cargo run --release -p fathom-encoding --example encode_stress [ROUNDS] [MODE]`, MODE one of
//! `all` (default), `strings`, `tagged`, `decode`, `json` (serde_json lines of the same logs, the reference): the single-mode runs are for profilers such as callgrind).

#[path = "../benches/support/gen.rs"]
mod gen;

use fathom_encoding::{Encoder, GlobalDictionary, SyncMode};
use std::time::Instant;

fn main() {
    let logs = gen::make_logs(gen::BATCH, 42);
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let mode = args.next().unwrap_or_else(|| "all".into());
    let n = (rounds * logs.len()) as f64;
    let mut enc = Encoder::new(1, SyncMode::Reliable);
    let mut server = GlobalDictionary::default();
    let (_, first) = enc.encode(&logs).expect("encode");
    server.decode(&first).expect("decode");
    let mut last = enc.encode(&logs).expect("encode").1;
    if mode == "all" || mode == "strings" {
        let t = Instant::now();
        for _ in 0..rounds {
            last = enc.encode(&logs).expect("encode").1;
        }
        println!(
            "encode (string tags):   {:.0} logs/s",
            n / t.elapsed().as_secs_f64()
        );
    }
    if mode == "all" || mode == "tagged" {
        let mut enc_t = Encoder::new(2, SyncMode::Reliable);
        let (bare, sets) = gen::split_tags(&mut enc_t, &logs);
        let _ = enc_t.encode_tagged(&bare, &sets).expect("encode");
        let t = Instant::now();
        for _ in 0..rounds {
            let _ = enc_t.encode_tagged(&bare, &sets).expect("encode");
        }
        println!(
            "encode (pre-interned):  {:.0} logs/s",
            n / t.elapsed().as_secs_f64()
        );
    }
    if mode == "all" || mode == "decode" {
        let t = Instant::now();
        for _ in 0..rounds {
            server.decode(&last).expect("decode");
        }
        println!(
            "decode:                 {:.0} logs/s",
            n / t.elapsed().as_secs_f64()
        );
    }
    if mode == "all" || mode == "json" {
        let mut out = Vec::with_capacity(16 << 20);
        let t = Instant::now();
        for _ in 0..rounds {
            out.clear();
            for l in &logs {
                serde_json::to_writer(&mut out, l).expect("json");
                out.push(b'\n');
            }
        }
        println!(
            "serde_json lines:       {:.0} logs/s",
            n / t.elapsed().as_secs_f64()
        );
    }
    println!("batch: {} bytes for {} logs", last.len(), logs.len());
}
