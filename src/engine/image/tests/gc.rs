//! Image GC: unused images go, oldest first; used and busy ones stay.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn gc_removes_unused_images_oldest_first_and_keeps_used_ones() {
    let f = Fixture::new();
    let engine = crate::engine::Engine::new(f.cfg.clone(), Arc::new(|_, _| {}));
    let dir = f.sim.images_dir();
    let url = format!("file://{}", dir.display());
    for tag in ["1.0", "2.0", "3.0"] {
        f.sim.image("demo", tag);
        let image = ImageRef::parse(&url, "demo", tag).unwrap();
        ensure_imported(&f.host, &engine.images, &f.cfg, &image, &|_| {})
            .await
            .unwrap();
        // Import stamps have millisecond resolution: keep the order unambiguous.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A pot cloned from the oldest image uses it.
    f.clone_pot("user").await;
    // Not imported by the driver: never a candidate.
    f.host
        .zfs_create("zroot/pot/jails/handmade", &[])
        .await
        .unwrap();

    let dry = engine.gc_images(1, true).await.unwrap();
    assert_eq!(dry.removed, ["demo_2_0", "demo_3_0"]);
    assert_eq!(dry.kept, ["demo_1_0"]);
    assert!(f.host.zfs_exists("zroot/pot/jails/demo_2_0").await.unwrap());

    let report = engine.gc_images(2, false).await.unwrap();
    assert_eq!(report.removed, ["demo_2_0"]);
    assert_eq!(report.kept, ["demo_1_0", "demo_3_0"]);
    assert!(!f.host.zfs_exists("zroot/pot/jails/demo_2_0").await.unwrap());
    assert!(f.host.zfs_exists("zroot/pot/jails/handmade").await.unwrap());
    assert!(
        !f.cache_files().iter().any(|n| n.starts_with("demo_2.0")),
        "{:?}",
        f.cache_files()
    );
    assert!(f.cache_files().contains(&"demo_3.0.xz".to_string()));

    // An image whose lock is held (an import or clone under way) is skipped.
    let _busy = engine.images.shared("demo_3_0").await;
    let report = engine.gc_images(0, false).await.unwrap();
    assert!(report.removed.is_empty(), "{report:?}");
    assert_eq!(report.kept, ["demo_1_0", "demo_3_0"]);
}

// ---- export ---------------------------------------------------------------------------------
