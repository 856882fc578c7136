//! Image downloads through an HTTP proxy, as fetch(3) makes them: `HTTP_PROXY` is sent
//! `http://` requests in absolute form, `https://` goes through a `CONNECT` tunnel, `NO_PROXY`
//! goes around it, and the proxy URL's credentials answer a 407 without ever being shown.

use super::*;
use nomad_harness::ForwardProxy;

/// The proxies these variables name, as the plugin reads them from its environment.
fn proxies(vars: &[(&str, &str)]) -> Proxies {
    Proxies::from_env(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
}

/// base64("alice:s3cret"), the image server's.
const ALICE: &str = "Basic YWxpY2U6czNjcmV0";
/// base64("bob:pr0xy"), the proxy's.
const BOB: &str = "Basic Ym9iOnByMHh5";

/// Neither user nor password appears in `shown`.
fn assert_hidden(shown: &str) {
    for secret in ["alice", "s3cret", "bob", "pr0xy", "wr0ng"] {
        assert!(!shown.contains(secret), "{secret:?} shown in {shown}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_images_go_through_the_proxy_in_absolute_form() {
    let mut f = Fixture::new();
    let proxy = ForwardProxy::start();
    let server = f.serve(vec![Reply::body(&f.xz)]);
    f.cfg.image.proxies = proxies(&[("http_proxy", &proxy.url(""))]);
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
    let lines = proxy.request_lines();
    for file in ["demo_1.0.xz.skein", "demo_1.0.xz.meta", "demo_1.0.xz"] {
        let line = format!("GET {}{file} HTTP/1.1", server.url());
        assert!(lines.contains(&line), "{line} not in {lines:?}");
    }
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1);
    assert!(proxy.asked().iter().all(|(_, auth)| auth.is_none()));
}

#[tokio::test(flavor = "multi_thread")]
async fn https_images_tunnel_through_connect_to_https_proxy_else_http_proxy() {
    let proxy = ForwardProxy::start();
    let dead = refused_url();
    // fetch(3) tunnels https:// through HTTP_PROXY; HTTPS_PROXY, when set, comes first.
    for vars in [
        vec![("HTTP_PROXY", proxy.url(""))],
        vec![("HTTP_PROXY", dead.clone()), ("HTTPS_PROXY", proxy.url(""))],
    ] {
        let mut f = Fixture::trusting_test_ca();
        let server = f.serve_https(TestCert::Localhost, vec![Reply::body(&f.xz)]);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        f.cfg.image.proxies = proxies(&vars);
        let seen = proxy.request_lines().len();
        f.import(&server.url()).await.unwrap();
        f.assert_imported().await;
        let lines = proxy.request_lines().split_off(seen);
        let connect = format!("CONNECT 127.0.0.1:{} HTTP/1.1", server.port);
        assert!(
            !lines.is_empty() && lines.iter().all(|l| *l == connect),
            "{vars:?}: {lines:?}"
        );
        assert_eq!(server.requests("/demo_1.0.xz").len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_proxy_is_transient_and_no_proxy_hosts_go_around_it() {
    let mut f = Fixture::new();
    f.cfg.image.attempts = 1;
    let server = f.serve(vec![Reply::body(&f.xz)]);
    let dead = refused_url();
    let dead = dead.trim_end_matches('/');
    f.cfg.image.proxies = proxies(&[("HTTP_PROXY", dead)]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "demo_1.0.xz.skein: connect to proxy {dead} (HTTP_PROXY): "
        )),
        "{msg}"
    );
    assert!(e.is_transient(), "the proxy may come back: {msg}");
    assert_eq!(server.request_count(), 0);
    f.assert_nothing_left().await;
    for list in ["images.example.org, 127.0.0.1", "*"] {
        let mut f = Fixture::new();
        let server = f.serve(vec![Reply::body(&f.xz)]);
        f.cfg.image.proxies = proxies(&[("HTTP_PROXY", dead), ("no_proxy", list)]);
        f.import(&server.url()).await.unwrap();
        f.assert_imported().await;
        assert_eq!(server.requests("/demo_1.0.xz").len(), 1, "{list}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_variable_naming_no_usable_proxy_fails_at_once_naming_it() {
    let mut f = Fixture::new();
    let server = f.serve(vec![Reply::body(&f.xz)]);
    f.cfg.image.proxies = proxies(&[("HTTP_PROXY", "socks5://bob:pr0xy@127.0.0.1:1080")]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains(
            "demo_1.0.xz.skein: HTTP_PROXY=\"socks5://***@127.0.0.1:1080\" names no usable proxy: only http:// proxies are supported, not socks5://"
        ),
        "{msg}"
    );
    assert_hidden(&msg);
    assert!(!e.is_transient(), "{msg}");
    assert_eq!(server.request_count(), 0);
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_that_wants_credentials_gets_them_after_a_407_and_they_are_never_shown() {
    let mut f = Fixture::new();
    let proxy = ForwardProxy::with_auth(BOB);
    let server = f.serve(vec![Reply::body(&f.xz)]);
    f.cfg.image.proxies = proxies(&[("HTTP_PROXY", &proxy.url(""))]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "demo_1.0.xz.skein: HTTP 407 Proxy Authentication Required from proxy {} (HTTP_PROXY)",
            proxy.url("")
        )),
        "{msg}"
    );
    assert!(!e.is_transient(), "{msg}");
    f.assert_nothing_left().await;

    f.cfg.image.proxies = proxies(&[("HTTP_PROXY", &proxy.url("bob:wr0ng@"))]);
    let (result, events) = f.import_reporting(&server.url()).await;
    let msg = result.unwrap_err().to_string();
    assert!(
        msg.contains(&format!("from proxy {} (HTTP_PROXY)", proxy.url("***@"))),
        "{msg}"
    );
    assert_hidden(&format!("{msg} {events:?}"));
    f.assert_nothing_left().await;

    f.cfg.image.proxies = proxies(&[("HTTP_PROXY", &proxy.url("bob:pr0xy@"))]);
    assert_hidden(&format!("{:?}", f.cfg));
    let seen = proxy.asked().len();
    let (result, events) = f.import_reporting(&server.url()).await;
    result.unwrap();
    f.assert_imported().await;
    assert_hidden(&format!("{events:?}"));
    // As fetch(3): each file's first request goes without, the retry after the 407 with them.
    let sent: Vec<Option<String>> = proxy.asked()[seen..].iter().map(|a| a.1.clone()).collect();
    assert_eq!(sent.first(), Some(&None), "{sent:?}");
    assert!(sent.contains(&Some(BOB.to_string())), "{sent:?}");
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connect_tunnel_answers_a_407_with_the_proxy_credentials() {
    let mut f = Fixture::trusting_test_ca();
    let proxy = ForwardProxy::with_auth(BOB);
    let server = f.serve_https(TestCert::Localhost, vec![Reply::body(&f.xz)]);
    f.cfg.image.proxies = proxies(&[("HTTPS_PROXY", &proxy.url("bob:wr0ng@"))]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "demo_1.0.xz.skein: proxy {} (HTTPS_PROXY) answered CONNECT 127.0.0.1:{} with HTTP 407 Proxy Authentication Required",
            proxy.url("***@"),
            server.port
        )),
        "{msg}"
    );
    assert_hidden(&msg);
    assert!(!e.is_transient(), "{msg}");
    assert_eq!(server.request_count(), 0);
    f.assert_nothing_left().await;

    f.cfg.image.proxies = proxies(&[("HTTPS_PROXY", &proxy.url("bob:pr0xy@"))]);
    let seen = proxy.asked().len();
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
    let sent: Vec<Option<String>> = proxy.asked()[seen..].iter().map(|a| a.1.clone()).collect();
    assert_eq!(sent.first(), Some(&None), "{sent:?}");
    assert!(sent.contains(&Some(BOB.to_string())), "{sent:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_wants_credentials_gets_them_through_a_proxy_that_wants_its_own() {
    let mut f = Fixture::new();
    let proxy = ForwardProxy::with_auth(BOB);
    let server = Server::start_with_auth(f.routes(vec![Reply::body(&f.xz)]), ALICE);
    f.cfg.image.proxies = proxies(&[("http_proxy", &proxy.url("bob:pr0xy@"))]);
    let with = |password: &str| {
        server
            .url()
            .replacen("://", &format!("://alice:{password}@"), 1)
    };
    let (result, events) = f.import_reporting(&with("wr0ng")).await;
    let msg = result.unwrap_err().to_string();
    assert!(msg.contains("HTTP 401 Unauthorized"), "{msg}");
    assert_hidden(&format!("{msg} {events:?}"));
    f.assert_nothing_left().await;

    let (result, events) = f.import_reporting(&with("s3cret")).await;
    result.unwrap();
    f.assert_imported().await;
    assert_hidden(&format!("{events:?}"));
    // The server was sent its own credentials, never the proxy's.
    let given = server.authorizations.lock().unwrap().clone();
    assert!(given.contains(&Some(ALICE.to_string())), "{given:?}");
    assert!(!given.contains(&Some(BOB.to_string())), "{given:?}");
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn through_a_tunnel_the_certificate_checked_is_the_image_server_s() {
    let mut f = Fixture::trusting_test_ca();
    let proxy = ForwardProxy::start();
    let server = f.serve_https(TestCert::OtherHost, vec![Reply::body(&f.xz)]);
    f.cfg.image.proxies = proxies(&[("HTTPS_PROXY", &proxy.url(""))]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    // The proxy's tunnel led to the server, whose certificate names another host.
    assert!(
        msg.contains(&format!(
            "GET {}demo_1.0.xz.skein: the server's certificate is for another host (",
            server.url()
        )),
        "{msg}"
    );
    assert!(
        msg.ends_with(&format!("(through proxy {} (HTTPS_PROXY))", proxy.url(""))),
        "{msg}"
    );
    assert!(!e.is_transient(), "{msg}");
    assert!(!proxy.request_lines().is_empty());
    assert_eq!(server.request_count(), 0);
    f.assert_nothing_left().await;
}
