//! posixshmcontrol(1): named POSIX shared memory objects.

use super::{Host, HostError, Tool, argv};

impl Host {
    /// The paths of every named POSIX shm object (`posixshmcontrol ls`, fifth column); `None`
    /// when the tool path has no posixshmcontrol (pot skips the step then too).
    pub async fn shm_paths(&self) -> Result<Option<Vec<String>>, HostError> {
        if self.resolve(Tool::Posixshmcontrol).is_err() {
            return Ok(None);
        }
        let out = self.run(Tool::Posixshmcontrol, argv!["ls"]).await?;
        Ok(Some(parse_ls(&out.stdout)))
    }

    /// `posixshmcontrol rm PATH`; an object already gone is [`HostError::Absent`].
    pub async fn shm_remove(&self, path: &str) -> Result<(), HostError> {
        match self.run(Tool::Posixshmcontrol, argv!["rm", path]).await {
            Ok(_) => Ok(()),
            Err(HostError::Failed {
                command, stderr, ..
            }) if stderr.contains("No such file or directory") => Err(HostError::Absent {
                command,
                what: format!("POSIX shm object {path}"),
            }),
            Err(e) => Err(e),
        }
    }
}

/// `posixshmcontrol ls` output: a header, then `MODE\tOWNER\tGROUP\tSIZE\tPATH` lines.
pub fn parse_ls(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.splitn(5, '\t').nth(4))
        .filter(|p| p.starts_with('/'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_posixshmcontrol_ls() {
        let text = "MODE    \tOWNER\tGROUP\tSIZE\tPATH\nrw-------\troot\twheel\t4096\t/opt/pot/jails/pg_1/m/PostgreSQL.1\nrw-------\t70\t70\t0\t/with tab\there\n";
        assert_eq!(
            parse_ls(text),
            ["/opt/pot/jails/pg_1/m/PostgreSQL.1", "/with tab\there"]
        );
    }
}
