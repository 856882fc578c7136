//! Which CAs an `https://` image server's certificate may chain to: the system trust store where
//! OpenSSL (and so `fetch(1)`, which pot uses) finds it, plus the agent's `image_ca_file`.
//!
//! Read afresh for each import, so a `certctl rehash` or a renewed private CA needs no restart.

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// FreeBSD's bundle (base, or ca_root_nss's link) and certctl's hashed directory.
const SYSTEM_FILE: &str = "/etc/ssl/cert.pem";
const SYSTEM_DIR: &str = "/etc/ssl/certs";

/// Where the system trust store is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SystemStore {
    file: PathBuf,
    dirs: Vec<PathBuf>,
}

impl SystemStore {
    /// As OpenSSL does: `SSL_CERT_FILE` replaces the bundle, `SSL_CERT_DIR` (`:`-separated) the
    /// directory, each on its own.
    pub fn from_env(var: impl Fn(&str) -> Option<OsString>) -> SystemStore {
        let set = |name| var(name).filter(|v| !v.is_empty());
        SystemStore {
            file: set("SSL_CERT_FILE").map_or_else(|| SYSTEM_FILE.into(), PathBuf::from),
            dirs: set("SSL_CERT_DIR").map_or_else(
                || vec![SYSTEM_DIR.into()],
                |dirs| std::env::split_paths(&dirs).collect(),
            ),
        }
    }

    /// Every certificate in the bundle and in the directories' files; what is missing or not
    /// PEM is skipped, as OpenSSL skips it.
    fn certificates(&self) -> Vec<CertificateDer<'static>> {
        let mut files = vec![self.file.clone()];
        for dir in &self.dirs {
            if let Ok(entries) = std::fs::read_dir(dir) {
                files.extend(entries.flatten().map(|e| e.path()));
            }
        }
        let mut certs: Vec<CertificateDer<'static>> = files
            .iter()
            .filter(|f| f.is_file())
            .filter_map(|f| CertificateDer::pem_file_iter(f).ok())
            .flat_map(|certs| certs.flatten())
            .collect();
        // Bundles and hashed links hold the same certificates more than once.
        certs.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
        certs.dedup();
        certs
    }

    fn describe(&self) -> String {
        let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        format!("{} and {}", self.file.display(), dirs.join(", "))
    }
}

/// The TLS client settings of one import, and what they trust, for error messages.
pub(super) struct Trust {
    pub config: rustls::ClientConfig,
    pub description: String,
}

impl Trust {
    pub fn load(system: &SystemStore, ca_file: Option<&Path>) -> Result<Trust, CaFileError> {
        let mut roots = RootCertStore::empty();
        let (system_count, _unusable) = roots.add_parsable_certificates(system.certificates());
        let mut description = format!(
            "the system trust store ({system_count} certificates from {})",
            system.describe()
        );
        match ca_file {
            Some(path) => {
                let certs = read_ca_file(path)?;
                let count = match certs.len() {
                    1 => "1 certificate".to_string(),
                    n => format!("{n} certificates"),
                };
                for cert in certs {
                    roots.add(cert).map_err(|source| CaFileError::Unusable {
                        path: path.to_path_buf(),
                        source,
                    })?;
                }
                description.push_str(&format!(" and image_ca_file {} ({count})", path.display()));
            }
            None => description.push_str("; set image_ca_file for a private CA"),
        }
        Ok(Trust {
            config: client_config(roots),
            description,
        })
    }
}

