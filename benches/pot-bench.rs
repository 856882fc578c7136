//! pot-bench: the image-import figures of the README's Performance section, measured in one run
//! on a simulated host (Linux, root) and printed side by side with their targets.
//!
//! ```sh
//! cargo build --release --workspace && cargo bench --bench pot-bench [-- --filler-mb 200]
//! ```
//!
//! Build the workspace with `--release`: `zfs receive` is the release simulator, and a debug
//! build measures the unoptimised simulator and hasher instead of the import.

use anyhow::{Context, Result, bail};
use nomad_harness::sim::sim_bin;
use nomad_harness::{FileServer, SimHost};
use nomad_pot_driver::driver::AgentConfig;
use nomad_pot_driver::engine::{Engine, EngineConfig, ExportOptions, ImageRef};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const POT: &str = "bench";
const TAG: &str = "1.0";
const CONCURRENT: usize = 20;

fn main() -> Result<()> {
    // `cargo bench` adds `--bench` to a bench without libtest's harness.
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    if args.get(1).map(String::as_str) == Some("child-import") {
        let [_, _, config, url] = args.as_slice() else {
            bail!("usage: pot-bench child-import CONFIG_JSON URL");
        };
        return child_import(Path::new(config), url);
    }
    let filler_mb: u64 = match args.as_slice() {
        [_] => 200,
        [_, flag, n] if flag == "--filler-mb" => n.parse().context("--filler-mb")?,
        _ => bail!("usage: pot-bench [--filler-mb N]"),
    };
    if !nix::unistd::geteuid().is_root() {
        bail!("pot-bench needs root: the simulated host does");
    }
    tokio::runtime::Runtime::new()?.block_on(bench(filler_mb))
}

