//! `TaskHandle.driver_state` as Nomad hands it back to RecoverTask: the first byte picks the
//! handle version (mostly the current one), the rest is the state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_pot_driver::driver::{DriverState, HANDLE_VERSION};

fuzz_target!(|data: &[u8]| {
    let Some((&v, bytes)) = data.split_first() else {
        return;
    };
    let version = if v < 0xf0 {
        HANDLE_VERSION
    } else {
        i32::from(v & 0x0f)
    };
    if let Ok(state) = DriverState::decode(version, bytes) {
        let again =
            DriverState::decode(HANDLE_VERSION, &state.encode()).expect("re-encoded state decodes");
        assert_eq!(again, state);
    }
});
