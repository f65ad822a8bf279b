//! The `shardgate` binary, for the tests that run the proxy as a child
//! process (its memory its own, its logs on its standard output).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{crate_dir, say, Config, SEED_CONFIG};

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

/// The proxy binary running as a child process (killed when dropped).
pub struct ProxyProcess {
    child: Child,
    /// Where it serves MySQL clients.
    pub addr: SocketAddr,
    log: PathBuf,
}

impl ProxyProcess {
    /// Starts `bin` on the config file `config`, its log in `dir`, and
    /// waits until it says where it serves.
    pub fn start(bin: &Path, config: &Path, dir: &Path) -> ProxyProcess {
        let log = dir.join("shardgate.log");
        std::fs::File::create(&log).expect("create the proxy log");
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(append_to(&log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        // "ShardGate is serving MySQL clients on 127.0.0.1:PORT (admin ...); ..."
        let stdout = child.stdout.take().expect("piped stdout");
        // Its logs (on stdout) go to the log file after its errors (stderr).
        let mut log_file = append_to(&log);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut sent = false;
            for line in lines.by_ref().map_while(Result::ok) {
                let _ = writeln!(log_file, "{line}");
                if !sent {
                    if let Some(rest) = line.split(" clients on ").nth(1) {
                        let addr: String = rest
                            .trim_start()
                            .chars()
                            .take_while(|c| !c.is_whitespace() && *c != ';' && *c != ',')
                            .collect();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "shardgate did not report its address within 30s:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let addr: SocketAddr = match addr.parse() {
            Ok(a) => a,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("shardgate's address {addr:?}: {e}");
            }
        };
        ProxyProcess { child, addr, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How it ended, if it did.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends it a signal by name (`HUP`, `STOP`, ...).
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success());
        assert_eq!(sent.ok(), Some(true), "kill -{name} {}", self.pid());
    }

    /// A `kB` field of its `/proc/<pid>/status` (`VmHWM:`, the peak
    /// resident memory; `VmRSS:`, the current one), in KiB; an error once
    /// it has exited.
    pub fn status_kib(&mut self, field: &str) -> Result<u64, String> {
        if let Some(status) = self.exited() {
            return Err(format!("shardgate exited ({status})"));
        }
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {field} in {path}"))
    }

    /// Sets its peak resident memory (VmHWM) to its current one, so that
    /// the next peak read is that of what runs from now on (Linux's
    /// `clear_refs`, value 5).
    pub fn reset_peak(&mut self) -> Result<(), String> {
        if let Some(status) = self.exited() {
            return Err(format!("shardgate exited ({status})"));
        }
        let path = format!("/proc/{}/clear_refs", self.pid());
        std::fs::write(&path, "5").map_err(|e| format!("{path}: {e}"))
    }

    /// The number of its open file descriptors (`/proc/<pid>/fd`).
    pub fn open_fds(&mut self) -> Result<usize, String> {
        if let Some(status) = self.exited() {
            return Err(format!("shardgate exited ({status})"));
        }
        let path = format!("/proc/{}/fd", self.pid());
        std::fs::read_dir(&path)
            .map(|d| d.count())
            .map_err(|e| format!("{path}: {e}"))
    }

    /// Its accepted client connections still open: TCP sockets it holds
    /// whose local port is its listening one. Unlike its descriptors, these
    /// do not move with its pools' sizes.
    pub fn client_connections(&mut self) -> Result<usize, String> {
        if let Some(status) = self.exited() {
            return Err(format!("shardgate exited ({status})"));
        }
        let fd_dir = format!("/proc/{}/fd", self.pid());
        let inodes: std::collections::HashSet<String> = std::fs::read_dir(&fd_dir)
            .map_err(|e| format!("{fd_dir}: {e}"))?
            .filter_map(|entry| {
                let link = std::fs::read_link(entry.ok()?.path()).ok()?;
                let link = link.to_str()?;
                Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
            })
            .collect();
        let port = format!("{:04X}", self.addr.port());
        let mut count = 0;
        for table in ["tcp", "tcp6"] {
            let path = format!("/proc/{}/net/{table}", self.pid());
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
            // sl local_address rem_address st ... inode (the tenth field).
            count += text
                .lines()
                .skip(1)
                .map(|line| line.split_whitespace().collect::<Vec<_>>())
                .filter(|f| {
                    f.len() > 9
                        && f[1].rsplit(':').next() == Some(port.as_str())
                        && f[3] != "0A"
                        && inodes.contains(f[9])
                })
                .count();
        }
        Ok(count)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the proxy; returns the tail of its log.
    pub fn stop(&mut self) -> String {
        if let Ok(None) = self.child.try_wait() {
            // SIGTERM first, so that it shuts down cleanly
            let _ = Command::new("kill")
                .arg(self.pid().to_string())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn append_to(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open the proxy log")
}

/// A scratch folder for one child proxy run: `purpose` and this process's id.
pub fn scratch_dir(purpose: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardgate-{purpose}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the scratch dir");
    dir
}

/// The seed config with `rules` appended, for a child proxy: it listens on
/// an ephemeral port (read back from its start-up line), its admin endpoint
/// on a free port, and reads on the primaries (the tests load rows straight
/// into them). Written to `dir`/shardgate.toml.
pub fn write_child_config(dir: &Path, rules: &str) -> (PathBuf, Config) {
    let mut section = String::new();
    let mut text = String::new();
    for line in SEED_CONFIG.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.to_string();
        }
        if section == "[server]" && trimmed.starts_with("mysql_listen") {
            text.push_str("mysql_listen = \"127.0.0.1:0\"\nread_write_splitting = false\n");
        } else if section == "[server]" && trimmed.starts_with("admin_listen") {
            text.push_str(&format!("admin_listen = \"127.0.0.1:{}\"\n", free_port()));
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    text.push_str(rules);
    let cfg = Config::from_toml_str(&text).expect("the child proxy's config loads");
    let path = dir.join("shardgate.toml");
    std::fs::write(&path, &text).expect("write the config");
    (path, cfg)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
