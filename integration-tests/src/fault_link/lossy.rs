//! A fault link that loses real packets, for the loss fault of issue 15,
//! and all of them for a partition; its relay adds latency.
//!
//! The kernel here has no `tc netem`, and a relay in user space cannot lose
//! packets: TCP retransmits under it. So the link's listening socket lives
//! in a network namespace of its own, joined to the host by a veth pair,
//! and nftables inside that namespace drops packets at random, both ways:
//! the proxy's packets as they come in, the answers as they go out. The
//! relay's connection to the server is made from the host's namespace: the
//! sandbox's servers listen on 127.0.0.1 only, which the namespace cannot
//! reach.
//!
//! ```text
//! proxy ──10.231.N.1 ═veth═ 10.231.N.2:port (namespace; nft drops) ── relay ── 127.0.0.1:server
//! ```
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables): [`unavailable`] says
//! what is missing. The namespace and its veth are removed when the link
//! is dropped, also when a test panics; those of a run that crashed are
//! removed by the next one (they are named after their process).

use std::fs::File;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::{Fault, FaultLink};

/// Namespaces are named `sgloss-<pid>-<n>`.
const PREFIX: &str = "sgloss-";
/// The nftables table in each namespace.
const TABLE: &str = "sgloss";
/// The veth's end inside the namespace (its own name space of links).
const INNER_IF: &str = "sgloss0";

/// Why a lossy link cannot be made here, or None when it can.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("a lossy link needs root (network namespaces, nftables)".into());
    }
    for (tool, args, package) in [
        ("ip", &["netns", "list"][..], "iproute2"),
        ("nft", &["--version"][..], "nftables"),
    ] {
        if let Err(e) = run(tool, args) {
            return Some(format!(
                "`{tool}` does not run ({e}); install {package} (scripts/install-deps.sh)"
            ));
        }
    }
    None
}

/// A link to a server whose packets are lost at random while [`LossyLink::lose`]
/// is in force. Connect to [`LossyLink::addr`] instead of the server.
pub struct LossyLink {
    /// Dropped before the namespace its listener lives in.
    link: FaultLink,
    net: Namespace,
}

/// Packets that met the loss rule one way, and those it dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub seen: u64,
    pub lost: u64,
}

/// What the loss rules counted, both ways, while loss was on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// From the link's clients (the proxy) toward the server.
    pub to_server: Tally,
    /// The server's answers, back toward the clients.
    pub to_client: Tally,
}

impl Counts {
    pub fn lost(&self) -> u64 {
        self.to_server.lost + self.to_client.lost
    }

    pub fn seen(&self) -> u64 {
        self.to_server.seen + self.to_client.seen
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} packets dropped ({} of {} toward the server, {} of {} back)",
            self.lost(),
            self.seen(),
            self.to_server.lost,
            self.to_server.seen,
            self.to_client.lost,
            self.to_client.seen
        )
    }
}

impl LossyLink {
    /// A link to `target` (on the host, e.g. 127.0.0.1): a new namespace and
    /// veth, and a relay listening inside. Panics when it cannot be made
    /// (ask [`unavailable`] first). Needs a Tokio runtime.
    pub fn start(target: SocketAddr) -> LossyLink {
        let net = Namespace::create();
        let listener = listen_inside(&net.name, net.inner_ip)
            .unwrap_or_else(|e| panic!("a listener inside {}: {e}", net.name));
        LossyLink {
            link: FaultLink::on(listener, target),
            net,
        }
    }

    /// Where to connect: an address inside the namespace, across the veth.
    pub fn addr(&self) -> SocketAddr {
        self.link.addr
    }

    /// Sets what the relay does with what crosses it (latency; see
    /// [`FaultLink::set`]).
    pub fn set(&self, fault: Fault) {
        self.link.set(fault);
    }

