//! The streaming pass: progress, local images, the decoder, the size cap and what `zfs receive`
//! is allowed to create.

use super::*;
use crate::engine::image::stream::Meter;
use std::time::Instant;

#[test]
fn progress_at_most_once_a_second() {
    let mut m = Meter::new("nginx-nomad_1.1.13".to_string());
    let t0 = Instant::now();
    let total = Some(103_000_000);
    assert_eq!(
        m.update(t0, 0, total).as_deref(),
        Some("Downloading image nginx-nomad_1.1.13: 0% of 103 MB")
    );
    assert_eq!(
        m.update(t0 + Duration::from_millis(500), 1 << 20, total),
        None
    );
    assert_eq!(
        m.update(t0 + Duration::from_millis(1000), 46_350_000, total)
            .as_deref(),
        Some("Downloading image nginx-nomad_1.1.13: 45% of 103 MB")
    );
    // The last chunk is always reported, so the events end at 100 %.
    assert_eq!(
        m.update(t0 + Duration::from_millis(1100), 103_000_000, total)
            .as_deref(),
        Some("Downloading image nginx-nomad_1.1.13: 100% of 103 MB")
    );
    let mut m = Meter::new("x_1".to_string());
    assert_eq!(
        m.update(t0, 1500, None).as_deref(),
        Some("Downloading image x_1: 2 kB so far")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn imports_from_file_urls() {
    let f = Fixture::new();
    let dir = f.sim.images_dir();
    f.import(&format!("file://{}", dir.display()))
        .await
        .unwrap();
    f.assert_imported().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_xz_with_matching_hash_fails_in_the_decoder() {
    let mut f = Fixture::new();
    let mut xz = f.xz.clone();
    let mid = xz.len() / 2;
    for b in &mut xz[mid..mid + 64] {
        *b ^= 0x5a;
    }
    f.skein = skein_hex(&[&xz, &f.meta]);
    let server = f.serve(vec![Reply::body(&xz)]);
    let msg = f.import_err(&server.url()).await.to_string();
    assert!(msg.contains("demo_1.0.xz: corrupt xz stream"), "{msg}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn image_expanding_beyond_the_cap_is_refused() {
    let mut f = Fixture::new();
    let dir = f.sim.tmp.path().join("big");
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new(sim_bin())
        .args(["image", "demo", "1.0"])
        .arg(&dir)
        .args(["--filler-mb", "4"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let xz = std::fs::read(dir.join("demo_1.0.xz")).unwrap();
    f.meta = std::fs::read(dir.join("demo_1.0.xz.meta")).unwrap();
    f.skein = std::fs::read(dir.join("demo_1.0.xz.skein")).unwrap();
    // Above the compressed size, well below the 4 MiB of filler it expands to.
    f.cfg.image.max_size = xz.len() as u64 * 5 / 4;
    assert!(
        f.cfg.image.max_size < 3 << 20,
        "filler compressed to {} bytes",
        xz.len()
    );
    let server = f.serve(vec![Reply::body(&xz)]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains("demo_1.0.xz expands to more than image_max_size"),
        "{msg}"
    );
    f.assert_nothing_left().await;
    // The compressed download itself is capped too, before anything is received.
    f.cfg.image.max_size = xz.len() as u64 - 1;
    let e = f.import_err(&server.url()).await;
    assert!(e.to_string().contains("is more than image_max_size"), "{e}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_is_received_where_pot_keeps_it_whatever_its_stream_says() {
    let f = Fixture::new();
    let dir = hostile_image(
        &f,
        "hostile",
        &[
            "--prop",
            "mountpoint=/anywhere",
            "--m-prop",
            "canmount=off",
            "--m-prop",
            "sharenfs=on",
        ],
    );
    f.import(&format!("file://{}", dir.display()))
        .await
        .unwrap();
    let pot = f.cfg.jails_dir().join("demo_1_0");
    let state = f.host.zfs_mount_state(DATASET).await.unwrap();
    let shown: Vec<(String, String, bool)> = state
        .iter()
        .map(|d| (d.mountpoint.clone(), d.canmount.clone(), d.mounted))
        .collect();
    assert_eq!(
        shown,
        [
            (pot.display().to_string(), "on".to_string(), true),
            (pot.join("m").display().to_string(), "on".to_string(), true),
        ]
    );
    assert!(pot.join("conf/pot.conf").is_file() && pot.join("m/etc/sim-image").is_file());
    assert!(!f.sim.dir.join("root/anywhere").exists());
    f.sim
        .assert_clean("after importing an image that names its own mountpoint");
}

#[tokio::test(flavor = "multi_thread")]
async fn under_an_encrypted_zfs_root_an_image_inherits_its_encryption() {
    let f = Fixture::on(SimHost::create_with(&["--encrypted"]));
    f.import(&format!("file://{}", f.sim.images_dir().display()))
        .await
        .unwrap();
    for ds in [DATASET.to_string(), format!("{DATASET}/m")] {
        assert_eq!(
            f.host.zfs_get(&ds, "encryption").await.unwrap(),
            "aes-256-gcm",
            "{ds} was received unencrypted"
        );
    }
    f.sim
        .assert_clean("after an import under an encrypted zfs_root");
}
