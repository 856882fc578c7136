//! The agent's plugin `config {}` (go-cty msgpack), decoded against the agent schema.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_pot_driver::driver::AgentConfig;

fuzz_target!(|data: &[u8]| {
    let _ = AgentConfig::decode(data);
});