/// Why `image_ca_file` cannot be trusted: the file, its PEM, or a certificate in it.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a PEM file: {source}", path.display())]
    NotPem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: not a usable CA certificate: {source}", path.display())]
    Unusable {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// The certificates of a PEM file; an error unless there is at least one.
pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let text = std::fs::read(path).map_err(|source| CaFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CaFileError::NotPem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(CaFileError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// ring, not the process-wide default provider: nothing else in the plugin has to agree.
fn client_config(roots: RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The reason a TLS connection was refused, when `e` (or what it wraps) is a TLS error: the
/// certificate or the handshake, which no retry will change. I/O errors (reset, EOF) are not.
/// `trusted` describes the trust store, for the certificates it does not vouch for.
pub(super) fn tls_failure(e: &(dyn std::error::Error + 'static), trusted: &str) -> Option<String> {
    use rustls::{CertificateError, Error};
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<Error>() {
            return Some(match tls {
                Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature,
                ) => format!("the server's certificate is not trusted ({tls}); trusted: {trusted}"),
                Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                ) => format!("the server's certificate is for another host ({tls})"),
                Error::InvalidCertificate(_) => {
                    format!("the server's certificate was rejected ({tls})")
                }
                _ => format!("TLS handshake failed ({tls})"),
            });
        }
        // io::Error's own `source` skips the error it wraps; `get_ref` does not.
        next = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn system_store_is_freebsds_unless_the_openssl_variables_say_otherwise() {
        let store = |vars| SystemStore::from_env(env(vars));
        assert_eq!(
            store(&[]),
            SystemStore {
                file: "/etc/ssl/cert.pem".into(),
                dirs: vec!["/etc/ssl/certs".into()]
            }
        );
        assert_eq!(
            store(&[("SSL_CERT_FILE", "/x/ca.pem"), ("SSL_CERT_DIR", "")]),
            SystemStore {
                file: "/x/ca.pem".into(),
                dirs: vec!["/etc/ssl/certs".into()]
            }
        );
        assert_eq!(
            store(&[("SSL_CERT_DIR", "/a:/b")]),
            SystemStore {
                file: "/etc/ssl/cert.pem".into(),
                dirs: vec!["/a".into(), "/b".into()]
            }
        );
    }

    #[test]
    fn reads_bundles_and_hashed_dirs_once_each() {
        let tmp = tempfile::tempdir().unwrap();
        let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
        let dir = tmp.path().join("certs");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(tls.join("ca.pem"), dir.join("0a1b2c3d.0")).unwrap();
        std::fs::write(dir.join("README"), "not a certificate\n").unwrap();
        let bundle = tmp.path().join("bundle.pem");
        let mut text = std::fs::read(tls.join("ca.pem")).unwrap();
        text.extend(std::fs::read(tls.join("localhost.pem")).unwrap());
        std::fs::write(&bundle, text).unwrap();
        let store = SystemStore {
            file: bundle,
            dirs: vec![dir, tmp.path().join("absent")],
        };
        assert_eq!(store.certificates().len(), 2, "the CA once, the leaf once");
        let trust = Trust::load(&store, None).unwrap();
        assert!(
            trust
                .description
                .starts_with("the system trust store (2 certificates from "),
            "{}",
            trust.description
        );
        let ca = tls.join("ca.pem");
        let trust = Trust::load(&store, Some(&ca)).unwrap();
        assert!(
            trust.description.ends_with(&format!(
                " and image_ca_file {} (1 certificate)",
                ca.display()
            )),
            "{}",
            trust.description
        );
        let gone = tmp.path().join("gone.pem");
        let e = Trust::load(&store, Some(&gone)).err().unwrap();
        assert!(
            matches!(&e, CaFileError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{e:?}"
        );
        let shown = super::super::ImageError::CaFile(e).to_string();
        assert!(
            shown.starts_with("image_ca_file ") && shown.contains("gone.pem"),
            "{shown}"
        );
    }

    #[test]
    fn ca_file_must_hold_a_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
        assert_eq!(read_ca_file(&tls.join("ca.pem")).unwrap().len(), 1);
        let empty = tmp.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = read_ca_file(&empty).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = read_ca_file(&tls.join("server.key"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no PEM certificate"), "a key is not a CA: {e}");
        let e = read_ca_file(&tmp.path().join("absent.pem")).unwrap_err();
        assert!(e.to_string().contains("absent.pem: No such file"), "{e}");
        assert!(matches!(e, CaFileError::Read { .. }), "{e:?}");
    }
}
