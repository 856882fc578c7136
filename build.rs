//! Link settings of the plugin binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    // Packed relative relocations (DT_RELR): the dynamic loader no longer reads ~240 KB of
    // relocation records at every start, which each task supervisor (a mode of this binary)
    // paid in resident memory (BENCHMARKS.md, Memory). GNU ld ≥ 2.38 and glibc ≥ 2.36 know
    // them (older ld ignores the option); FreeBSD's rtld support is not verified, so not there.
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" {
        println!("cargo:rustc-link-arg-bin=nomad-pot-driver=-Wl,-z,pack-relative-relocs");
    }
}
