//! `mount -p --libxo json` output, read by teardown to find a pot's mounts after a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_pot_driver::host::parse;

fuzz_target!(|text: &str| {
    let _ = parse::mount_libxo(text);
});
