//! `pfctl -s Anchors` output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_pot_driver::host::parse;

fuzz_target!(|text: &str| {
    for anchor in parse::pfctl_anchors(text) {
        assert!(!anchor.is_empty() && anchor.trim() == anchor);
    }
});
