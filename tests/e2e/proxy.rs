//! Image downloads behind the agent's proxy, from a server that wants the image URL's
//! credentials: the plugin takes `http_proxy` from the environment Nomad starts it with, and
//! neither password reaches a task event, a log line or StartTask's error.

use crate::common::env::*;
use crate::common::{FileServer, ForwardProxy, within};
use crate::{collect_events, wait_for_event};
use nomad_pot_driver::proto::drivers::StartTaskRequest;
use serde_json::json;

/// base64("alice:s3cret"), the image server's.
const ALICE: &str = "Basic YWxpY2U6czNjcmV0";
/// base64("bob:pr0xy"), the proxy's.
const BOB: &str = "Basic Ym9iOnByMHh5";

fn assert_hidden(what: &str, shown: &str) {
    for secret in ["alice", "s3cret", "bob", "pr0xy", "wr0ng"] {
        assert!(!shown.contains(secret), "{secret:?} in {what}: {shown}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agents_proxy_and_the_urls_credentials_are_used_and_never_shown() {
    let proxy = ForwardProxy::with_auth(BOB);
    let proxy_url = proxy.url("bob:pr0xy@");
    let env = Env::with_plugin_env(
        json!({}),
        &[("http_proxy", std::ffi::OsStr::new(&proxy_url))],
    )
    .await;
    let server = FileServer::serve_with_auth(&env.sim.image("demo", "1.0"), ALICE);
    let task = |name: &str, password: &str| {
        let image = server
            .url()
            .replacen("://", &format!("://alice:{password}@"), 1);
        env.task(
            name,
            &json!({
                "image": image, "pot": "demo", "tag": "1.0",
                "command": "/bin/sh", "args": ["-c", "exit 0"],
            }),
        )
    };

    let denied = task("denied", "wr0ng");
    let req = StartTaskRequest {
        task: Some(denied.config.clone()),
    };
    let s = within(30.0, "StartTask", env.plugin.driver().start_task(req))
        .await
        .expect_err("a wrong password was let in");
    let expected = format!(
        "GET {}demo_1.0.xz.skein: HTTP 401 Unauthorized",
        server.url()
    );
    assert!(s.message().contains(&expected), "{s:?}");
    assert_hidden("StartTask's error", s.message());
    env.sim.assert_clean("after the refused image");

    let allowed = task("allowed", "s3cret");
    let events = collect_events(&env, allowed.id());
    env.start(&allowed).await;
    assert_eq!(
        env.wait(&allowed.id(), 30.0)
            .await
            .result
            .unwrap()
            .exit_code,
        0
    );
    let events = wait_for_event(&events, "Imported image", 10.0).await;
    assert!(
        events.iter().any(|e| e == "Imported image demo_1.0"),
        "{events:?}"
    );
    assert_hidden("the task's events", &events.join("\n"));
    env.destroy(&allowed.id()).await;

    // Every download went through the proxy, in absolute form, with its credentials once it
    // asked for them.
    let asked = proxy.asked();
    let xz = format!("GET {}demo_1.0.xz HTTP/1.1", server.url());
    assert!(
        asked
            .iter()
            .any(|(line, auth)| *line == xz && auth.as_deref() == Some(BOB)),
        "{asked:?}"
    );
    assert!(server.requests().iter().any(|r| r == "/demo_1.0.xz"));
    let log = env.plugin.stderr_lines().join("\n");
    assert!(
        log.contains(&format!(
            "through http://***@127.0.0.1:{} (http_proxy)",
            proxy.port
        )),
        "the plugin's log does not name the proxy: {log}"
    );
    assert_hidden("the plugin's log", &log);
    env.finish().await;
}
