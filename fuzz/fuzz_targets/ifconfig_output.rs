//! `ifconfig -a -g GROUP` listings and the name `ifconfig … create` prints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_pot_driver::host::parse;

fuzz_target!(|text: &str| {
    if let Ok(list) = parse::ifconfig_listing(text) {
        for iface in list {
            assert!(iface.inet.iter().all(|(_, len)| *len <= 32));
        }
    }
    let _ = parse::ifconfig_created_name("ifconfig epair create", text);
});
