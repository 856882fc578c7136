//! Image names and URLs: what is accepted, what is shown, where credentials go.

use super::*;
use crate::engine::image::reference::{Credentials, base64};

#[test]
fn names_follow_pot() {
    let i = ImageRef::parse(
        "http://r.example/images/",
        "nginx-nomad-amd64-13_1",
        "1.1.13",
    )
    .unwrap();
    assert_eq!(i.file_name(), "nginx-nomad-amd64-13_1_1.1.13.xz");
    assert_eq!(i.local_name(), "nginx-nomad-amd64-13_1_1_1_13");
    assert_eq!(i.location("x.xz"), "http://r.example/images/x.xz");
}

#[test]
fn rejects_unsafe_names_and_schemes() {
    for (pot, tag) in [
        ("a/b", "1"),
        ("a", "1/../x"),
        ("..", "1"),
        ("a..b", "1"),
        ("a", ".."),
        ("a b", "1"),
        ("a", "1\t"),
        ("a\n", "1"),
        ("a", "1\0"),
        ("a\0b", "1"),
        ("a", ""),
        (".", "1"),
    ] {
        assert!(matches!(
            ImageRef::parse("http://h/", pot, tag),
            Err(EngineError::InvalidInput(_))
        ));
    }
    assert!(ImageRef::parse("ftp://h/", "a", "1").is_err());
    assert!(ImageRef::parse("https://", "a", "1").is_err());
    assert!(ImageRef::parse("https://h/", "a", "1").is_ok());
    assert!(ImageRef::parse("file://relative", "a", "1").is_err());
    assert!(ImageRef::parse("file:///srv/img", "a", "1").is_ok());
}

#[test]
fn file_images_come_only_from_allowed_dirs_and_refusals_reveal_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let allowed = tmp.path().join("images");
    let outside = tmp.path().join("secret");
    std::fs::create_dir_all(allowed.join("team")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();
    let check = |dir: &Path, allow: &[PathBuf]| {
        ImageRef::parse(&format!("file://{}", dir.display()), "demo", "1.0")
            .unwrap()
            .check_source(allow)
    };
    let ok = [allowed.clone()];
    check(&allowed, &ok).unwrap();
    check(&allowed.join("team"), &ok).unwrap();
    let refusal = |dir: &Path| {
        let msg = check(dir, &ok).unwrap_err().to_string();
        assert!(
            msg.contains("allowed_image_dirs"),
            "{}: {msg}",
            dir.display()
        );
        msg.replace(&dir.display().to_string(), "DIR")
    };
    // Outside, existing or not, through `..` or a symlink: one answer, the path aside.
    let answer = refusal(&outside);
    for dir in [
        tmp.path().join("no-such-dir"),
        allowed.join("../secret"),
        allowed.join("link"),
        PathBuf::from("/etc"),
    ] {
        assert_eq!(refusal(&dir), answer, "{}", dir.display());
    }
    // No allowed dir: no file:// image at all; http(s) is not concerned.
    assert!(check(&allowed, &[]).is_err());
    ImageRef::parse("http://h/x", "demo", "1.0")
        .unwrap()
        .check_source(&[])
        .unwrap();
}

#[test]
fn url_credentials_are_kept_apart_and_never_shown() {
    let i = ImageRef::parse(
        "http://alice:s3cr%40t@r.example:8080/images/",
        "demo",
        "1.0",
    )
    .unwrap();
    assert_eq!(i.location("x.xz"), "http://r.example:8080/images/x.xz");
    assert_eq!(i.base_url(), "http://r.example:8080/images");
    assert_eq!(i.source(), "http://r.example:8080/images/demo_1.0.xz");
    assert!(!format!("{i:?}").contains("s3cr"), "{i:?}");
    let on = |u: &str| {
        i.credentials_for(&u.parse().unwrap())
            .map(Credentials::basic)
    };
    // base64("alice:s3cr@t")
    let basic = Some("Basic YWxpY2U6czNjckB0".to_string());
    assert_eq!(on("http://r.example:8080/images/x.xz"), basic);
    assert_eq!(on("http://mirror.example/images/x.xz"), None);
    assert_eq!(on("http://r.example/images/x.xz"), None);
    for bad in ["http://alice:pw0rd@/x", "ftp://alice:pw0rd@h/x"] {
        let e = ImageRef::parse(bad, "demo", "1.0").unwrap_err().to_string();
        assert!(!e.contains("pw0rd") && e.contains("***@"), "{e}");
    }
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"a"), "YQ==");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
}
