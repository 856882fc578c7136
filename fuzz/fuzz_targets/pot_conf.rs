//! A pot's `conf/pot.conf` (images carry one): parsed, read like pot reads it, rewritten.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_pot_driver::engine::PotConf;

fuzz_target!(|text: &str| {
    let conf = PotConf::parse(text);
    for key in [
        "pot.cmd",
        "ip",
        "network_type",
        "pot.attr.stop_timeout",
        "host.hostname",
    ] {
        let _ = conf.get(key);
        let _ = conf.get_raw(key);
    }
    let rendered = conf.render();
    assert_eq!(
        PotConf::parse(&rendered),
        conf,
        "a rewrite keeps every line"
    );
});