    /// Drops `percent` of the packets each way until the guard is dropped:
    /// at 100, a partition (nothing crosses, nothing is refused).
    pub fn lose(&self, percent: u8) -> Loss<'_> {
        assert!(percent <= 100, "{percent}% of the packets");
        // nftables's random numbers are 0..=99: every packet needs no draw.
        let draw = match percent {
            100 => String::new(),
            _ => format!("numgen random mod 100 < {percent} "),
        };
        let rule = |chain: &str, dir: &str| {
            format!(
                "add rule inet {TABLE} {chain} {dir} {INNER_IF} counter name {chain}_seen \
                 {draw}counter name {chain}_lost drop\n"
            )
        };
        let script = rule("to_server", "iifname") + &rule("to_client", "oifname");
        self.net.nft_script(&script);
        Loss(self)
    }

    /// The packets the loss rules saw and dropped so far (they keep counting
    /// across [`LossyLink::lose`]s).
    pub fn counts(&self) -> Counts {
        let out = self
            .net
            .nft(&["-j", "list", "counters", "table", "inet", TABLE]);
        let json: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("nft's JSON: {e}: {out}"));
        let packets = |name: &str| {
            json["nftables"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|item| item["counter"]["name"] == name)
                .and_then(|item| item["counter"]["packets"].as_u64())
                .unwrap_or_else(|| panic!("no counter {name} in {out}"))
        };
        let tally = |chain: &str| Tally {
            seen: packets(&format!("{chain}_seen")),
            lost: packets(&format!("{chain}_lost")),
        };
        Counts {
            to_server: tally("to_server"),
            to_client: tally("to_client"),
        }
    }
}

/// Loss in force, ended when dropped.
pub struct Loss<'a>(&'a LossyLink);

impl Drop for Loss<'_> {
    fn drop(&mut self) {
        // Said, not panicked: this may run while a test unwinds, and the
        // namespace is removed right after anyway.
        let script =
            format!("flush chain inet {TABLE} to_server\nflush chain inet {TABLE} to_client\n");
        if let Err(e) = self.0.net.try_nft_script(&script) {
            eprintln!("lossy link: loss not lifted: {e}");
        }
    }
}

/// A network namespace with a veth to the host: host end
/// `10.231.N.1/30`, namespace end `10.231.N.2/30`, N free on the host.
struct Namespace {
    name: String,
    host_if: String,
    inner_ip: Ipv4Addr,
}

/// One namespace made at a time in this process: each takes a free subnet.
static CREATING: Mutex<()> = Mutex::new(());

impl Namespace {
    fn create() -> Namespace {
        let _one = CREATING.lock().unwrap_or_else(|e| e.into_inner());
        remove_leftovers();
        let pid = std::process::id();
        let n = (0u32..)
            .map(|n| format!("{PREFIX}{pid}-{n}"))
            .find(|name| !std::path::Path::new("/run/netns").join(name).exists())
            .expect("a free name");
        let index = n.rsplit('-').next().unwrap_or("0").to_owned();
        let subnet = free_subnet();
        let net = Namespace {
            host_if: format!("sgl{pid}h{index}"),
            name: n,
            inner_ip: Ipv4Addr::new(10, 231, subnet, 2),
        };
        must("ip", &["netns", "add", &net.name]);
        // From here on, dropping `net` removes what was made.
        let host_ip = format!("10.231.{subnet}.1/30");
        let inner_ip = format!("{}/30", net.inner_ip);
        // One TCP segment per packet (no GSO): else nftables would see, and
        // drop, bundles of up to 64 KB of segments as one packet.
        let veth = format!(
            "link add {} gso_max_segs 1 type veth peer name {INNER_IF} gso_max_segs 1 netns {}",
            net.host_if, net.name
        );
        must("ip", &veth.split_whitespace().collect::<Vec<_>>());
        must("ip", &["addr", "add", &host_ip, "dev", &net.host_if]);
        must("ip", &["link", "set", &net.host_if, "up"]);
        net.ip(&["addr", "add", &inner_ip, "dev", INNER_IF]);
        net.ip(&["link", "set", INNER_IF, "up"]);
        net.ip(&["link", "set", "lo", "up"]);
        net.nft_script(&format!(
            "table inet {TABLE} {{\n\
               counter to_server_seen {{}}\n counter to_server_lost {{}}\n\
               counter to_client_seen {{}}\n counter to_client_lost {{}}\n\
               chain to_server {{ type filter hook input priority 0; policy accept; }}\n\
               chain to_client {{ type filter hook output priority 0; policy accept; }}\n\
             }}\n"
        ));
        net
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        must("ip", &all);
    }

