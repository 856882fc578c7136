//! `DIR/state/receiver`: how this host's `zfs receive` unpacks streams (README.md). Absent means
//! `write`, the normal receiver; `drain` is for benchmarks that leave the receiver's own work
//! out of an import.

use crate::state::{Host, io_fail};
use crate::stream::Unpack;
use crate::{Fail, Res, usage};
use std::fs;
use std::path::PathBuf;

const USAGE: &str = "usage: freebsd-sim receiver DIR [write|drain]";

fn setting_path(host: &Host) -> PathBuf {
    host.state_dir().join("receiver")
}

fn word(unpack: Unpack) -> &'static str {
    match unpack {
        Unpack::Write => "write",
        Unpack::Drain => "drain",
    }
}

fn parse(word: &str) -> Option<Unpack> {
    match word {
        "write" => Some(Unpack::Write),
        "drain" => Some(Unpack::Drain),
        _ => None,
    }
}

/// The host's receiver mode.
pub fn mode(host: &Host) -> Res<Unpack> {
    let path = setting_path(host);
    match fs::read_to_string(&path) {
        Ok(text) => parse(text.trim()).ok_or_else(|| {
            Fail::new(
                1,
                format!(
                    "freebsd-sim: {}: unknown receiver mode {:?}",
                    path.display(),
                    text.trim()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Unpack::Write),
        Err(e) => Err(io_fail("read", &path, e)),
    }
}

/// `freebsd-sim receiver DIR [MODE]`: sets the mode (`write` removes the setting), or prints it.
pub fn main(args: &[String]) -> Res<String> {
    let (dir, rest) = args.split_first().ok_or_else(|| usage(USAGE))?;
    let host = Host::new(dir.into());
    if !host.state_dir().is_dir() {
        return Err(Fail::new(
            1,
            format!("freebsd-sim: {dir} is not a simulated host (run init)"),
        ));
    }
    let path = setting_path(&host);
    match rest {
        [] => Ok(format!("{}\n", word(mode(&host)?))),
        [m] => match parse(m) {
            Some(Unpack::Write) => match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(io_fail("remove", &path, e))
                }
                _ => Ok(String::new()),
            },
            Some(Unpack::Drain) => {
                // Renamed into place: a receive starting meanwhile reads the old or the new word.
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                fs::write(&tmp, "drain\n")
                    .and_then(|_| fs::rename(&tmp, &path))
                    .map_err(|e| io_fail("write", &path, e))?;
                Ok(String::new())
            }
            None => Err(Fail::new(
                64,
                format!("freebsd-sim receiver: unknown mode {m:?}\n{USAGE}"),
            )),
        },
        _ => Err(usage(USAGE)),
    }
}
