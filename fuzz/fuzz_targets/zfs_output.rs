//! `zfs list` output in the three forms the engine reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_pot_driver::host::parse;

fuzz_target!(|text: &str| {
    let snaps = parse::zfs_snapshots(text);
    assert!(snaps.is_sorted());
    for entry in parse::zfs_list_tree(text) {
        assert!(!entry.name.contains('\t'));
    }
    for row in parse::zfs_with_snapshots(text, 2) {
        assert!(!row.name.contains('\t') && row.values.len() == 2);
    }
});
