//! go-plugin's handshake as Nomad drives it: the magic cookie, a private unix socket and the
//! one handshake line on stdout.

use std::io::Write;
use std::path::{Path, PathBuf};

pub const MAGIC_COOKIE_KEY: &str = "NOMAD_PLUGIN_MAGIC_COOKIE";
pub const MAGIC_COOKIE_VALUE: &str =
    "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255";
/// go-plugin's core protocol version.
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// Nomad's plugin protocol version (0.9+ gRPC plugins).
pub const APP_PROTOCOL_VERSION: u32 = 2;

/// Why the process may not serve.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error(
        "This binary is a plugin. These are not meant to be executed directly. Please execute the program that consumes these plugins, which will load any plugins automatically"
    )]
    NoCookie,
    #[error(
        "the host accepts plugin protocol versions {0:?}, this plugin speaks {APP_PROTOCOL_VERSION}"
    )]
    Version(String),
    #[error("cannot create the plugin socket directory under {dir}: {source}")]
    SocketDir {
        dir: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// Checks the environment Nomad sets before anything else happens.
pub fn check_environment(env: impl Fn(&str) -> Option<String>) -> Result<(), HandshakeError> {
    if env(MAGIC_COOKIE_KEY).as_deref() != Some(MAGIC_COOKIE_VALUE) {
        return Err(HandshakeError::NoCookie);
    }
    if let Some(versions) = env("PLUGIN_PROTOCOL_VERSIONS")
        && !versions
            .split(',')
            .any(|v| v.trim() == APP_PROTOCOL_VERSION.to_string())
    {
        return Err(HandshakeError::Version(versions));
    }
    Ok(())
}

/// A private (0700) directory holding the socket; removed on drop.
pub struct SocketDir {
    dir: PathBuf,
}

impl SocketDir {
    /// Short paths matter: FreeBSD limits unix socket paths to 104 bytes.
    pub fn create() -> Result<SocketDir, HandshakeError> {
        let base = std::env::var_os("TMPDIR")
            .map(PathBuf::from)
            .filter(|d| d.is_absolute() && d.as_os_str().len() <= 60)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        let dir = nix::unistd::mkdtemp(&base.join("pot-plugin-XXXXXX"))
            .map_err(|source| HandshakeError::SocketDir { dir: base, source })?;
        Ok(SocketDir { dir })
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("plugin.sock")
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `1|2|unix|<socket>|grpc|` — six fields, the certificate field empty because Nomad never
/// enables AutoMTLS.
pub fn handshake_line(socket: &Path) -> String {
    format!(
        "{CORE_PROTOCOL_VERSION}|{APP_PROTOCOL_VERSION}|unix|{}|grpc|\n",
        socket.display()
    )
}

/// What is wrong with a handshake line: why go-plugin's client (Nomad's agent) would refuse it,
/// in its own words where it has them, or that it announces no unix socket.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineError {
    #[error(
        "go-plugin says \"Unrecognized remote plugin message\": the first line on stdout must be the handshake (nothing may be printed before it)"
    )]
    Unrecognized,
    #[error("incompatible core API version {0:?} (must be {CORE_PROTOCOL_VERSION})")]
    CoreVersion(String),
    #[error(
        "incompatible API version with plugin. Plugin version: {0}, Client versions: [{APP_PROTOCOL_VERSION}]"
    )]
    AppVersion(String),
    #[error("socket path {0:?} is not absolute")]
    RelativeSocket(String),
    #[error("a tcp listener where a unix socket was expected")]
    Tcp,
    #[error("unknown address type {0:?}")]
    Network(String),
    #[error("unsupported plugin protocol {0:?}. Supported: [grpc]")]
    Protocol(String),
    #[error("a server certificate in field 6: Nomad never enables AutoMTLS and would crash on it")]
    Certificate,
}

