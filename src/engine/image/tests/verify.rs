//! The small files: `.skein` digests, signatures and `.meta` origins.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn wrong_skein_fails_after_the_stream_and_leaves_nothing() {
    let mut f = Fixture::new();
    f.skein = skein_hex(&[b"something else"]);
    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains("demo_1.0.xz.skein does not match")
            && msg.contains("demo_1.0.xz and its .meta"),
        "{msg}"
    );
    assert!(!e.is_transient());
    // Typed, so a caller can tell a corrupt image from the host's or the network's failures.
    let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<ImageError>());
    assert!(
        matches!(source, Some(ImageError::HashMismatch { .. })),
        "{e:?}"
    );
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_meta_fails_the_hash() {
    let mut f = Fixture::new();
    f.meta = b"-\n\n".to_vec();
    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let msg = f.import_err(&server.url()).await.to_string();
    assert!(msg.contains("does not match"), "{msg}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_malformed_skein_fails_before_the_download() {
    let f = Fixture::new();
    let server = Server::start(vec![("/demo_1.0.xz", vec![Reply::body(&f.xz)])]);
    let msg = f.import_err(&server.url()).await.to_string();
    assert!(msg.contains("demo_1.0.xz.skein not found"), "{msg}");
    assert!(server.requests("/demo_1.0.xz").is_empty());
    f.assert_nothing_left().await;
    let server = Server::start(vec![
        ("/demo_1.0.xz.skein", vec![Reply::body(b"abc\n")]),
        ("/demo_1.0.xz", vec![Reply::body(&f.xz)]),
    ]);
    let msg = f.import_err(&server.url()).await.to_string();
    assert!(msg.contains("is not a Skein-1024 hash"), "{msg}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn layered_images_are_refused_clearly() {
    let mut f = Fixture::new();
    f.meta = b"base:13.2@1700000000\n".to_vec();
    f.skein = skein_hex(&[&f.xz, &f.meta]);
    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let msg = f.import_err(&server.url()).await.to_string();
    assert!(
        msg.contains("layered image (origin base:13.2@1700000000)"),
        "{msg}"
    );
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_image_verifies_with_a_configured_key() {
    let mut f = Fixture::new();
    let (other, _) = keypair(&f.keys_dir(), "other");
    let (key, sk) = keypair(&f.keys_dir(), "release");
    f.cfg.image.pubkeys = vec![other, key];
    f.cfg.image.require_signature = true;
    let server = f.serve_signed(Some(sign(&sk, &f.skein)));
    f.import(&server.url()).await.unwrap();
    assert!(f.host.zfs_exists(DATASET).await.unwrap());
    assert!(
        f.cache_files()
            .contains(&"demo_1.0.xz.skein.sig".to_string())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_signature_fails_before_the_download_and_leaves_nothing() {
    let mut f = Fixture::new();
    let (key, sk) = keypair(&f.keys_dir(), "release");
    f.cfg.image.pubkeys = vec![key];
    f.cfg.image.require_signature = true;
    let server = f.serve_signed(Some(sign(&sk, b"a different .skein")));
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains("demo_1.0.xz.skein.sig: bad signature of demo_1.0.xz.skein"),
        "{msg}"
    );
    assert!(!e.is_transient());
    assert!(server.requests("/demo_1.0.xz").is_empty());
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signature_by_an_unknown_key_is_refused() {
    let mut f = Fixture::new();
    let (key, _) = keypair(&f.keys_dir(), "release");
    let (_, stranger) = keypair(&f.keys_dir(), "stranger");
    f.cfg.image.pubkeys = vec![key];
    f.cfg.image.require_signature = true;
    let server = f.serve_signed(Some(sign(&stranger, &f.skein)));
    let msg = f.import_err(&server.url()).await.to_string();
    assert!(
        msg.contains("which is not among the configured public keys"),
        "{msg}"
    );
    f.assert_nothing_left().await;
    let server = f.serve_signed(Some(b"untrusted comment: x\nnot base64\n".to_vec()));
    let msg = f.import_err(&server.url()).await.to_string();
    assert!(msg.contains("not a signify signature"), "{msg}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsigned_image_fails_only_when_signatures_are_required() {
    let mut f = Fixture::new();
    let (key, _) = keypair(&f.keys_dir(), "release");
    f.cfg.image.pubkeys = vec![key];
    f.cfg.image.require_signature = true;
    let server = f.serve_signed(None);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains(
            "demo_1.0.xz.skein.sig not found: the image is unsigned and require_signature is set"
        ),
        "{msg}"
    );
    assert!(server.requests("/demo_1.0.xz").is_empty());
    f.assert_nothing_left().await;
    f.cfg.image.require_signature = false;
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
}
