//! Running the real `potctl` binary against a simulated host, and comparing its output with
//! golden files: shared by the potctl test files.

use nomad_harness::SimHost;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const POTCTL: &str = env!("CARGO_BIN_EXE_potctl");

pub fn potctl(sim: &SimHost, args: &[&str]) -> Output {
    potctl_with_env(sim, args, &[])
}

/// [`potctl`] with `vars` in its environment. The proxy variables of the machine running the
/// tests are not passed on: the test servers are on 127.0.0.1.
pub fn potctl_with_env(sim: &SimHost, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(POTCTL);
    for proxy_var in nomad_pot_client::plugin::PROXY_VARS {
        cmd.env_remove(proxy_var);
    }
    cmd.envs(vars.iter().copied())
        .arg("--sim")
        .arg(&sim.dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run potctl")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// stdout of a potctl run that must succeed.
pub fn ok(sim: &SimHost, args: &[&str]) -> String {
    let out = potctl(sim, args);
    assert!(
        out.status.success(),
        "potctl {args:?}: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub fn sim_with_image() -> (SimHost, String) {
    let sim = SimHost::create();
    let images = sim.image("demo", "1.0");
    (sim, format!("file://{}", images.display()))
}

/// Replaces the variable parts of an output (temp dirs) so it can be compared to a golden file.
pub fn normalize(out: &str, sim: &SimHost, extra: &[(&Path, &str)]) -> String {
    let mut s = out.replace(&sim.dir.display().to_string(), "SIM");
    for (path, name) in extra {
        s = s.replace(&path.display().to_string(), name);
    }
    s.replace(&sim.tmp.path().display().to_string(), "TMP")
}

/// Compares with `tests/golden/<name>`; `UPDATE_GOLDEN=1` rewrites the file.
pub fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        actual == expected,
        "output differs from {} (UPDATE_GOLDEN=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// Writes `<dir>/<job>.nomad.hcl`: a job with one task `task` of the demo image, `settings`
/// next to its config, running `script` with /bin/sh. The image URL is a placeholder: the
/// tests pass `--image`.
pub fn job_file(dir: &Path, job: &str, task: &str, settings: &str, script: &str) -> PathBuf {
    let path = dir.join(format!("{job}.nomad.hcl"));
    std::fs::write(
        &path,
        format!(
            r#"job "{job}" {{
  group "g" {{
    task "{task}" {{
      driver = "pot"
{settings}
      config {{
        image   = "http://127.0.0.1:1/unused"
        pot     = "demo"
        tag     = "1.0"
        command = "/bin/sh"
        args    = ["-c", {script:?}]
      }}
    }}
  }}
}}
"#
        ),
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}
