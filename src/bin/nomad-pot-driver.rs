//! The plugin binary Nomad executes from its `plugin_dir`.

fn main() -> std::process::ExitCode {
    nomad_pot_driver::plugin::run()
}