    fn nft(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name, "nft"];
        all.extend_from_slice(args);
        must("ip", &all)
    }

    fn nft_script(&self, script: &str) {
        if let Err(e) = self.try_nft_script(script) {
            panic!("nft in {}: {e}\n{script}", self.name);
        }
    }

    fn try_nft_script(&self, script: &str) -> Result<(), String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting one end of a veth deletes both, at once, even while
        // sockets inside keep the namespace itself alive.
        let _ = run("ip", &["link", "del", &self.host_if]);
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!("lossy link: {} not removed: {e}", self.name);
        }
    }
}

/// Removes the namespaces of processes that are gone (a run that crashed
/// or was killed); their veths go with them.
fn remove_leftovers() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid).exists() {
            eprintln!("lossy link: removing {name}, left by process {pid}");
            let _ = run("ip", &["netns", "del", name]);
        }
    }
}

/// A third octet N such that no address of the host is in 10.231.N.0/24,
/// starting from one derived from the pid (test processes run side by side).
fn free_subnet() -> u8 {
    let addrs = must("ip", &["-4", "-o", "addr", "show"]);
    let start = std::process::id() % 256;
    (0..256)
        .map(|i| ((start + i) % 256) as u8)
        .find(|n| !addrs.contains(&format!("inet 10.231.{n}.")))
        .expect("a free 10.231.N.0/24 on the host")
}

/// A listening socket made inside namespace `name`, on `ip` and a free
/// port. A socket stays in the namespace it was made in, so a thread joins
/// the namespace (setns applies to the calling thread only), makes it and
/// ends; the rest of the process never leaves the host's namespace.
fn listen_inside(name: &str, ip: Ipv4Addr) -> std::io::Result<TcpListener> {
    let ns = File::open(std::path::Path::new("/run/netns").join(name))?;
    std::thread::spawn(move || {
        // SAFETY: `ns` is an open namespace file for the call's duration;
        // setns changes only this thread, which ends right after.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        TcpListener::bind((ip, 0))
    })
    .join()
    .expect("the namespace thread")
}

/// `tool args`, its stdout, or why it failed.
fn run(tool: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{tool} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(tool: &str, args: &[&str]) -> String {
    run(tool, args).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Through 10% loss each way, a megabyte comes back from an echo server
    /// whole and in order (TCP retransmits what nftables dropped), the
    /// counters show about that share dropped, and nothing is left of the
    /// namespace once the link is dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bytes_cross_whole_while_packets_are_lost() {
        if let Some(reason) = unavailable() {
            crate::skip("bytes_cross_whole_while_packets_are_lost", &reason);
            return;
        }
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (conn, _) = echo.accept().await.unwrap();
            let (mut r, mut w) = conn.into_split();
            tokio::io::copy(&mut r, &mut w).await.unwrap();
        });
        let link = LossyLink::start(target);
        let name = link.net.name.clone();
        assert!(link.addr().ip().to_string().starts_with("10.231."));
        let sent: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut back = Vec::new();
        {
            let _loss = link.lose(10);
            let conn = tokio::net::TcpStream::connect(link.addr()).await.unwrap();
            let (mut r, mut w) = conn.into_split();
            let data = sent.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&data).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let read = r.read_to_end(&mut back);
            tokio::time::timeout(Duration::from_secs(60), read)
                .await
                .expect("the echo within 60 s")
                .unwrap();
            writer.await.unwrap();
        }
        assert!(back == sent, "{} bytes back of {}", back.len(), sent.len());
        let counts = link.counts();
        eprintln!("1 MB each way through 10% loss: {counts}");
        let ratio = counts.lost() as f64 / counts.seen() as f64;
        assert!(counts.seen() > 500, "{counts}");
        assert!((0.05..0.16).contains(&ratio), "{counts}");
        drop(link);
        assert!(!std::path::Path::new("/run/netns").join(&name).exists());
        let links = must("ip", &["-o", "link", "show"]);
        assert!(
            !links.contains(&format!("sgl{}h", std::process::id())),
            "{links}"
        );
    }
}
