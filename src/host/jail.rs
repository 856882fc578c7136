//! jail(8), jls(8) and jexec(8).

use super::{Host, HostError, Tool, argv, display_command};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;

/// Parameters of `jail -c`, in the order they are passed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JailParams {
    params: Vec<(String, Option<String>)>,
}

impl JailParams {
    /// A bare boolean parameter such as `persist` or `allow.raw_sockets`.
    pub fn flag(&mut self, name: &str) -> &mut Self {
        self.params.push((name.to_string(), None));
        self
    }

    /// A `name=value` parameter.
    pub fn set(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.params.push((name.to_string(), Some(value.into())));
        self
    }

    /// The parameters as `jail -c` receives them.
    #[cfg(test)]
    pub(crate) fn to_strings(&self) -> Vec<String> {
        self.to_args()
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn to_args(&self) -> Vec<OsString> {
        self.params
            .iter()
            .map(|(k, v)| match v {
                Some(v) => OsString::from(format!("{k}={v}")),
                None => OsString::from(k),
            })
            .collect()
    }
}

/// A command to run inside a jail.
#[derive(Debug, Clone)]
pub struct JexecSpec {
    pub jail: String,
    /// Run as this user of the jail's passwd (`jexec -U`); root when `None`.
    pub user: Option<String>,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
}

impl Host {
    /// `jail -i -c params…`; returns the new JID.
    pub async fn jail_create(&self, params: &JailParams) -> Result<u32, HostError> {
        let mut args = argv!["-i", "-c"];
        args.extend(params.to_args());
        let out = self.run(Tool::Jail, args).await?;
        parse_jid(&out.stdout).map_err(|detail| HostError::Parse {
            command: "jail -i -c".to_string(),
            detail,
        })
    }

    /// Removes jail `name`. `force` kills its processes at once (`jail -R`), otherwise jail(8)
    /// runs `exec.stop` and waits `stop.timeout` (`jail -r`). A missing jail is [`HostError::Absent`].
    pub async fn jail_remove(&self, name: &str, force: bool) -> Result<(), HostError> {
        let flag = if force { "-R" } else { "-r" };
        match self.run(Tool::Jail, argv![flag, name]).await {
            Ok(_) => Ok(()),
            Err(HostError::Failed {
                command, stderr, ..
            }) if stderr.contains("not found") => Err(HostError::Absent {
                command,
                what: format!("jail {name}"),
            }),
            Err(e) => Err(e),
        }
    }

    /// Every jail on the host, as `(jid, name)` (`jls jid name`).
    pub async fn jails(&self) -> Result<Vec<(u32, String)>, HostError> {
        let out = self.run(Tool::Jls, argv!["jid", "name"]).await?;
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| {
                let (jid, name) = l.trim().split_once(' ')?;
                Some((jid.parse().ok()?, name.trim().to_string()))
            })
            .collect())
    }

    /// The names of every jail on the host, sorted.
    pub async fn jail_names(&self) -> Result<std::collections::BTreeSet<String>, HostError> {
        Ok(self
            .jails()
            .await?
            .into_iter()
            .map(|(_, name)| name)
            .collect())
    }

    /// Whether jail `name` is alive (`jls -j name jid`); a dying one is not: it can hold no
    /// process any more.
    pub async fn jail_exists(&self, name: &str) -> Result<bool, HostError> {
        match self.run(Tool::Jls, argv!["-j", name, "jid"]).await {
            Ok(_) => Ok(true),
            Err(HostError::Failed { stderr, .. })
                if stderr.contains("not found") || stderr.contains("is dying") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The names of the removed jails the kernel still holds (`jls -d name dying`).
    pub async fn dying_jail_names(&self) -> Result<std::collections::BTreeSet<String>, HostError> {
        let out = self.run(Tool::Jls, argv!["-d", "name", "dying"]).await?;
        Ok(parse_dying(&out.stdout))
    }

    /// `jexec` of `spec`, resolved and ready to hand to another process.
    pub fn jexec_invocation(&self, spec: &JexecSpec) -> Result<Invocation, HostError> {
        let mut args = Vec::new();
        if let Some(user) = &spec.user {
            args.extend(["-U".to_string(), user.clone()]);
        }
        args.push(spec.jail.clone());
        args.extend(spec.argv.iter().cloned());
        Ok(Invocation {
            program: self.resolve(Tool::Jexec)?,
            args,
            env: spec.env.clone(),
        })
    }
}

/// `jls -d name dying` output: the names whose `dying` is `true`.
pub fn parse_dying(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim().rsplit_once(' '))
        .filter(|(_, dying)| *dying == "true")
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The JID that `jail -i -c` prints.
pub fn parse_jid(text: &str) -> Result<u32, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("expected a JID, got {:?}", text.trim()))
}

/// A resolved tool run: program, argv verbatim and the exact environment. Serializable, so that
/// the task supervisor (another process) can spawn it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

impl Invocation {
    /// The command, with stdin null and stdout/stderr piped; callers may redirect them. What it
    /// runs starts with every signal at its default action, whatever the driver's own starter
    /// ignored ([`super::default_signal_actions`]).
    pub fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: default_signal_actions only calls sigaction, which is async-signal-safe, and
        // allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                super::default_signal_actions();
                Ok(())
            });
        }
        cmd
    }

    /// `jexec …` as shown in errors.
    pub fn display(&self) -> String {
        let args: Vec<OsString> = self.args.iter().map(OsString::from).collect();
        display_command(Tool::Jexec, &args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dying_names_from_jls() {
        let names = parse_dying("web_1 true\nweb_2 false\ndb_1 true\n\n");
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["db_1", "web_1"]);
    }

    #[test]
    fn params_keep_order_and_bare_flags() {
        let mut p = JailParams::default();
        p.flag("persist")
            .set("name", "web_1")
            .set("path", "/opt/pot/jails/web_1/m");
        let args: Vec<String> = p
            .to_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            ["persist", "name=web_1", "path=/opt/pot/jails/web_1/m"]
        );
    }
}
