//! `rctl -u jail:NAME` output, the TaskStats sample.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_pot_driver::host::parse;

fuzz_target!(|text: &str| {
    let _ = parse::rctl_usage(text);
});
