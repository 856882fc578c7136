//! Which imported image a request gets: never another source's.

use super::*;

impl Fixture {
    async fn import_of(&self, url: &str, tag: &str) -> Imported {
        let image = ImageRef::parse(url, "demo", tag).unwrap();
        ensure_imported(&self.host, &self.locks, &self.cfg, &image, &|_| {})
            .await
            .map(|(imported, _lock)| imported)
            .unwrap()
    }

    /// Whether the image in `dataset` is the one with filler data (another job's).
    fn has_filler(&self, dataset: &str) -> bool {
        let local = dataset.rsplit('/').next().unwrap();
        self.cfg
            .jails_dir()
            .join(local)
            .join("m/var/filler")
            .exists()
    }

    fn recorded(&self, dataset: &str, prop: &str) -> String {
        self.sim
            .tool_ok("zfs", &["get", "-H", "-o", "value", prop, dataset])
            .trim()
            .to_string()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_never_gets_an_image_another_source_imported_under_its_name() {
    let f = Fixture::new();
    // Another job's demo:1.0, from its own directory: different bytes.
    let other = hostile_image(&f, "other", &["--filler-mb", "1"]);
    let other_url = format!("file://{}", other.display());
    let theirs = f.import_of(&other_url, "1.0").await;
    assert_eq!(theirs.dataset, DATASET, "the first import takes pot's name");
    assert!(f.has_filler(&theirs.dataset));
    assert_eq!(
        f.recorded(DATASET, "nomad-pot-driver:source"),
        format!("{other_url}/demo_1.0.xz")
    );
    assert_eq!(
        f.recorded(DATASET, "nomad-pot-driver:skein"),
        String::from_utf8(std::fs::read(other.join("demo_1.0.xz.skein")).unwrap())
            .unwrap()
            .trim()
    );
    assert_eq!(
        f.recorded(DATASET, "nomad-pot-driver:signature"),
        "unsigned"
    );

    let url = format!("file://{}", f.sim.images_dir().display());
    let ours = f.import_of(&url, "1.0").await;
    assert_ne!(ours.dataset, DATASET, "imported again, into its own name");
    assert!(ours.dataset.starts_with(&format!("{DATASET}_")));
    assert!(!f.has_filler(&ours.dataset));
    assert_eq!(f.import_of(&url, "1.0").await, ours, "then reused");
    assert_eq!(f.import_of(&other_url, "1.0").await, theirs);

    // Tag 1_0 is pot's demo_1_0 too, but not the same image.
    f.sim.image("demo", "1_0");
    let underscore = f.import_of(&url, "1_0").await;
    assert!(underscore.dataset != theirs.dataset && underscore.dataset != ours.dataset);
    f.sim.assert_clean("after three images of one pot name");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_present_image_is_checked_in_one_listing_even_from_a_path_with_a_tab() {
    let f = Fixture::new();
    let dir = hostile_image(&f, "images\tof a team", &[]);
    let url = format!("file://{}", dir.display());
    let first = f.import_of(&url, "1.0").await;
    assert_eq!(
        f.recorded(DATASET, "nomad-pot-driver:source"),
        format!("{url}/demo_1.0.xz")
    );
    let mark = f.sim.calls().len();
    assert_eq!(f.import_of(&url, "1.0").await, first, "reused");
    let calls: Vec<Vec<String>> = f.sim.calls()[mark..]
        .iter()
        .map(|c| c.argv.clone())
        .collect();
    assert_eq!(
        calls.len(),
        1,
        "provenance and snapshot in one call: {calls:?}"
    );
    assert_eq!(calls[0][..2], ["zfs", "list"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_sources_download_in_the_cache_is_not_imported_for_a_request() {
    let f = Fixture::new();
    let other = hostile_image(&f, "other", &["--filler-mb", "1"]);
    let read = |file: &str| std::fs::read(other.join(file)).unwrap();
    let theirs = Server::start(vec![
        (
            "/demo_1.0.xz.skein",
            vec![Reply::body(&read("demo_1.0.xz.skein"))],
        ),
        (
            "/demo_1.0.xz.meta",
            vec![Reply::body(&read("demo_1.0.xz.meta"))],
        ),
        ("/demo_1.0.xz", vec![Reply::body(&read("demo_1.0.xz"))]),
    ]);
    f.import_of(&theirs.url(), "1.0").await;
    assert!(f.cached("demo_1.0.xz").exists(), "their download is cached");

    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let ours = f.import_of(&server.url(), "1.0").await;
    assert_eq!(
        server.requests("/demo_1.0.xz").len(),
        1,
        "downloaded from the URL the request names"
    );
    assert!(!f.has_filler(&ours.dataset));
    assert_eq!(
        std::fs::read(f.cached("demo_1.0.xz")).unwrap(),
        read("demo_1.0.xz"),
        "the other source's cached files stay as they were"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsigned_image_is_not_reused_once_signatures_are_required() {
    let mut f = Fixture::new();
    let url = format!("file://{}", f.sim.images_dir().display());
    f.import_of(&url, "1.0").await;
    let (key, _) = keypair(&f.keys_dir(), "release");
    f.cfg.image.pubkeys = vec![key];
    f.cfg.image.require_signature = true;
    let msg = f.import_err(&url).await.to_string();
    assert!(
        msg.contains(&format!(
            "{DATASET} holds this image from {url}/demo_1.0.xz, but it was imported unsigned and require_signature is set now"
        )),
        "{msg}"
    );
    assert_eq!(f.locks.active(), 0);
}
