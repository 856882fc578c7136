//! Image locks: starts share an image, an import holds it alone.

use super::*;

#[tokio::test]
async fn starts_of_a_present_image_share_its_lock() {
    use std::time::Duration;
    let locks = ImageLocks::default();
    let a = locks.shared("demo_1_0").await;
    let b = tokio::time::timeout(Duration::from_secs(1), locks.shared("demo_1_0"))
        .await
        .expect("a second start is not held up by the first");
    assert!(
        locks.try_exclusive("demo_1_0").is_none(),
        "GC skips an image being cloned"
    );
    drop((a, b));
    let import = locks.try_exclusive("demo_1_0").expect("nobody holds it");
    assert!(
        tokio::time::timeout(Duration::from_millis(100), locks.shared("demo_1_0"))
            .await
            .is_err(),
        "starts wait for an import"
    );
    let first = import.downgrade();
    let other = tokio::time::timeout(Duration::from_secs(1), locks.shared("demo_1_0"))
        .await
        .expect("once imported, starts share the image");
    assert!(locks.try_exclusive("demo_1_0").is_none());
    drop((first, other));
    assert_eq!(locks.active(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_imports_of_one_image_share_one_download() {
    let f = Arc::new(Fixture::new());
    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let url = server.url();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (f, url) = (f.clone(), url.clone());
            tokio::spawn(async move { f.import(&url).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1);
    f.assert_imported().await;
}
