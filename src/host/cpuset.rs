//! cpuset(1): pinning a jail to CPUs.

use super::{Host, HostError, Tool, argv};

impl Host {
    /// `cpuset -l <cpus> -j <jid>`: the jail's processes may run on `cpus` only.
    pub async fn cpuset_jail(&self, jid: u32, cpus: &[u32]) -> Result<(), HostError> {
        self.run(
            Tool::Cpuset,
            argv!["-l", cpu_list(cpus), "-j", jid.to_string()],
        )
        .await
        .map(drop)
    }
}

fn cpu_list(cpus: &[u32]) -> String {
    cpus.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_lists_are_comma_separated() {
        assert_eq!(super::cpu_list(&[2, 3, 7]), "2,3,7");
    }
}
