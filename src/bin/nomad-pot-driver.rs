//! The plugin binary Nomad executes from its `plugin_dir`; `nomad-pot-driver shim` is the
//! per-task supervisor the plugin starts for every task.

fn main() -> std::process::ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "shim") {
        return nomad_pot_driver::engine::supervisor::main();
    }
    nomad_pot_driver::plugin::run()
}
