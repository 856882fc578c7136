//! `freebsd-sim image NAME TAG OUTDIR [--filler-mb N] [--sign SECKEY]`: a single-type pot as
//! `pot export` writes it, optionally with a signify signature of its `.skein` file.

use crate::state::{io_fail, now};
use crate::stream::{StreamDataset, StreamWriter};
use crate::{Fail, Res, usage};
use skein::{Digest, Skein1024, U128};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const USAGE: &str = "usage: freebsd-sim image NAME TAG OUTDIR [--filler-mb N] [--sign SECKEY] [--prop KEY=VALUE].. [--m-prop KEY=VALUE]..";

/// Properties set locally on the sent datasets (the pot's own, and its `m`).
#[derive(Default)]
struct Props {
    top: Vec<(String, String)>,
    m: Vec<(String, String)>,
}

const POT_ATTRS: &[(&str, &str)] = &[
    ("no-rc-script", "NO"),
    ("persistent", "YES"),
    ("start-at-boot", "NO"),
    ("prunable", "NO"),
    ("no-tmpfs", "NO"),
    ("enforce_statfs", "2"),
    ("mount", "NO"),
    ("fdescfs", "NO"),
    ("linprocfs", "NO"),
    ("nullfs", "NO"),
    ("procfs", "NO"),
    ("tmpfs", "NO"),
    ("zfs", "NO"),
    ("raw_sockets", "NO"),
    ("sysvshm", "new"),
    ("sysvsem", "new"),
    ("sysvmsg", "new"),
    ("children", "0"),
    ("mlock", "NO"),
    ("devfs_ruleset", "4"),
    ("exec_stop", ""),
    ("stop_timeout", "10"),
];

/// What `pot create -t single -b 14.2 -N inherit` writes, in its order.
pub fn pot_conf(host_name: &str) -> String {
    let mut s = String::from(
        "pot.level=0\npot.type=single\npot.base=14.2\npot.potbase=\npot.dns=inherit\npot.cmd=sh /etc/rc\n",
    );
    s.push_str(&format!(
        "host.hostname=\"{host_name}\"\nosrelease=\"14.2-RELEASE\"\n"
    ));
    for (k, v) in POT_ATTRS {
        s.push_str(&format!("pot.attr.{k}={v}\n"));
    }
    s.push_str("pot.stack=ipv4\nnetwork_type=inherit\nvnet=false\n");
    s
}

/// Deterministic text over a 16-letter alphabet: about 2:1 compressible, like real binaries.
fn filler(out: &mut impl Write, mib: u64) -> std::io::Result<()> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut line = [b'\n'; 64];
    for _ in 0..mib * 1024 * 1024 / 64 {
        for b in line.iter_mut().take(63) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = b'a' + (x & 15) as u8;
        }
        out.write_all(&line)?;
    }
    Ok(())
}

