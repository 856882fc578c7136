//! Launches the plugin binary the way Nomad (go-plugin) does and talks to it over gRPC
//! (`nomad_pot_client::plugin`, panicking).

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

pub use nomad_pot_client::plugin::{
    MAGIC_COOKIE, MAGIC_COOKIE_KEY, stderr_line_violation, validate_handshake,
};

use crate::ok;

/// Path of the plugin binary: `$NOMAD_POT_DRIVER_BIN`, else `nomad-pot-driver` in
/// [`crate::bin_dir`]; panics with the command that builds it.
pub fn plugin_bin() -> PathBuf {
    ok(nomad_pot_client::plugin::plugin_bin())
}

/// A running plugin process plus gRPC clients on its socket; derefs to the client's.
pub struct Plugin(nomad_pot_client::Plugin);

impl Plugin {
    /// Spawns the plugin under test with Nomad's environment and connects to it.
    pub async fn launch() -> Plugin {
        Plugin(ok(nomad_pot_client::Plugin::launch().await))
    }

    /// [`Plugin::launch`] with more variables in its environment, as a Nomad agent started with
    /// them passes them on (e.g. `SSL_CERT_FILE`).
    pub async fn launch_with_env(vars: &[(&str, &std::ffi::OsStr)]) -> Plugin {
        Plugin(ok(nomad_pot_client::Plugin::launch_with_env(vars).await))
    }

    /// Spawns `bin` with Nomad's environment, validates the handshake and connects.
    pub async fn launch_bin(bin: &Path) -> Plugin {
        Plugin(ok(nomad_pot_client::Plugin::launch_bin(bin).await))
    }

    /// Asserts: nothing on stdout after the handshake, every stderr line valid hclog JSON.
    pub fn assert_clean_io(&self) {
        ok(self.0.check_clean_io());
    }

    /// What go-plugin's `Kill()` does: GRPCController.Shutdown, then ≤ 2 s for the process to
    /// exit. Asserts it exited, that the socket (and its directory) are gone and clean stdio.
    pub async fn shutdown(self) {
        ok(self.0.shutdown().await);
    }
}

impl Deref for Plugin {
    type Target = nomad_pot_client::Plugin;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Plugin {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}
