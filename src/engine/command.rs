//! The task's argv, decided in Rust: no shell ever sees the command.

use super::EngineError;
use std::collections::BTreeMap;

/// FreeBSD's login PATH, for tasks whose environment has none (IMAGE isolation passes no host env).
pub(super) const DEFAULT_JAIL_PATH: &str =
    "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin";

/// How a task's command line became an argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv {
    pub argv: Vec<String>,
    /// Indexes of `args` elements whose one pair of outer quotes was removed.
    pub unquoted_args: Vec<usize>,
}

/// Builds the argv from the task config's `command` and `args`, or from the image's `pot.cmd`.
///
/// * `command` without `args`: split by POSIX quoting rules, no expansion of any kind.
/// * `args` present: `command` is the program, each arg is passed verbatim, except that with
///   `quote_compat` an arg wrapped whole in one pair of matching quotes with no other quote inside
///   loses that pair (Go-driver jobs wrote `'daemon off;'` because pot re-split the line).
/// * neither: the image's `pot.cmd`, split like `command`.
pub fn resolve(
    command: Option<&str>,
    args: &[String],
    image_cmd: Option<&str>,
    quote_compat: bool,
) -> Result<Argv, EngineError> {
    let command = command.map(str::trim).filter(|c| !c.is_empty());
    match (command, args.is_empty()) {
        (None, false) => Err(EngineError::InvalidInput(
            "command can not be empty if arguments are provided".to_string(),
        )),
        (Some(cmd), false) => {
            let mut argv = vec![cmd.to_string()];
            let mut unquoted_args = Vec::new();
            for (i, arg) in args.iter().enumerate() {
                match strip_outer_quotes(arg).filter(|_| quote_compat) {
                    Some(inner) => {
                        unquoted_args.push(i);
                        argv.push(inner.to_string());
                    }
                    None => argv.push(arg.clone()),
                }
            }
            Ok(Argv {
                argv,
                unquoted_args,
            })
        }
        (Some(cmd), true) => split("command", cmd),
        (None, true) => match image_cmd.map(str::trim).filter(|c| !c.is_empty()) {
            Some(cmd) => split("the image's pot.cmd", cmd),
            None => Err(EngineError::InvalidInput(
                "no command: set `command` in the task config (the image has no pot.cmd)"
                    .to_string(),
            )),
        },
    }
}

fn split(what: &str, line: &str) -> Result<Argv, EngineError> {
    let argv = shell_words::split(line)
        .map_err(|e| EngineError::InvalidInput(format!("{what} {line:?}: {e}")))?;
    if argv.is_empty() {
        return Err(EngineError::InvalidInput(format!("{what} is empty")));
    }
    Ok(Argv {
        argv,
        unquoted_args: Vec::new(),
    })
}

/// Refuses what execve(2) cannot carry: a NUL in any argv element, environment key or value,
/// and an empty key or one holding `=` (the kernel splits `KEY=VALUE` at the first `=`, so the
/// task would see another variable). Checked before anything changes on the host.
pub fn check_exec(argv: &[String], env: &BTreeMap<String, String>) -> Result<(), EngineError> {
    let bad = |m: String| Err(EngineError::InvalidInput(m));
    for (i, arg) in argv.iter().enumerate() {
        if arg.contains('\0') {
            let what = if i == 0 {
                "command".to_string()
            } else {
                format!("args[{}]", i - 1)
            };
            return bad(format!(
                "{what} contains a NUL byte, which no program can receive"
            ));
        }
    }
    for (key, value) in env {
        if key.is_empty() || key.contains(['=', '\0']) {
            return bad(format!(
                "environment variable name {:?} is empty or contains '=' or a NUL byte",
                clip(key)
            ));
        }
        if value.contains('\0') {
            return bad(format!(
                "environment variable {key} contains a NUL byte, which no program can receive"
            ));
        }
    }
    Ok(())
}

/// A user string as an error shows it: at most 64 characters.
fn clip(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

fn strip_outer_quotes(arg: &str) -> Option<&str> {
    let quote = arg.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = arg.strip_prefix(quote)?.strip_suffix(quote)?;
    (!inner.contains(['\'', '"'])).then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(c: Option<&str>, a: &[&str], img: Option<&str>, compat: bool) -> Vec<String> {
        let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        resolve(c, &a, img, compat).unwrap().argv
    }

    #[test]
    fn command_alone_is_split_posix_style_without_expansion() {
        assert_eq!(
            argv(Some("nginx -g 'daemon off;'"), &[], None, true),
            ["nginx", "-g", "daemon off;"]
        );
        assert_eq!(
            argv(Some("echo $HOME *"), &[], None, true),
            ["echo", "$HOME", "*"]
        );
    }

    #[test]
    fn args_are_verbatim_except_one_outer_quote_pair() {
        let r = resolve(
            Some("nginx"),
            &["-g".into(), "'daemon off;'".into()],
            None,
            true,
        )
        .unwrap();
        assert_eq!(r.argv, ["nginx", "-g", "daemon off;"]);
        assert_eq!(r.unquoted_args, [1]);
        assert_eq!(
            argv(
                Some("/bin/sh"),
                &["-c", "trap 'exit 7' USR1; sleep 5"],
                None,
                true
            ),
            ["/bin/sh", "-c", "trap 'exit 7' USR1; sleep 5"]
        );
        assert_eq!(
            argv(Some("nginx"), &["'daemon off;'"], None, false),
            ["nginx", "'daemon off;'"]
        );
        assert_eq!(argv(Some("x"), &["'a'b'"], None, true), ["x", "'a'b'"]);
    }

    #[test]
    fn refuses_what_execve_cannot_carry() {
        let env = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        let sh = ["/bin/sh".to_string(), "-c".to_string(), "true".to_string()];
        assert!(check_exec(&sh, &env("PATH", "/bin")).is_ok());
        let msg = |argv: &[String], env| check_exec(argv, &env).unwrap_err().to_string();
        assert!(msg(&sh, env("A=B", "x")).contains("\"A=B\" is empty or contains '='"));
        assert!(msg(&sh, env("", "x")).contains("\"\" is empty"));
        assert!(msg(&sh, env("A\0B", "x")).contains("NUL"));
        assert!(msg(&sh, env("A", "x\0y")).contains("environment variable A contains a NUL"));
        let nul_arg = ["/bin/sh".to_string(), "a\0b".to_string()];
        assert!(msg(&nul_arg, env("A", "x")).starts_with("args[0] contains a NUL"));
        let nul_cmd = ["/bin/\0sh".to_string()];
        assert!(msg(&nul_cmd, env("A", "x")).starts_with("command contains a NUL"));
        let long = "K=".repeat(100_000);
        assert!(
            msg(&sh, env(&long, "x")).len() < 200,
            "the key is clipped in the error"
        );
    }

    #[test]
    fn falls_back_to_image_command_and_rejects_bad_input() {
        assert_eq!(argv(None, &[], Some("sh /etc/rc"), true), ["sh", "/etc/rc"]);
        assert!(resolve(None, &["x".into()], None, true).is_err());
        assert!(resolve(Some("echo 'unterminated"), &[], None, true).is_err());
        assert!(resolve(None, &[], None, true).is_err());
    }
}
