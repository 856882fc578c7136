//! The FreeBSD port (`packaging/freebsd/`) agrees with Cargo.lock: `Makefile.crates` lists
//! every crates.io package of the lock file as `name-version`, in its order, and `distinfo`
//! holds each crate file's SHA256 (crates.io's checksum, which Cargo.lock records) and SIZE.
//! `packaging/freebsd/update-crates.sh` rewrites both.

use std::path::Path;

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `(name-version, checksum)` of every crates.io package of Cargo.lock, in its order.
fn locked_crates() -> Vec<(String, String)> {
    read("Cargo.lock")
        .split("\n[[package]]\n")
        .skip(1)
        .filter_map(|package| {
            let field = |key: &str| {
                package.lines().find_map(|l| {
                    l.strip_prefix(&format!("{key} = \""))?
                        .strip_suffix('"')
                        .map(str::to_string)
                })
            };
            let source = field("source")?;
            assert_eq!(
                source, "registry+https://github.com/rust-lang/crates.io-index",
                "Cargo.lock: a source the port cannot fetch with CARGO_CRATES"
            );
            Some((
                format!("{}-{}", field("name")?, field("version")?),
                field("checksum").expect("a crates.io package without checksum"),
            ))
        })
        .collect()
}

const STALE: &str = "run packaging/freebsd/update-crates.sh and commit the result";

#[test]
fn the_ports_crate_list_and_distinfo_are_cargo_locks() {
    let locked = locked_crates();
    assert!(locked.len() > 100, "Cargo.lock: {} crates", locked.len());

    let makefile = read("packaging/freebsd/Makefile.crates");
    let listed: Vec<&str> = makefile
        .strip_prefix("CARGO_CRATES=")
        .expect("Makefile.crates: no CARGO_CRATES=")
        .split_whitespace()
        .filter(|w| *w != "\\")
        .collect();
    let names: Vec<&str> = locked.iter().map(|(c, _)| c.as_str()).collect();
    assert!(
        listed == names,
        "Makefile.crates and Cargo.lock disagree (only in the port: {:?}; only in the lock: \
         {:?}): {STALE}",
        listed
            .iter()
            .filter(|c| !names.contains(c))
            .collect::<Vec<_>>(),
        names
            .iter()
            .filter(|c| !listed.contains(c))
            .collect::<Vec<_>>(),
    );

    let distinfo = read("packaging/freebsd/distinfo");
    let entries: Vec<(&str, &str, &str)> = distinfo
        .lines()
        .filter(|l| !l.starts_with("TIMESTAMP = "))
        .map(|l| {
            let (key, value) = l
                .split_once(") = ")
                .unwrap_or_else(|| panic!("distinfo: {l}"));
            let (kind, file) = key
                .split_once(" (")
                .unwrap_or_else(|| panic!("distinfo: {l}"));
            (kind, file, value)
        })
        .collect();
    for (crate_, checksum) in &locked {
        let file = format!("rust/crates/{crate_}.crate");
        let sha = entries
            .iter()
            .find(|(k, f, _)| *k == "SHA256" && *f == file)
            .unwrap_or_else(|| panic!("distinfo: no SHA256 of {file}: {STALE}"));
        assert_eq!(sha.2, checksum, "distinfo: {file}: {STALE}");
        let size = entries
            .iter()
            .find(|(k, f, _)| *k == "SIZE" && *f == file)
            .unwrap_or_else(|| panic!("distinfo: no SIZE of {file}: {STALE}"));
        assert!(
            size.2.parse::<u64>().is_ok_and(|s| s > 0),
            "distinfo: SIZE of {file}"
        );
    }
    assert_eq!(
        entries.len(),
        2 * locked.len(),
        "distinfo: entries for crates Cargo.lock does not have: {STALE}"
    );
}

#[test]
fn the_port_installs_the_man_pages() {
    let plist = read("packaging/freebsd/pkg-plist");
    for page in ["nomad-pot-driver.8", "potctl.8"] {
        assert!(
            plist.contains(&format!("share/man/man8/{page}.gz\n")),
            "pkg-plist: no {page}"
        );
        assert!(
            read("packaging/freebsd/Makefile").contains(&format!("packaging/man/{page}")),
            "the port's Makefile does not install {page}"
        );
    }
}

#[test]
fn the_release_commands_name_the_crate_version() {
    let version = env!("CARGO_PKG_VERSION");
    for file in ["README.md", "Vagrantfile"] {
        let text = read(file);
        assert!(
            [" ", "\n"]
                .iter()
                .any(|end| text.contains(&format!("packaging/release.sh {version}{end}"))),
            "{file}: `packaging/release.sh {version}` (Cargo.toml's version)"
        );
    }
    assert!(
        read("README.md").contains(&format!("nomad-pot-driver_{version}_freebsd_amd64.tar.gz")),
        "README.md: the archive's name at Cargo.toml's version"
    );
}

/// check-release.sh refuses an archive whose binaries are this (Linux) machine's.
#[test]
fn the_release_check_refuses_binaries_that_are_not_freebsds() {
    let dir = tempfile::tempdir().unwrap();
    let name = "nomad-pot-driver_0.0.0_freebsd_amd64";
    let top = dir.path().join(name);
    std::fs::create_dir_all(top.join("driver-config")).unwrap();
    for (file, from) in [
        ("nomad-pot-driver", env!("CARGO_BIN_EXE_nomad-pot-driver")),
        ("potctl", env!("CARGO_BIN_EXE_potctl")),
    ] {
        std::fs::copy(from, top.join(file)).unwrap();
    }
    for file in ["LICENSE", "README.md", "nomad-pot-driver.8", "potctl.8"] {
        std::fs::write(top.join(file), "").unwrap();
    }
    for file in ["minimal.hcl", "full.hcl", "dev.hcl"] {
        std::fs::write(top.join("driver-config").join(file), "").unwrap();
    }
    let archive = dir.path().join(format!("{name}.tar.gz"));
    let tar = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .arg(name)
        .status()
        .unwrap();
    assert!(tar.success());
    let out = std::process::Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/check-release.sh"),
    )
    .arg(&archive)
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for why in [
        "OS/ABI is not FreeBSD",
        "not /libexec/ld-elf.so.1",
        "not a base library",
        "no FreeBSD ABI note",
    ] {
        assert!(stdout.contains(why), "no `{why}` in:\n{stdout}");
    }
}