async fn bench(filler_mb: u64) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Its temp dir holds the image files and the export; removed on exit.
    let scratch = SimHost::create();
    let images = scratch.images_dir();
    std::fs::create_dir_all(&images)?;
    let out = Command::new(sim_bin())
        .args(["image", POT, TAG])
        .arg(&images)
        .args(["--filler-mb", &filler_mb.to_string()])
        .output()?;
    if !out.status.success() {
        bail!(
            "freebsd-sim image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let xz = images.join(format!("{POT}_{TAG}.xz"));
    let compressed = std::fs::metadata(&xz)?.len();
    let server = FileServer::serve(&images);
    let url = server.url();
    println!(
        "pot-bench: {POT}_{TAG}.xz, {filler_mb} MiB of filler, {} compressed, {} xz blocks, {cores} cores",
        mb(compressed),
        xz_blocks(&xz).map_or("?".to_string(), |n| n.to_string())
    );

    // 1. Import over HTTP against decoding the same file alone (best of 3 each, interleaved);
    //    also into a host whose `zfs receive` only drains the stream, which leaves the
    //    simulated receiver's checksum, unpacking and disk writes out: the pipeline alone.
    //    The CPU time of decoding and of the draining import is taken too (least of 3 each).
    let mut decode = Duration::MAX;
    let mut import = Duration::MAX;
    let mut drained = Duration::MAX;
    let (mut decode_cpu, mut drained_cpu) = (f64::MAX, f64::MAX);
    let mut decoded = 0;
    for _ in 0..3 {
        let cpu = cpu_seconds()?;
        let (bytes, t) = decode_file(&xz, cores as u32)?;
        decode_cpu = decode_cpu.min(cpu_seconds()? - cpu);
        decoded = bytes;
        decode = decode.min(t);
        import = import.min(timed_import(&SimHost::create(), &url).await?);
        let host = SimHost::create();
        draining_receiver(&host)?;
        let cpu = cpu_seconds()?;
        drained = drained.min(timed_import(&host, &url).await?);
        drained_cpu = drained_cpu.min(cpu_seconds()? - cpu);
    }
    let rate = |t: Duration| decoded as f64 / t.as_secs_f64() / 1e6;

    // 2. 20 concurrent prepares of one uncached image.
    let host = SimHost::create();
    let engine = Arc::new(engine_for(&host)?);
    let xz_path = format!("/{POT}_{TAG}.xz");
    let downloads_before = count(&server.requests(), &xz_path);
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let (engine, url) = (engine.clone(), url.clone());
            tokio::spawn(async move { engine.prepare_image(&image_ref(&url)?).await })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let concurrent = t0.elapsed();
    let downloads = count(&server.requests(), &xz_path) - downloads_before;

    // 3. Peak RSS of an import, in a process of its own.
    let host = SimHost::create();
    let config = host.tmp.path().join("agent.json");
    std::fs::write(&config, host.config.to_string())?;
    let child = Command::new(std::env::current_exe()?)
        .arg("child-import")
        .arg(&config)
        .arg(&url)
        .output()?;
    if !child.status.success() {
        bail!("child import: {}", String::from_utf8_lossy(&child.stderr));
    }
    let peak_kib: u64 = String::from_utf8_lossy(&child.stdout).trim().parse()?;

    // 4. The imported pot exported multi-block, decoded multi- and single-threaded.
    let exported_dir = scratch.tmp.path().join("exported");
    std::fs::create_dir_all(&exported_dir)?;
    let t0 = Instant::now();
    let exported = engine
        .export(&ExportOptions {
            pot: format!("{POT}_{}", TAG.replace('.', "_")),
            tag: Some("exported".into()),
            dir: exported_dir,
            level: 6,
            seckey: None,
        })
        .await?;
    let export_time = t0.elapsed();
    let mut mt = Duration::MAX;
    let mut st = Duration::MAX;
    let mut exported_bytes = 0;
    for _ in 0..2 {
        let (bytes, t) = decode_file(&exported.xz, cores as u32)?;
        exported_bytes = bytes;
        mt = mt.min(t);
        st = st.min(decode_file(&exported.xz, 1)?.1);
    }
    let export_rate = |t: Duration| exported_bytes as f64 / t.as_secs_f64() / 1e6;

    let import_ratio = import.as_secs_f64().recip() / decode.as_secs_f64().recip();
    let drained_ratio = drained.as_secs_f64().recip() / decode.as_secs_f64().recip();
    let mt_ratio = st.as_secs_f64() / mt.as_secs_f64();
    let concurrent_ratio = concurrent.as_secs_f64() / import.as_secs_f64();
    let peak_mib = peak_kib as f64 / 1024.0;
    println!(
        "{:<48} {:<46} {:<12} result",
        "measure", "figures", "target"
    );
    row(
        "import over HTTP vs xz decode alone",
        format!(
            "{:.0} vs {:.0} MB/s = {import_ratio:.2}x",
            rate(import),
            rate(decode)
        ),
        ">= 0.90x",
        import_ratio >= 0.9,
    );
    // The row above is the import as it runs; this one is the pipeline's own cost (download,
    // Skein-1024, cache copy, decode, the pipe into `zfs receive`) without the simulated
    // receiver's checksum and writes.
    row(
        "... draining receiver: the pipeline's own cost",
        format!(
            "{:.0} vs {:.0} MB/s = {drained_ratio:.2}x",
            rate(drained),
            rate(decode)
        ),
        ">= 0.95x",
        drained_ratio >= 0.95,
    );
    // While the decoder's threads keep every core busy, whatever else the import spends CPU on
    // (the hash, the HTTP transfer and its server here, the cache copy, the pipe, `zfs
    // receive`) comes out of their time: this CPU ratio bounds the wall-clock ratio above.
    info(
        "... CPU time of the same, vs decoding alone's",
        format!(
            "{drained_cpu:.2} s vs {decode_cpu:.2} s: at most {:.2}x",
            decode_cpu / drained_cpu
        ),
    );
    row(
        &format!(
            "multi-block export ({} blocks): MT vs 1 thread",
            xz_blocks(&exported.xz).map_or("?".to_string(), |n| n.to_string())
        ),
        format!(
            "{:.0} vs {:.0} MB/s = {mt_ratio:.2}x",
            export_rate(mt),
            export_rate(st)
        ),
        ">= 1.60x",
        mt_ratio >= 1.6,
    );
    row(
        &format!("{CONCURRENT} concurrent prepares vs one"),
        format!(
            "{:.2} s vs {:.2} s = {concurrent_ratio:.2}x, {downloads} download(s)",
            concurrent.as_secs_f64(),
            import.as_secs_f64()
        ),
        "<= 1.20x, 1",
        concurrent_ratio <= 1.2 && downloads == 1,
    );
    row(
        "peak RSS of an import (VmHWM)",
        format!("{peak_mib:.1} MiB for {} decompressed", mb(decoded)),
        "< 64 MiB",
        peak_mib < 64.0,
    );
    println!(
        "(export of {} at level 6 took {:.1} s)",
        mb(exported_bytes),
        export_time.as_secs_f64()
    );
    Ok(())
}

fn row(measure: &str, figures: String, target: &str, met: bool) {
    let result = if met { "met" } else { "MISSED" };
    println!("{measure:<48} {figures:<46} {target:<12} {result}");
}

/// A row with no target.
fn info(measure: &str, figures: String) {
    println!("{measure:<48} {figures:<46} {:<12} for information", "-");
}

/// CPU seconds (user and system) used so far by this process and by its children it has
/// waited for: utime, stime, cutime and cstime of /proc/self/stat, in USER_HZ, which Linux
/// fixes at 100 a second.
fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .context("no command name in /proc/self/stat")?
        .1
        .split(' ')
        .collect();
    let mut ticks = 0u64;
    // utime is field 14 of proc(5); field 3, the state, is the first after the name.
    let times = fields
        .get(11..15)
        .context("too few fields in /proc/self/stat")?;
    for field in times {
        ticks += field.parse::<u64>().context("a time in /proc/self/stat")?;
    }
    Ok(ticks as f64 / 100.0)
}

