//! Who may open a session, beyond the listener's `server.max_connections`:
//! sessions per user (MariaDB's `max_user_connections`) and hosts that
//! failed to log in too often in a row (MariaDB's `max_connect_errors`),
//! refused for a while. Whatever protocol the client speaks, its front end
//! asks here and reports each login's outcome.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Hosts tracked at most: a client spraying addresses cannot grow the
/// table past this. When it is full, records with nothing to remember go
/// first, then the host with the fewest failures.
const MAX_HOSTS: usize = 65_536;

/// Sessions open per user, and hosts' failed logins.
#[derive(Debug, Default)]
pub struct Admission {
    users: Mutex<HashMap<String, usize>>,
    hosts: Mutex<HashMap<IpAddr, HostRecord>>,
}

/// A host's failed logins since its last successful one.
#[derive(Debug, Clone, Copy)]
struct HostRecord {
    failures: u32,
    blocked_until: Option<Instant>,
}

/// The bound on failed logins per host.
#[derive(Debug, Clone, Copy)]
pub struct HostLimit {
    /// Failed logins in a row that block a host (`server.max_connect_errors`).
    pub max_failures: u32,
    /// How long it stays blocked (`server.host_block_ms`).
    pub block: Duration,
}

/// One session of a user, counted until it is dropped.
#[derive(Debug)]
pub struct UserSlot {
    admission: Arc<Admission>,
    user: String,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut users = lock(&self.admission.users);
        if let Some(n) = users.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                users.remove(&self.user);
            }
        }
    }
}

