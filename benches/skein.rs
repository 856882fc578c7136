//! Skein-1024-1024 throughput: ours (`nomad_pot_driver::skein`, the image pipeline's hasher)
//! next to RustCrypto's `skein` crate, single-threaded, on the same buffer, interleaved.
//!
//! `cargo bench --bench skein` (`SKEIN_BENCH_MIB=N` for another buffer size, default 64).
//!
//! Each pass is timed twice: by the wall clock and by the thread's own CPU time. On a quiet
//! machine the two agree; on a shared one the CPU-time figure is the hasher's single-thread
//! speed, which the target is about, and the wall-clock one shows how loaded the machine was.

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
    let (mut ours, mut theirs) = (Best::default(), Best::default());
    for _ in 0..ROUNDS {
        ours.time(|| {
            black_box(nomad_pot_driver::skein::Skein1024::digest(black_box(&data)));
        });
        theirs.time(|| {
            black_box(skein::Skein1024::<skein::U128>::digest(black_box(&data)));
        });
    }
    let mbs = |d: Duration| data.len() as f64 / d.as_secs_f64() / 1e6;
    println!("Skein-1024-1024, {mib} MiB in memory, one thread, best of {ROUNDS} (interleaved):");
    println!("| implementation | per CPU second | by the wall clock | target | |");
    println!("|---|---|---|---|---|");
    let (cpu, wall) = (mbs(ours.cpu), mbs(ours.wall));
    let verdict = if cpu >= TARGET_MBS { "met" } else { "MISSED" };
    println!(
        "| ours (src/skein.rs) | {cpu:.0} MB/s | {wall:.0} MB/s | ≥ {TARGET_MBS:.0} MB/s per CPU second | {:.2}× of target, {verdict} |",
        cpu / TARGET_MBS
    );
    println!(
        "| RustCrypto skein 0.2 | {:.0} MB/s | {:.0} MB/s | | ours {:.2}× theirs (CPU), {:.2}× (wall) |",
        mbs(theirs.cpu),
        mbs(theirs.wall),
        theirs.cpu.as_secs_f64() / ours.cpu.as_secs_f64(),
        theirs.wall.as_secs_f64() / ours.wall.as_secs_f64(),
    );
}

/// The shortest wall-clock and CPU time seen.
struct Best {
    wall: Duration,
    cpu: Duration,
}

impl Default for Best {
    fn default() -> Self {
        Best {
            wall: Duration::MAX,
            cpu: Duration::MAX,
        }
    }
}

impl Best {
    fn time(&mut self, f: impl FnOnce()) {
        let (wall, cpu) = (Instant::now(), thread_cpu());
        f();
        self.cpu = self.cpu.min(thread_cpu() - cpu);
        self.wall = self.wall.min(wall.elapsed());
    }
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
