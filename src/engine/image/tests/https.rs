//! `https://` images: private CAs, refused certificates and handshakes, redirects, resumes.

use super::*;

/// A TCP server on 127.0.0.1 that answers every connection with `answer` (nothing: a reset)
/// without reading it, for handshakes that go wrong.
fn raw_server(answer: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(answer);
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn imports_over_https_with_a_private_ca() {
    let f = Fixture::trusting_test_ca();
    let server = f.serve_https(TestCert::Localhost, vec![Reply::body(&f.xz.clone())]);
    assert!(server.url().starts_with("https://"));
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1);
    f.sim.assert_clean("after an https import");
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_certificate_is_refused_at_once_and_leaves_nothing() {
    let f = Fixture::new();
    let server = f.serve_https(TestCert::Localhost, vec![Reply::body(&f.xz.clone())]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "GET {}demo_1.0.xz.skein: the server's certificate is not trusted (invalid peer certificate: UnknownIssuer); trusted: the system trust store (",
            server.url()
        )) && msg.ends_with("; set image_ca_file for a private CA"),
        "{msg}"
    );
    assert!(
        !e.is_transient(),
        "retrying meets the same certificate: {msg}"
    );
    assert!(
        server.requests("/demo_1.0.xz.skein").is_empty(),
        "no request crosses a refused handshake"
    );
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_for_another_host_is_refused() {
    let f = Fixture::trusting_test_ca();
    let server = f.serve_https(TestCert::OtherHost, vec![Reply::body(&f.xz.clone())]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "GET {}demo_1.0.xz.skein: the server's certificate is for another host (",
            server.url()
        )) && msg.contains("images.example.org"),
        "{msg}"
    );
    assert!(!e.is_transient(), "{msg}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_certificate_is_refused() {
    let f = Fixture::trusting_test_ca();
    let server = f.serve_https(TestCert::Expired, vec![Reply::body(&f.xz.clone())]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "GET {}demo_1.0.xz.skein: the server's certificate was rejected (invalid peer certificate: certificate expired",
            server.url()
        )),
        "{msg}"
    );
    assert!(!e.is_transient(), "{msg}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_tls_fails_the_handshake_permanently() {
    let f = Fixture::trusting_test_ca();
    let port = raw_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    let e = f.import_err(&format!("https://127.0.0.1:{port}/")).await;
    let msg = e.to_string();
    assert!(
        msg.contains("demo_1.0.xz.skein: TLS handshake failed ("),
        "{msg}"
    );
    assert!(!e.is_transient(), "{msg}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_during_the_handshake_is_transient() {
    let mut f = Fixture::trusting_test_ca();
    f.cfg.image.attempts = 1;
    let port = raw_server(b"");
    let e = f.import_err(&format!("https://127.0.0.1:{port}/")).await;
    let msg = e.to_string();
    assert!(msg.contains("demo_1.0.xz.skein: "), "{msg}");
    assert!(!msg.contains("TLS handshake failed"), "{msg}");
    assert!(
        e.is_transient(),
        "a cut connection is worth retrying: {msg}"
    );
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_to_http_redirect_is_refused_as_a_downgrade() {
    let f = Fixture::trusting_test_ca();
    let plain = f.serve(vec![Reply::body(&f.xz.clone())]);
    let target = format!("{}demo_1.0.xz", plain.url());
    let server = f.serve_https(TestCert::Localhost, vec![Reply::Redirect(target.clone())]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "redirect to {target:?} refused: a downgrade from https:// to http://"
        )),
        "{msg}"
    );
    assert!(!e.is_transient(), "{msg}");
    assert!(plain.requests("/demo_1.0.xz").is_empty());
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_redirects_within_https_are_followed() {
    let f = Fixture::trusting_test_ca();
    let mirror = f.serve_https(TestCert::Localhost, vec![Reply::body(&f.xz.clone())]);
    let server = f.serve_https(
        TestCert::Localhost,
        vec![Reply::Redirect(format!("{}demo_1.0.xz", mirror.url()))],
    );
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
    assert_eq!(mirror.requests("/demo_1.0.xz").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_https_download_resumes_with_range() {
    let f = Fixture::trusting_test_ca();
    let server = f.serve_https(
        TestCert::Localhost,
        vec![
            Reply::Cut {
                data: f.xz.clone(),
                after: f.xz.len() / 3,
                etag: Some("\"v1\""),
            },
            Reply::Body {
                data: f.xz.clone(),
                etag: Some("\"v1\""),
            },
        ],
    );
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
    assert_eq!(
        server.requests("/demo_1.0.xz"),
        [None, Some(format!("bytes={}-", f.xz.len() / 3))]
    );
}
