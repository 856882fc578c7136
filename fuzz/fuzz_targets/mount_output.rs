//! `mount -p` output (fstab form), read by teardown to find a pot's mounts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_pot_driver::host::parse;

fuzz_target!(|text: &str| {
    let _ = parse::mount_fstab(text);
});