/// The unix socket a handshake line announces, the line judged as go-plugin's client judges it
/// for a Nomad host (more leniently than [`handshake_line`] writes it: the protocol field may be
/// missing, meaning netrpc, and so may the certificate field).
pub fn announced_socket(line: &str) -> Result<PathBuf, LineError> {
    let parts: Vec<&str> = line.trim().split('|').collect();
    if parts.len() < 4 {
        return Err(LineError::Unrecognized);
    }
    if parts[0] != CORE_PROTOCOL_VERSION.to_string() {
        return Err(LineError::CoreVersion(parts[0].to_string()));
    }
    if parts[1] != APP_PROTOCOL_VERSION.to_string() {
        return Err(LineError::AppVersion(parts[1].to_string()));
    }
    match parts[2] {
        "unix" if parts[3].starts_with('/') => {}
        "unix" => return Err(LineError::RelativeSocket(parts[3].to_string())),
        "tcp" => return Err(LineError::Tcp),
        other => return Err(LineError::Network(other.to_string())),
    }
    match parts.get(4).copied().unwrap_or("netrpc") {
        "grpc" => {}
        other => return Err(LineError::Protocol(other.to_string())),
    }
    // go-plugin takes a long sixth field for a base64 certificate.
    if parts.get(5).is_some_and(|cert| cert.len() > 50) {
        return Err(LineError::Certificate);
    }
    Ok(PathBuf::from(parts[3]))
}

/// Prints the handshake, then points fd 1 at /dev/null: nothing else may ever reach stdout, and
/// a stray write after the agent is gone must not fail.
pub fn announce(socket: &Path) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(handshake_line(socket).as_bytes())?;
    out.flush()?;
    let devnull = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    nix::unistd::dup2_stdout(&devnull).map_err(std::io::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn requires_the_cookie_and_protocol_2() {
        assert!(matches!(
            check_environment(env(&[])),
            Err(HandshakeError::NoCookie)
        ));
        assert!(matches!(
            check_environment(env(&[(MAGIC_COOKIE_KEY, "nope")])),
            Err(HandshakeError::NoCookie)
        ));
        assert!(check_environment(env(&[(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)])).is_ok());
        assert!(
            check_environment(env(&[
                (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
                ("PLUGIN_PROTOCOL_VERSIONS", "1,2")
            ]))
            .is_ok()
        );
        assert!(matches!(
            check_environment(env(&[
                (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
                ("PLUGIN_PROTOCOL_VERSIONS", "1")
            ])),
            Err(HandshakeError::Version(_))
        ));
    }

    #[test]
    fn line_has_six_fields_and_an_empty_cert() {
        assert_eq!(
            handshake_line(Path::new("/tmp/pot-plugin-x/plugin.sock")),
            "1|2|unix|/tmp/pot-plugin-x/plugin.sock|grpc|\n"
        );
    }

    #[test]
    fn a_nomad_host_accepts_the_line_this_plugin_prints() {
        let socket = Path::new("/tmp/pot-plugin-x/plugin.sock");
        assert_eq!(
            announced_socket(&handshake_line(socket)),
            Ok(socket.to_path_buf())
        );
    }

    #[test]
    fn handshake_lines_as_go_plugin_judges_them() {
        assert_eq!(
            announced_socket("1|2|unix|/tmp/p/s|grpc"),
            Ok(PathBuf::from("/tmp/p/s"))
        );
        assert_eq!(
            announced_socket("hello world"),
            Err(LineError::Unrecognized)
        );
        assert_eq!(
            announced_socket("2|2|unix|/s|grpc|"),
            Err(LineError::CoreVersion("2".into()))
        );
        let old = announced_socket("1|1|unix|/s|grpc|").unwrap_err();
        assert!(old.to_string().contains("Plugin version: 1"), "{old}");
        assert_eq!(
            announced_socket("1|2|unix|/s"),
            Err(LineError::Protocol("netrpc".into()))
        );
        assert_eq!(
            announced_socket("1|2|unix|rel|grpc|"),
            Err(LineError::RelativeSocket("rel".into()))
        );
        assert_eq!(
            announced_socket("1|2|tcp|127.0.0.1:1|grpc|"),
            Err(LineError::Tcp)
        );
        assert_eq!(
            announced_socket(&format!("1|2|unix|/s|grpc|{}", "A".repeat(60))),
            Err(LineError::Certificate)
        );
    }

    #[test]
    fn socket_dir_is_private_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let d = SocketDir::create().unwrap();
        let path = d.socket().parent().unwrap().to_path_buf();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(d.socket().as_os_str().len() < 104);
        drop(d);
        assert!(!path.exists());
    }
}