/// A host is tracked by its address; an IPv6 one by its /64, which one
/// client usually holds whole (as it may its addresses).
fn host_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
        v4 => v4,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Admission {
    /// A place for one more session of `user`, unless it has `limit`
    /// open already (None: no limit).
    pub fn admit_user(self: &Arc<Self>, user: &str, limit: Option<usize>) -> Option<UserSlot> {
        let mut users = lock(&self.users);
        let open = users.entry(user.to_owned()).or_insert(0);
        if limit.is_some_and(|limit| *open >= limit) {
            if *open == 0 {
                users.remove(user);
            }
            return None;
        }
        *open += 1;
        Some(UserSlot {
            admission: self.clone(),
            user: user.to_owned(),
        })
    }

    /// How much longer `host` stays blocked, if it is.
    pub fn blocked(&self, host: IpAddr, now: Instant) -> Option<Duration> {
        let hosts = lock(&self.hosts);
        let until = hosts.get(&host_key(host))?.blocked_until?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// A failed login from `host`. True when it is the one that blocks the
    /// host; a block that ran out starts the count again.
    pub fn login_failed(&self, host: IpAddr, limit: HostLimit, now: Instant) -> bool {
        let mut hosts = lock(&self.hosts);
        let key = host_key(host);
        if !hosts.contains_key(&key) && hosts.len() >= MAX_HOSTS {
            make_room(&mut hosts, now);
        }
        let record = hosts.entry(key).or_insert(HostRecord {
            failures: 0,
            blocked_until: None,
        });
        if record.blocked_until.is_some_and(|until| until <= now) {
            *record = HostRecord {
                failures: 0,
                blocked_until: None,
            };
        }
        if record.blocked_until.is_some() {
            return false;
        }
        record.failures = record.failures.saturating_add(1);
        if record.failures >= limit.max_failures {
            record.blocked_until = Some(now + limit.block);
            return true;
        }
        false
    }

    /// A successful login from `host` clears its failures, as MariaDB's does.
    pub fn login_succeeded(&self, host: IpAddr) {
        let mut hosts = lock(&self.hosts);
        let key = host_key(host);
        if hosts.get(&key).is_some_and(|r| r.blocked_until.is_none()) {
            hosts.remove(&key);
        }
    }
}

/// Frees a place in a full host table: every block that ran out, or else
/// the unblocked host with the fewest failures (a blocked host keeps its
/// block: filling the table must not lift it).
fn make_room(hosts: &mut HashMap<IpAddr, HostRecord>, now: Instant) {
    hosts.retain(|_, r| r.blocked_until.is_none_or(|until| until > now));
    if hosts.len() < MAX_HOSTS {
        return;
    }
    let fewest = hosts
        .iter()
        .filter(|(_, r)| r.blocked_until.is_none())
        .min_by_key(|(_, r)| r.failures)
        .map(|(k, _)| *k);
    match fewest {
        Some(key) => {
            hosts.remove(&key);
        }
        // All blocked: the oldest block goes.
        None => {
            let first = hosts
                .iter()
                .min_by_key(|(_, r)| r.blocked_until)
                .map(|(k, _)| *k);
            if let Some(key) = first {
                hosts.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: HostLimit = HostLimit {
        max_failures: 3,
        block: Duration::from_secs(60),
    };

    #[test]
    fn a_user_has_at_most_its_limit_of_sessions() {
        let admission = Arc::new(Admission::default());
        let a = admission.admit_user("app", Some(2)).expect("first");
        let b = admission.admit_user("app", Some(2)).expect("second");
        assert!(admission.admit_user("app", Some(2)).is_none());
        assert!(admission.admit_user("other", Some(2)).is_some());
        drop(a);
        let c = admission.admit_user("app", Some(2)).expect("a freed place");
        assert!(admission.admit_user("app", None).is_some(), "no limit");
        drop((b, c));
        assert!(!lock(&admission.users).contains_key("app"), "none open");
        assert!(admission.admit_user("app", Some(0)).is_none());
        assert!(lock(&admission.users).is_empty(), "nothing left behind");
    }

    #[test]
    fn failures_in_a_row_block_a_host_for_a_while() {
        let admission = Admission::default();
        let host: IpAddr = "10.0.0.7".parse().unwrap();
        let now = Instant::now();
        assert!(!admission.login_failed(host, LIMIT, now));
        assert!(!admission.login_failed(host, LIMIT, now));
        // A success starts the count again, as MariaDB's does.
        admission.login_succeeded(host);
        assert!(!admission.login_failed(host, LIMIT, now));
        assert!(!admission.login_failed(host, LIMIT, now));
        assert!(admission.login_failed(host, LIMIT, now), "the third");
        assert_eq!(admission.blocked(host, now), Some(LIMIT.block));
        admission.login_succeeded(host);
        assert!(admission.blocked(host, now).is_some(), "a block stays");
        let other: IpAddr = "10.0.0.8".parse().unwrap();
        assert_eq!(admission.blocked(other, now), None);
        let later = now + LIMIT.block;
        assert_eq!(admission.blocked(host, later), None, "it runs out");
        assert!(!admission.login_failed(host, LIMIT, later), "counted anew");
    }

    #[test]
    fn an_ipv6_host_is_its_slash_64() {
        let admission = Admission::default();
        let now = Instant::now();
        for i in 1..=3 {
            let ip: IpAddr = format!("2001:db8:1:2::{i}").parse().unwrap();
            admission.login_failed(ip, LIMIT, now);
        }
        let sibling: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(admission.blocked(sibling, now).is_some());
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(admission.blocked(elsewhere, now).is_none());
        let mapped: IpAddr = "::ffff:10.0.0.9".parse().unwrap();
        assert_eq!(host_key(mapped), "10.0.0.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_full_table_keeps_its_blocks() {
        let admission = Admission::default();
        let now = Instant::now();
        let blocked: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            admission.login_failed(blocked, LIMIT, now);
        }
        for i in 0..MAX_HOSTS as u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000 + i));
            admission.login_failed(ip, LIMIT, now);
        }
        assert_eq!(lock(&admission.hosts).len(), MAX_HOSTS);
        assert!(admission.blocked(blocked, now).is_some());
    }
}
