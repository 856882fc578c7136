//! Imports from the cache dir: reused downloads, hand-seeded files, corrupt ones.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn destroyed_image_is_reimported_from_the_cache_without_a_download() {
    use std::os::unix::fs::MetadataExt;
    let f = Fixture::new();
    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let url = server.url();
    f.import(&url).await.unwrap();
    let stat = |file| std::fs::metadata(f.cached(file)).unwrap();
    let before = stat("demo_1.0.xz");
    let served = server.request_count();

    f.destroy_image();
    let (result, events) = f.import_reporting(&server.url()).await;
    assert_eq!(result.unwrap().dataset, DATASET);
    assert_eq!(
        server.request_count(),
        served,
        "nothing asked of the server"
    );
    assert_eq!(
        events,
        [
            "Importing image demo_1.0 from the cache",
            "Imported image demo_1.0"
        ]
    );
    f.assert_imported().await;
    let after = stat("demo_1.0.xz");
    assert_eq!(
        (after.ino(), after.mtime_nsec(), after.mtime()),
        (before.ino(), before.mtime_nsec(), before.mtime()),
        "the cached .xz was not rewritten"
    );

    // And with the server gone.
    f.destroy_image();
    drop(server);
    f.import(&url).await.unwrap();
    f.assert_imported().await;
    f.sim.assert_clean("after imports from the cache");
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_seeded_cache_imports_with_an_unreachable_url() {
    let f = Fixture::new();
    f.seed_cache();
    f.import(&refused_url()).await.unwrap();
    f.assert_imported().await;

    // No .meta is an empty one, as pot has it.
    f.destroy_image();
    std::fs::remove_file(f.cached("demo_1.0.xz.meta")).unwrap();
    std::fs::write(f.cached("demo_1.0.xz.skein"), skein_hex(&[&f.xz])).unwrap();
    f.import(&refused_url()).await.unwrap();
    assert!(f.host.zfs_exists(DATASET).await.unwrap());
    assert_eq!(f.cache_files(), ["demo_1.0.xz", "demo_1.0.xz.skein"]);
    f.sim.assert_clean("after imports from a seeded cache");
}

/// Flips one byte in the middle of the cached `.xz`.
fn corrupt(path: &Path) {
    let mut xz = std::fs::read(path).unwrap();
    let mid = xz.len() / 2;
    xz[mid] ^= 0x01;
    std::fs::write(path, xz).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_cached_xz_is_replaced_by_a_download() {
    let f = Fixture::new();
    f.seed_cache();
    corrupt(&f.cached("demo_1.0.xz"));
    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let (result, events) = f.import_reporting(&server.url()).await;
    result.unwrap();
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1);
    assert_eq!(events[0], "Importing image demo_1.0 from the cache");
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Downloading image demo_1.0: ")),
        "{events:?}"
    );
    // assert_imported compares the cached .xz with the served one.
    f.assert_imported().await;
    f.sim.assert_clean("after a fallback to the URL");
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_cache_and_unreachable_url_say_both_and_leave_nothing() {
    let f = Fixture::new();
    f.seed_cache();
    corrupt(&f.cached("demo_1.0.xz"));
    let e = f.import_err(&refused_url()).await;
    let msg = e.to_string();
    let cached_xz = f.cached("demo_1.0.xz").display().to_string();
    assert!(msg.contains("onnection refused"), "{msg}");
    assert!(
        msg.contains(&format!("the cached copy was not used: {cached_xz}")),
        "{msg}"
    );
    assert!(
        msg.contains("corrupt xz stream") || msg.contains("does not match"),
        "{msg}"
    );
    assert!(e.is_transient(), "the URL may come back: {msg}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_receive_of_a_good_cached_image_keeps_the_cache() {
    let f = Fixture::new();
    f.seed_cache();
    f.sim.fault(&[
        "zfs",
        "--word",
        "receive",
        "--fail",
        "1",
        "--stderr",
        "cannot receive: out of space",
    ]);
    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let msg = f.import_err(&server.url()).await.to_string();
    assert!(msg.contains("out of space"), "{msg}");
    assert_eq!(
        server.request_count(),
        0,
        "a download would meet the same host"
    );
    assert_eq!(
        f.cache_files(),
        ["demo_1.0.xz", "demo_1.0.xz.meta", "demo_1.0.xz.skein"]
    );
    f.sim.clear_faults();
    f.import(&refused_url()).await.unwrap();
    f.assert_imported().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn required_signature_is_required_of_the_cache_too() {
    let mut f = Fixture::new();
    let (key, sk) = keypair(&f.keys_dir(), "release");
    f.cfg.image.pubkeys = vec![key];
    f.cfg.image.require_signature = true;
    let sig = sign(&sk, &f.skein);

    // Unsigned in the cache: fetched again, with the signature the server has.
    f.seed_cache();
    let server = f.serve_signed(Some(sig.clone()));
    let url = server.url();
    f.import(&url).await.unwrap();
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1);
    assert_eq!(
        std::fs::read(f.cached("demo_1.0.xz.skein.sig")).unwrap(),
        sig
    );

    // Signed in the cache: verified there, no network.
    f.destroy_image();
    drop(server);
    f.import(&url).await.unwrap();
    assert!(f.host.zfs_exists(DATASET).await.unwrap());

    // A signature by another key in files an operator put in the cache is no better than none.
    f.destroy_image();
    std::fs::remove_file(f.cached("demo_1.0.xz.source")).unwrap();
    let (_, stranger) = keypair(&f.keys_dir(), "stranger");
    std::fs::write(f.cached("demo_1.0.xz.skein.sig"), sign(&stranger, &f.skein)).unwrap();
    let server = f.serve_signed(Some(sig));
    f.import(&server.url()).await.unwrap();
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1);

    // Unsigned in the cache, and nowhere to fetch a signature from.
    f.destroy_image();
    std::fs::remove_file(f.cached("demo_1.0.xz.skein.sig")).unwrap();
    std::fs::remove_file(f.cached("demo_1.0.xz.source")).unwrap();
    let e = f.import_err(&refused_url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "the cached copy was not used: {} not found: the image is unsigned and require_signature is set",
            f.cached("demo_1.0.xz.skein.sig").display()
        )),
        "{msg}"
    );
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_image_in_the_cache_dir_is_read_in_place_and_never_removed() {
    let f = Fixture::new();
    f.seed_cache();
    let url = format!("file://{}", f.cfg.cache_dir.display());
    f.import(&url).await.unwrap();
    f.assert_imported().await;

    f.destroy_image();
    corrupt(&f.cached("demo_1.0.xz"));
    let corrupted = std::fs::read(f.cached("demo_1.0.xz")).unwrap();
    let msg = f.import_err(&url).await.to_string();
    assert!(
        msg.contains(&format!("file://{}", f.cached("demo_1.0.xz").display())),
        "{msg}"
    );
    assert!(
        !msg.contains("cached copy"),
        "one source, tried once: {msg}"
    );
    assert_eq!(
        f.cache_files(),
        ["demo_1.0.xz", "demo_1.0.xz.meta", "demo_1.0.xz.skein"],
        "the image's own files are not removed"
    );
    assert_eq!(std::fs::read(f.cached("demo_1.0.xz")).unwrap(), corrupted);
    assert!(!f.host.zfs_exists(DATASET).await.unwrap());
    assert_eq!(f.locks.active(), 0);
}

// ---- cache GC -------------------------------------------------------------------------------
