//! `http://` images: status codes, cuts and resumes, stalls, redirects and basic auth.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn imports_over_http_into_zfs_and_the_cache() {
    let f = Fixture::new();
    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let imported = f.import(&server.url()).await.unwrap();
    assert_eq!(imported.dataset, DATASET);
    f.assert_imported().await;
    // Reused, not fetched again.
    f.import(&server.url()).await.unwrap();
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1);
    f.sim.assert_clean("after imports");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_404_names_the_file_and_leaves_nothing() {
    let f = Fixture::new();
    let server = f.serve(vec![Reply::Status(404)]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(msg.contains("demo_1.0.xz: HTTP 404 Not Found"), "{msg}");
    assert!(!e.is_transient(), "a 404 is permanent: {msg}");
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1, "no retry on 404");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_500_is_transient_after_retries_and_leaves_nothing() {
    let f = Fixture::new();
    let server = f.serve(vec![Reply::Status(500)]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(msg.contains("demo_1.0.xz: HTTP 500"), "{msg}");
    assert!(e.is_transient(), "{msg}");
    assert_eq!(
        server.requests("/demo_1.0.xz").len(),
        3,
        "one try per attempt"
    );
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_503_then_200_succeeds() {
    let f = Fixture::new();
    let server = f.serve(vec![Reply::Status(503), Reply::body(&f.xz.clone())]);
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
    assert_eq!(server.requests("/demo_1.0.xz").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_body_without_range_support_fails_and_leaves_nothing() {
    let f = Fixture::new();
    let half = f.xz.len() / 2;
    let server = f.serve(vec![Reply::Cut {
        data: f.xz.clone(),
        after: half,
        etag: None,
    }]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(msg.contains("demo_1.0.xz"), "{msg}");
    assert!(
        e.is_transient(),
        "a cut connection is worth retrying: {msg}"
    );
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_download_resumes_with_range() {
    let f = Fixture::new();
    let server = f.serve(vec![
        Reply::Cut {
            data: f.xz.clone(),
            after: f.xz.len() / 3,
            etag: Some("\"v1\""),
        },
        Reply::Body {
            data: f.xz.clone(),
            etag: Some("\"v1\""),
        },
    ]);
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
    assert_eq!(
        server.requests("/demo_1.0.xz"),
        [None, Some(format!("bytes={}-", f.xz.len() / 3))]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn object_changed_during_resume_starts_over() {
    let f = Fixture::new();
    let server = f.serve(vec![
        Reply::Cut {
            data: f.xz.clone(),
            after: 100,
            etag: Some("\"v1\""),
        },
        Reply::Body {
            data: f.xz.clone(),
            etag: Some("\"v2\""),
        },
    ]);
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
    // The If-Range of the resume did not match: a full answer, dropped, then a fresh import.
    assert_eq!(
        server.requests("/demo_1.0.xz"),
        [None, Some("bytes=100-".to_string()), None]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_download_times_out_as_transient() {
    let mut f = Fixture::new();
    f.cfg.image.idle_timeout = Duration::from_millis(300);
    f.cfg.image.attempts = 1;
    let server = f.serve(vec![Reply::Stall(f.xz.len())]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(msg.contains("demo_1.0.xz: no data for 300ms"), "{msg}");
    assert!(e.is_transient());
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_refused_is_transient() {
    let mut f = Fixture::new();
    f.cfg.image.attempts = 1;
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = f.import_err(&format!("http://127.0.0.1:{port}/")).await;
    let msg = e.to_string();
    assert!(
        msg.contains("demo_1.0.xz.skein") && msg.contains("onnection refused"),
        "{msg}"
    );
    assert!(e.is_transient());
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_to_other_schemes_are_refused() {
    let f = Fixture::new();
    let images = f.sim.images_dir();
    for target in [
        format!("file://{}/demo_1.0.xz", images.display()),
        "https://127.0.0.1/demo_1.0.xz".to_string(),
    ] {
        let server = f.serve(vec![Reply::Redirect(target.clone())]);
        let e = f.import_err(&server.url()).await;
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("redirect to {target:?} refused")),
            "{msg}"
        );
        assert!(!e.is_transient());
        f.assert_nothing_left().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn same_scheme_redirects_are_followed() {
    let f = Fixture::new();
    let server = Server::start(vec![
        (
            "/demo_1.0.xz.skein",
            vec![Reply::Redirect("/mirror/s".into())],
        ),
        ("/mirror/s", vec![Reply::body(&f.skein)]),
        ("/demo_1.0.xz.meta", vec![Reply::body(&f.meta)]),
        ("/demo_1.0.xz", vec![Reply::Redirect("mirror/x".into())]),
        ("/mirror/x", vec![Reply::body(&f.xz)]),
    ]);
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_from_the_url_is_sent_when_the_server_asks() {
    let f = Fixture::new();
    let basic = "Basic YWxpY2U6czNjcmV0";
    let server = Server::start_with_auth(f.routes(vec![Reply::body(&f.xz)]), basic);
    let with = |password: &str| {
        server
            .url()
            .replacen("://", &format!("://alice:{password}@"), 1)
    };
    let e = f.import_err(&with("wrong")).await.to_string();
    assert!(e.contains("401") && !e.contains("wrong"), "{e}");
    f.assert_nothing_left().await;
    f.import(&with("s3cret")).await.unwrap();
    f.assert_imported().await;
    // As fetch(3): the first request of each file goes without, the retry with the password.
    let seen = server.authorizations.lock().unwrap().clone();
    assert_eq!(seen.first(), Some(&None));
    assert!(seen.contains(&Some(basic.to_string())), "{seen:?}");
}
