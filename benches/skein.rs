//! Skein-1024-1024 throughput: ours (`nomad_pot_driver::skein`, the image pipeline's hasher)
//! next to RustCrypto's `skein` crate, single-threaded, on the same buffer, interleaved.
//!
//! `cargo bench --bench skein` (`SKEIN_BENCH_MIB=N` for another buffer size, default 64).

use std::hint::black_box;
use std::time::{Duration, Instant};

use skein::Digest;

const ROUNDS: usize = 5;
const TARGET_MBS: f64 = 250.0;

fn main() {
    let mib: usize = std::env::var("SKEIN_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    // Incompressible-looking bytes, as an image's .xz is; the hash's speed does not depend on them.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let data: Vec<u8> = (0..mib << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    assert_eq!(
        nomad_pot_driver::skein::Skein1024::digest(&data)[..],
        skein::Skein1024::<skein::U128>::digest(&data)[..],
        "the two implementations disagree"
    );
    let (mut ours, mut theirs) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        ours = ours.min(time(|| {
            black_box(nomad_pot_driver::skein::Skein1024::digest(black_box(&data)));
        }));
        theirs = theirs.min(time(|| {
            black_box(skein::Skein1024::<skein::U128>::digest(black_box(&data)));
        }));
    }
    let mbs = |d: Duration| data.len() as f64 / d.as_secs_f64() / 1e6;
    let (ours, theirs) = (mbs(ours), mbs(theirs));
    println!("Skein-1024-1024, {mib} MiB in memory, one thread, best of {ROUNDS} (interleaved):");
    println!("| implementation | throughput | target | |");
    println!("|---|---|---|---|");
    let verdict = if ours >= TARGET_MBS { "met" } else { "MISSED" };
    println!(
        "| ours (src/skein.rs) | {ours:.0} MB/s | ≥ {TARGET_MBS:.0} MB/s | {:.2}× of target, {verdict} |",
        ours / TARGET_MBS
    );
    println!(
        "| RustCrypto skein 0.2 | {theirs:.0} MB/s | | ours {:.2}× theirs |",
        ours / theirs
    );
}

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}
