//! What `jail -i -c` prints: the new JID.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_pot_driver::host::parse;

fuzz_target!(|text: &str| {
    let _ = parse::jail_jid(text);
});
