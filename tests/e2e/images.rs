//! Images through the plugin: one download for concurrent starts, required signatures, https
//! trust, the bounded cache and `potctl images gc`, download progress in task events, a seeded
//! cache behind an unreachable URL, `potctl export`.

use crate::common::env::*;
use crate::common::{FileServer, Plugin, SimHost, TestTask, within};
use nomad_pot_driver::proto::drivers::StartTaskRequest;
use serde_json::{Value as Json, json};

fn quick_task(image: &str) -> Json {
    json!({
        "image": image, "pot": "demo", "tag": "1.0",
        "command": "/bin/sh", "args": ["-c", "exit 0"],
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_starts_of_one_uncached_image_download_it_once() {
    let env = Env::new().await;
    let server = FileServer::serve(&env.sim.image("demo", "1.0"));
    let cfg = quick_task(&server.url());
    let tasks: Vec<TestTask> = (0..20).map(|i| env.task(&format!("t{i}"), &cfg)).collect();
    futures::future::join_all(tasks.iter().map(|t| env.start(t))).await;
    for t in &tasks {
        let r = env.exit(&t.id(), 30.0).await;
        assert_eq!(r.exit_code, 0);
        env.destroy(&t.id()).await;
    }
    let downloads = server
        .requests()
        .iter()
        .filter(|r| r.ends_with("/demo_1.0.xz"))
        .count();
    assert_eq!(downloads, 1, "requests: {:?}", server.requests());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn required_signature_refuses_unsigned_images_and_accepts_signed_ones() {
    use libsignify::Codeable;
    let keys = tempfile::tempdir().unwrap();
    let sk = libsignify::PrivateKey::generate(
        &mut rand_core::OsRng,
        libsignify::NewKeyOpts::NoEncryption,
    )
    .unwrap();
    let pubkey = keys.path().join("release.pub");
    std::fs::write(&pubkey, sk.public().to_file_encoding("release public key")).unwrap();
    let env = Env::with_agent_config(json!({
        "signature_pubkeys": [pubkey.display().to_string()],
        "require_signature": true,
    }))
    .await;
    let images = env.sim.image("demo", "1.0");
    let server = FileServer::serve(&images);
    let t = env.task("unsigned", &quick_task(&server.url()));
    let req = StartTaskRequest {
        task: Some(t.config.clone()),
    };
    let s = within(30.0, "StartTask", env.plugin.driver().start_task(req))
        .await
        .expect_err("an unsigned image was started");
    assert!(
        s.message()
            .contains("demo_1.0.xz.skein.sig not found: the image is unsigned"),
        "{s:?}"
    );
    env.sim.assert_clean("after the refused image");

    let skein = std::fs::read(images.join("demo_1.0.xz.skein")).unwrap();
    std::fs::write(
        images.join("demo_1.0.xz.skein.sig"),
        sk.sign(&skein).to_file_encoding("verify with release.pub"),
    )
    .unwrap();
    let t = env.task("signed", &quick_task(&server.url()));
    env.start(&t).await;
    assert_eq!(env.wait(&t.id(), 30.0).await.result.unwrap().exit_code, 0);
    env.destroy(&t.id()).await;
    env.finish().await;
}

/// Runs one quick task from `image` to its exit, and destroys it.
async fn run_quick_task(env: &Env, name: &str, image: &str) {
    let t = env.task(name, &quick_task(image));
    env.start(&t).await;
    assert_eq!(env.wait(&t.id(), 30.0).await.result.unwrap().exit_code, 0);
    env.destroy(&t.id()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_image_from_a_private_ca_runs_with_image_ca_file() {
    let env = Env::with_agent_config(json!({
        "image_ca_file": crate::common::tls::test_ca().display().to_string(),
    }))
    .await;
    let server = FileServer::serve_https(
        &env.sim.image("demo", "1.0"),
        crate::common::tls::TestCert::Localhost,
    );
    assert!(server.url().starts_with("https://127.0.0.1:"));
    run_quick_task(&env, "tls", &server.url()).await;
    assert!(
        server.requests().iter().any(|r| r == "/demo_1.0.xz"),
        "{:?}",
        server.requests()
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_trust_store_follows_ssl_cert_file() {
    let ca = crate::common::tls::test_ca();
    let env = Env::with_plugin_env(json!({}), &[("SSL_CERT_FILE", ca.as_os_str())]).await;
    let server = FileServer::serve_https(
        &env.sim.image("demo", "1.0"),
        crate::common::tls::TestCert::Localhost,
    );
    run_quick_task(&env, "tls", &server.url()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_https_image_fails_the_start_for_good_and_leaves_nothing() {
    let env = Env::new().await;
    let server = FileServer::serve_https(
        &env.sim.image("demo", "1.0"),
        crate::common::tls::TestCert::Localhost,
    );
    let t = env.task("untrusted", &quick_task(&server.url()));
    let req = StartTaskRequest {
        task: Some(t.config.clone()),
    };
    let s = within(30.0, "StartTask", env.plugin.driver().start_task(req))
        .await
        .expect_err("an image behind an untrusted certificate was started");
    let expected = format!(
        "GET {}demo_1.0.xz.skein: the server's certificate is not trusted",
        server.url()
    );
    assert!(s.message().contains(&expected), "{s:?}");
    assert!(s.message().contains("set image_ca_file"), "{s:?}");
    assert_eq!(s.code(), tonic::Code::Unknown, "not recoverable: {s:?}");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    let datasets = jails_datasets(&env.sim);
    assert!(
        !datasets.iter().any(|d| d.contains("demo_1_0")),
        "{datasets:?}"
    );
    let cache = std::path::PathBuf::from(env.sim.config["cache_dir"].as_str().unwrap());
    let cached: Vec<_> = std::fs::read_dir(&cache)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(cached.is_empty(), "cache files left: {cached:?}");
    env.sim.assert_clean("after the refused https image");
    // With the CA configured (a new engine), the same image imports: nothing half-imported was
    // left in its way.
    let ca = crate::common::tls::test_ca().display().to_string();
    set_config(
        &env.plugin,
        &env.sim.agent_config_with(json!({ "image_ca_file": ca })),
        true,
    )
    .await
    .expect("SetConfig with image_ca_file");
    run_quick_task(&env, "trusted", &server.url()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_image_ca_file_fails_setconfig_naming_the_key() {
    let sim = SimHost::create();
    let plugin = Plugin::launch().await;
    let config = sim.agent_config_with(json!({ "image_ca_file": "/nonexistent/ca.pem" }));
    let s = set_config(&plugin, &config, true)
        .await
        .expect_err("SetConfig accepted a missing image_ca_file");
    assert!(
        s.message().contains("image_ca_file") && s.message().contains("/nonexistent/ca.pem"),
        "{s:?}"
    );
    plugin.shutdown().await;
}

/// Names of the datasets under `zroot/pot/jails` on the simulated host.
fn jails_datasets(sim: &SimHost) -> Vec<String> {
    let out = std::process::Command::new(sim.dir.join("bin/zfs"))
        .args(["list", "-H", "-r", "-o", "name", "zroot/pot/jails"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn potctl(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_potctl"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "potctl {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn image_cache_is_bounded_and_collected_by_potctl() {
    let env = Env::with_agent_config(json!({"image_cache_max": "1"})).await;
    let images = env.sim.image("demo", "1.0");
    env.sim.image("demo", "2.0");
    let url = format!("file://{}", images.display());
    for tag in ["1.0", "2.0"] {
        let mut cfg = quick_task(&url);
        cfg["tag"] = tag.into();
        let t = env.task(&format!("t{}", tag.replace('.', "")), &cfg);
        env.start(&t).await;
        assert_eq!(env.wait(&t.id(), 30.0).await.result.unwrap().exit_code, 0);
        env.destroy(&t.id()).await;
    }
    // The second start removed the first image, which no pot used any more.
    let datasets = jails_datasets(&env.sim);
    assert!(
        !datasets.iter().any(|d| d.contains("demo_1_0")),
        "{datasets:?}"
    );
    assert!(
        datasets.iter().any(|d| d.ends_with("/demo_2_0")),
        "{datasets:?}"
    );

    let cache = std::path::PathBuf::from(env.sim.config["cache_dir"].as_str().unwrap());
    let sim_dir = env.sim.dir.display().to_string();
    assert_eq!(
        potctl(&["--sim", &sim_dir, "images", "gc", "--dry-run"]),
        "would remove demo_2_0\n"
    );
    let config_file = env.sim.tmp.path().join("agent.json");
    std::fs::write(&config_file, env.sim.config.to_string()).unwrap();
    assert_eq!(
        potctl(&[
            "images",
            "gc",
            "--dry-run",
            "--keep",
            "1",
            "--config",
            &config_file.display().to_string()
        ]),
        "kept demo_2_0\n"
    );
    assert!(cache.join("demo_2.0.xz").exists());
    assert_eq!(
        potctl(&["--sim", &sim_dir, "images", "gc"]),
        "removed demo_2_0\n"
    );
    assert!(!jails_datasets(&env.sim).iter().any(|d| d.contains("demo_")));
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
    env.finish().await;
}

/// The task's events up to and including its image's "Imported image …".
async fn events_until_imported(
    events: &mut tonic::Streaming<nomad_pot_driver::proto::drivers::DriverTaskEvent>,
    t: &TestTask,
) -> Vec<String> {
    let mut messages = Vec::new();
    while !messages
        .iter()
        .any(|m: &String| m.starts_with("Imported image"))
    {
        let ev = within(10.0, "a task event", events.message())
            .await
            .expect("event stream")
            .expect("event stream ended");
        assert_eq!(ev.task_id, t.id());
        messages.push(ev.message);
    }
    messages
}

#[tokio::test(flavor = "multi_thread")]
async fn image_download_progress_reaches_task_events() {
    let env = Env::new().await;
    let server = FileServer::serve(&env.sim.image("demo", "1.0"));
    let mut events = env.task_events().await;
    let t = env.task("progress", &quick_task(&server.url()));
    env.start(&t).await;
    let messages = events_until_imported(&mut events, &t).await;
    let progress: Vec<&String> = messages
        .iter()
        .filter(|m| m.starts_with("Downloading image demo_1.0: "))
        .collect();
    assert!(
        progress.last().is_some_and(|m| m.contains(": 100% of ")),
        "{messages:?}"
    );
    assert_eq!(messages.last().unwrap(), "Imported image demo_1.0");
    env.wait_and_destroy(&t.id(), 30.0).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seeded_cache_runs_a_task_whose_image_url_is_unreachable() {
    let env = Env::new().await;
    // An air-gapped node: the image's files copied into the cache by hand.
    let images = env.sim.image("demo", "1.0");
    let cache = std::path::PathBuf::from(env.sim.config["cache_dir"].as_str().unwrap());
    std::fs::create_dir_all(&cache).unwrap();
    for file in ["demo_1.0.xz", "demo_1.0.xz.meta", "demo_1.0.xz.skein"] {
        std::fs::copy(images.join(file), cache.join(file)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut events = env.task_events().await;
    let t = env.task(
        "airgapped",
        &quick_task(&format!("http://127.0.0.1:{port}/images")),
    );
    env.start(&t).await;
    let messages = events_until_imported(&mut events, &t).await;
    assert_eq!(
        messages,
        [
            "Importing image demo_1.0 from the cache",
            "Imported image demo_1.0"
        ]
    );
    assert_eq!(env.wait(&t.id(), 30.0).await.result.unwrap().exit_code, 0);
    env.destroy(&t.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn potctl_export_writes_an_image_the_plugin_runs() {
    let env = Env::new().await;
    let image = env.file_image();
    let t = env.task("first", &quick_task(&image));
    env.start(&t).await;
    env.wait_and_destroy(&t.id(), 30.0).await;

    // Under the host's images dir, which its agent config allows file:// images from.
    let out = env.sim.images_dir().join("exported");
    std::fs::create_dir_all(&out).unwrap();
    let sim_dir = env.sim.dir.display().to_string();
    let printed = potctl(&[
        "--sim",
        &sim_dir,
        "export",
        "-p",
        "demo_1_0",
        "-t",
        "9",
        "-D",
        &out.display().to_string(),
    ]);
    assert!(
        printed.starts_with(&format!(
            "exported {}/demo_1_0_9.xz (snapshot ",
            out.display()
        )),
        "{printed}"
    );
    let cfg = json!({
        "image": format!("file://{}", out.display()), "pot": "demo_1_0", "tag": "9",
        "command": "/bin/sh", "args": ["-c", "exit 7"],
    });
    let t = env.task("second", &cfg);
    env.start(&t).await;
    assert_eq!(env.wait(&t.id(), 30.0).await.result.unwrap().exit_code, 7);
    env.destroy(&t.id()).await;
    env.finish().await;
}