fn build_tree(dir: &Path, name: &str, tag: &str, filler_mb: u64) -> std::io::Result<()> {
    let conf = dir.join("conf");
    fs::create_dir_all(&conf)?;
    fs::write(
        conf.join("pot.conf"),
        pot_conf(&format!("{name}_{tag}.sim")),
    )?;
    fs::write(conf.join("fscomp.conf"), "")?;
    let m = dir.join("m");
    for d in ["etc", "tmp", "dev", "root"] {
        fs::create_dir_all(m.join(d))?;
    }
    fs::set_permissions(m.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::write(m.join("etc/sim-image"), format!("{name}_{tag}\n"))?;
    fs::write(
        m.join("etc/passwd"),
        "root:*:0:0:Charlie &:/root:/bin/sh\nnobody:*:65534:65534:Unprivileged user:/nonexistent:/usr/sbin/nologin\n",
    )?;
    fs::write(
        m.join("etc/group"),
        "wheel:*:0:root\nnogroup:*:65533:\nnobody:*:65534:\n",
    )?;
    if filler_mb > 0 {
        fs::create_dir_all(m.join("var"))?;
        let mut f = std::io::BufWriter::new(fs::File::create(m.join("var/filler"))?);
        filler(&mut f, filler_mb)?;
        f.flush()?;
    }
    Ok(())
}

fn write_xz(tree: &Path, snap: &str, xz: &Path, props: &Props) -> std::io::Result<()> {
    let stream = liblzma::stream::MtStreamBuilder::new()
        .preset(6)
        .threads(2)
        .block_size(1 << 20)
        .check(liblzma::stream::Check::Crc64)
        .encoder()
        .map_err(std::io::Error::other)?;
    let file = std::io::BufWriter::new(fs::File::create(xz)?);
    let enc = liblzma::write::XzEncoder::new_stream(file, stream);
    let creation = now();
    let mut w = StreamWriter::new(enc)?;
    let top = StreamDataset {
        rel: String::new(),
        snap: snap.into(),
        creation,
        props: props.top.clone(),
    };
    w.dataset(&top, tree, &[tree.join("m")])?;
    let m = StreamDataset {
        rel: "m".into(),
        snap: snap.into(),
        creation,
        props: props.m.clone(),
    };
    w.dataset(&m, &tree.join("m"), &[])?;
    w.finish()?.finish()?.flush()
}

pub fn main(args: &[String]) -> Res<String> {
    let [name, tag, outdir, opts @ ..] = args else {
        return Err(usage(USAGE));
    };
    let mut filler_mb = 0;
    let mut seckey = None;
    let mut props = Props::default();
    for pair in opts.chunks(2) {
        match pair {
            [flag, mb] if flag == "--filler-mb" => {
                filler_mb = mb.parse().map_err(|_| {
                    Fail::new(
                        64,
                        format!("freebsd-sim image: --filler-mb {mb}: not a number"),
                    )
                })?
            }
            [flag, key] if flag == "--sign" => seckey = Some(Path::new(key)),
            [flag, kv] if flag == "--prop" || flag == "--m-prop" => {
                let (k, v) = kv.split_once('=').ok_or_else(|| usage(USAGE))?;
                let list = if flag == "--prop" {
                    &mut props.top
                } else {
                    &mut props.m
                };
                list.push((k.to_string(), v.to_string()));
            }
            _ => return Err(usage(USAGE)),
        }
    }
    let out = Path::new(outdir);
    fs::create_dir_all(out).map_err(|e| io_fail("mkdir", out, e))?;
    let base = format!("{name}_{tag}");
    let tree = out.join(format!(".{base}.tree.{}", std::process::id()));
    let _ = fs::remove_dir_all(&tree);
    let xz = out.join(format!("{base}.xz"));
    let result = build_tree(&tree, name, tag, filler_mb)
        .and_then(|_| write_xz(&tree, &now().to_string(), &xz, &props));
    let _ = fs::remove_dir_all(&tree);
    result.map_err(|e| io_fail("write image", &xz, e))?;
    let meta = out.join(format!("{base}.xz.meta"));
    fs::write(&meta, "-\n").map_err(|e| io_fail("write", &meta, e))?;
    let mut h = Skein1024::<U128>::new();
    let mut f = fs::File::open(&xz).map_err(|e| io_fail("read", &xz, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(|e| io_fail("hash", &xz, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.update(b"-\n");
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let sk = out.join(format!("{base}.xz.skein"));
    fs::write(&sk, format!("{hex}\n")).map_err(|e| io_fail("write", &sk, e))?;
    if let Some(key) = seckey {
        crate::sign::sign(key, &sk, &out.join(format!("{base}.xz.skein.sig")))?;
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    #[test]
    fn pot_conf_order() {
        let c = super::pot_conf("web_1.0.sim");
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(
            lines[..3],
            ["pot.level=0", "pot.type=single", "pot.base=14.2"]
        );
        assert_eq!(lines[6], "host.hostname=\"web_1.0.sim\"");
        assert_eq!(lines.last(), Some(&"vnet=false"));
        assert_eq!(lines.len(), 33);
    }
}
