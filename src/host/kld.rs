//! kldstat(8) and kldload(8): kernel modules (pf is a module that a fresh host has not loaded).

use super::{Host, HostError, Tool, argv};

impl Host {
    /// `kldstat -q -m MODULE`: whether the module is in the kernel.
    pub async fn kmod_loaded(&self, module: &str) -> Result<bool, HostError> {
        match self.run(Tool::Kldstat, argv!["-q", "-m", module]).await {
            Ok(_) => Ok(true),
            // With -q a missing module is only the exit status; anything on stderr is a
            // failure of kldstat itself.
            Err(HostError::Failed { stderr, .. }) if stderr.is_empty() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `kldload -n MODULE`: loads it unless it is already in the kernel.
    pub async fn kmod_load(&self, module: &str) -> Result<(), HostError> {
        self.run(Tool::Kldload, argv!["-n", module]).await.map(drop)
    }
}
