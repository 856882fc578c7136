//! A job's `config {}` as Nomad sends it (go-cty msgpack), decoded against the task schema.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_pot_driver::driver::TaskConfig;

fuzz_target!(|data: &[u8]| {
    let _ = TaskConfig::decode(data);
});
