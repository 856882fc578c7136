//! `potctl export`: an exported image imports again; refusals leave no files.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn export_round_trips_through_a_signed_import() {
    let mut f = Fixture::new();
    let engine = crate::engine::Engine::new(f.cfg.clone(), Arc::new(|_, _| {}));
    f.import(&format!("file://{}", f.sim.images_dir().display()))
        .await
        .unwrap();
    let out = f.sim.tmp.path().join("export");
    std::fs::create_dir_all(&out).unwrap();
    let (pubkey, sk) = keypair(&f.keys_dir(), "release");
    let seckey = f.keys_dir().join("release.sec");
    std::fs::write(&seckey, sk.to_file_encoding("release secret key")).unwrap();
    let exported = engine
        .export(&ExportOptions {
            pot: "demo_1_0".into(),
            tag: Some("2.0".into()),
            dir: out.clone(),
            level: 1,
            seckey: Some(seckey),
        })
        .await
        .unwrap();
    assert_eq!(exported.xz, out.join("demo_1_0_2.0.xz"));
    assert_eq!(exported.tag, "2.0");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "demo_1_0_2.0.xz",
            "demo_1_0_2.0.xz.meta",
            "demo_1_0_2.0.xz.skein",
            "demo_1_0_2.0.xz.skein.sig"
        ]
    );
    assert_eq!(
        std::fs::read(out.join("demo_1_0_2.0.xz.meta")).unwrap(),
        b"-\n"
    );
    let sig = std::fs::read_to_string(out.join("demo_1_0_2.0.xz.skein.sig")).unwrap();
    assert!(
        sig.starts_with("untrusted comment: verify with release.pub\n"),
        "{sig}"
    );

    // What pot's import does with it: verify, receive, and the pot's files are the same.
    f.cfg.image.pubkeys = vec![pubkey];
    f.cfg.image.require_signature = true;
    let image = ImageRef::parse(&format!("file://{}", out.display()), "demo_1_0", "2.0").unwrap();
    ensure_imported(&f.host, &f.locks, &f.cfg, &image, &|_| {})
        .await
        .unwrap();
    let read =
        |pot: &str, file: &str| std::fs::read(f.cfg.jails_dir().join(pot).join(file)).unwrap();
    for file in ["conf/pot.conf", "m/etc/passwd"] {
        assert_eq!(read("demo_1_0", file), read("demo_1_0_2_0", file), "{file}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn export_refuses_what_pot_refuses_and_leaves_no_files() {
    let f = Fixture::new();
    let engine = crate::engine::Engine::new(f.cfg.clone(), Arc::new(|_, _| {}));
    let out = f.sim.tmp.path().join("export");
    std::fs::create_dir_all(&out).unwrap();
    let options = |pot: &str| ExportOptions {
        pot: pot.into(),
        tag: None,
        dir: out.clone(),
        level: 6,
        seckey: None,
    };
    let e = engine.export(&options("nope")).await.unwrap_err();
    assert!(matches!(e, EngineError::NotFound { .. }), "{e}");
    let e = engine.export(&options("../x")).await.unwrap_err();
    assert!(matches!(e, EngineError::InvalidInput(_)), "{e}");
    f.host
        .zfs_create("zroot/pot/jails/bare", &[])
        .await
        .unwrap();
    let e = engine
        .export(&options("bare"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("has 0 snapshots; exactly one is needed"), "{e}");
    f.import(&format!("file://{}", f.sim.images_dir().display()))
        .await
        .unwrap();
    f.clone_pot("user").await;
    let e = engine
        .export(&options("user"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("zroot/pot/jails/user/m is a clone of") && e.contains("layered"),
        "{e}"
    );
    let mut bad_key = options("demo_1_0");
    bad_key.seckey = Some(f.sim.tmp.path().join("missing.sec"));
    let e = engine.export(&bad_key).await.unwrap_err().to_string();
    assert!(e.contains("missing.sec"), "{e}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "files left");
}
