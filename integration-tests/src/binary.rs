//! The `shardgate` binary, for the tests that run the proxy as a child
//! process (its memory its own, its logs on its standard output).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{crate_dir, say};

/// The `shardgate` binary: `SHARDGATE_BIN`, or built now with cargo into the
/// target dir and profile of this test executable.
pub fn shardgate_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("SHARDGATE_BIN") {
        if !bin.is_empty() {
            let p = PathBuf::from(bin);
            assert!(p.is_file(), "SHARDGATE_BIN={} does not exist", p.display());
            return p;
        }
    }
    // <target>/<profile>/deps/e2e-<hash>
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from <target>/<profile>/deps")
        .to_path_buf();
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_string();
    let target_dir = profile_dir.parent().expect("<target>/<profile>");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "shardgate-proxy",
        "--bin",
        "shardgate",
    ]);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let workspace = crate_dir()
        .parent()
        .expect("the workspace root")
        .to_path_buf();
    let t = Instant::now();
    let out = cmd
        .current_dir(&workspace)
        .env("CARGO_TARGET_DIR", target_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo} build: {e} (or set SHARDGATE_BIN)"));
    assert!(
        out.status.success(),
        "cargo build -p shardgate-proxy --bin shardgate ({profile}) failed (or set SHARDGATE_BIN):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = profile_dir.join("shardgate");
    assert!(bin.is_file(), "{} was not built", bin.display());
    say(&format!(
        "built {} ({profile}) in {:.1}s",
        bin.display(),
        t.elapsed().as_secs_f64()
    ));
    bin
}