/// Imports the image into the simulated host of `config`, then prints this process's VmHWM.
fn child_import(config: &Path, url: &str) -> Result<()> {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(config)?)?;
    let engine = Engine::new(
        EngineConfig::resolve(&AgentConfig::from_json(&json)?.engine)?,
        Arc::new(|_, _| {}),
    );
    tokio::runtime::Runtime::new()?.block_on(engine.prepare_image(&image_ref(url)?))?;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?;
    println!("{}", hwm.trim().trim_end_matches("kB").trim());
    Ok(())
}

/// Time of one import of the bench image into `host`.
async fn timed_import(host: &SimHost, url: &str) -> Result<Duration> {
    let engine = engine_for(host)?;
    let t0 = Instant::now();
    engine.prepare_image(&image_ref(url)?).await?;
    Ok(t0.elapsed())
}

/// Makes `host`'s `zfs receive` read and check streams without unpacking them (the
/// simulator's `receiver` setting).
fn draining_receiver(host: &SimHost) -> Result<()> {
    let out = Command::new(sim_bin())
        .arg("receiver")
        .arg(&host.dir)
        .arg("drain")
        .output()?;
    if !out.status.success() {
        bail!(
            "freebsd-sim receiver: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn engine_for(host: &SimHost) -> Result<Engine> {
    let cfg = EngineConfig::resolve(&AgentConfig::from_json(&host.config)?.engine)?;
    Ok(Engine::new(cfg, Arc::new(|_, _| {})))
}

fn image_ref(url: &str) -> Result<ImageRef, nomad_pot_driver::engine::EngineError> {
    ImageRef::parse(url, POT, TAG)
}

fn count(requests: &[String], path: &str) -> usize {
    requests.iter().filter(|r| r.as_str() == path).count()
}

/// Decodes `path` to nowhere with `threads` threads (1: the single-threaded decoder).
fn decode_file(path: &PathBuf, threads: u32) -> Result<(u64, Duration)> {
    let data = std::fs::read(path)?;
    let t0 = Instant::now();
    let bytes = if threads == 1 {
        std::io::copy(
            &mut liblzma::read::XzDecoder::new(&data[..]),
            &mut std::io::sink(),
        )?
    } else {
        let stream = liblzma::stream::MtStreamBuilder::new()
            .threads(threads)
            .memlimit_threading(256 << 20)
            .memlimit_stop(u64::MAX)
            .decoder()?;
        let mut decoder = liblzma::read::XzDecoder::new_stream(&data[..], stream);
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = decoder.read(&mut buf)?;
            if n == 0 {
                break total;
            }
            total += n as u64;
        }
    };
    Ok((bytes, t0.elapsed()))
}

/// Blocks in a single-stream .xz, from its index: the footer's backward size locates the
/// index, whose first field after the indicator byte is the record count (a varint).
fn xz_blocks(path: &Path) -> Option<u64> {
    let data = std::fs::read(path).ok()?;
    let footer = data.get(data.len().checked_sub(12)?..)?;
    if &footer[10..] != b"YZ" {
        return None;
    }
    let backward = u32::from_le_bytes(footer[4..8].try_into().ok()?) as usize;
    let index_start = data.len() - 12 - (backward + 1) * 4;
    let index = data.get(index_start..)?;
    if index[0] != 0 {
        return None;
    }
    let mut n = 0u64;
    for (i, b) in index[1..].iter().take(9).enumerate() {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
