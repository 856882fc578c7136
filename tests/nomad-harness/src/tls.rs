//! The test PKI of `tests/tls` (see `generate.sh` there): a CA and server certificates for
//! `https://` image servers on 127.0.0.1.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Which certificate a test server presents. Both are signed by [`test_ca`].
#[derive(Debug, Clone, Copy)]
pub enum TestCert {
    /// Valid for 127.0.0.1, ::1 and localhost.
    Localhost,
    /// Valid for images.example.org only: a hostname mismatch on 127.0.0.1.
    OtherHost,
    /// Like `Localhost`, but expired in 2001.
    Expired,
}

fn pki() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tls")
}

/// The test CA's certificate, for `image_ca_file` or `SSL_CERT_FILE`.
pub fn test_ca() -> PathBuf {
    pki().join("ca.pem")
}

/// A TLS 1.2/1.3 server presenting `cert`.
pub fn server_config(cert: TestCert) -> Arc<rustls::ServerConfig> {
    let file = match cert {
        TestCert::Localhost => "localhost.pem",
        TestCert::OtherHost => "other-host.pem",
        TestCert::Expired => "expired.pem",
    };
    let chain = CertificateDer::pem_file_iter(pki().join(file))
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let key = PrivateKeyDer::from_pem_file(pki().join("server.key"))
        .unwrap_or_else(|e| panic!("server.key: {e}"));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports TLS 1.2 and 1.3")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("the test certificate matches the test key");
    Arc::new(config)
}
