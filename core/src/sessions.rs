//! What the proxy knows about each client session from outside it: its
//! rules version, whether it is in a transaction, how long it has been
//! idle (`GET /api/sessions`), and which logical tables its open
//! transaction wrote — the in-flight transactions a migrator waits for
//! before a cutover. Sessions publish these with a few atomic stores per
//! statement; readers never wait on a session.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// `idle_since_ms` while a command runs.
const BUSY: u64 = u64::MAX;

/// One session as the registry sees it.
#[derive(Debug)]
struct SessionInfo {
    id: u32,
    user: String,
    /// The version of the configuration the session holds.
    version: AtomicU64,
    /// The session is tied to `version`: a command runs, or a transaction
    /// (or a held connection) keeps it there. An unbound session moves to
    /// the version in force at its next command.
    bound: AtomicBool,
    in_transaction: AtomicBool,
    /// Milliseconds since the registry began when the last command ended.
    idle_since_ms: AtomicU64,
    /// Logical tables (lower case) written by the open transaction, or by
    /// the statement running outside one.
    written: Mutex<Vec<String>>,
}

impl SessionInfo {
    fn written(&self) -> MutexGuard<'_, Vec<String>> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The version the session runs on, or will at its next command.
    fn effective_version(&self, active: u64) -> u64 {
        let own = self.version.load(Ordering::Relaxed);
        if self.bound.load(Ordering::Relaxed) {
            own
        } else {
            own.max(active)
        }
    }
}

/// One session as `GET /api/sessions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionStatus {
    pub id: u32,
    pub user: String,
    pub rules_version: u64,
    pub in_transaction: bool,
    pub idle_ms: u64,
}

/// Every logged-in client session.
pub struct Sessions {
    began: Instant,
    list: Mutex<BTreeMap<u32, Arc<SessionInfo>>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            began: Instant::now(),
            list: Mutex::default(),
        }
    }
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u32, Arc<SessionInfo>>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.began.elapsed().as_millis() as u64
    }

    /// Adds a session that logged in as `user` on `version`; it leaves the
    /// list when the registration is dropped.
    pub fn register(self: &Arc<Self>, id: u32, user: &str, version: u64) -> Registration {
        let info = Arc::new(SessionInfo {
            id,
            user: user.to_string(),
            version: AtomicU64::new(version),
            bound: AtomicBool::new(false),
            in_transaction: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            written: Mutex::default(),
        });
        self.lock().insert(id, info.clone());
        Registration {
            sessions: self.clone(),
            info,
        }
    }

    fn snapshot(&self) -> Vec<Arc<SessionInfo>> {
        self.lock().values().cloned().collect()
    }

    /// Every session, by id; `active` is the version in force.
    pub fn list(&self, active: u64) -> Vec<SessionStatus> {
        let now = self.now_ms();
        self.snapshot()
            .iter()
            .map(|s| {
                let idle_since = s.idle_since_ms.load(Ordering::Relaxed);
                SessionStatus {
                    id: s.id,
                    user: s.user.clone(),
                    rules_version: s.effective_version(active),
                    in_transaction: s.in_transaction.load(Ordering::Relaxed),
                    idle_ms: if idle_since == BUSY {
                        0
                    } else {
                        now.saturating_sub(idle_since)
                    },
                }
            })
            .collect()
    }

    /// Sessions that run on (or keep) a version older than `version`.
    pub fn on_older_versions(&self, version: u64) -> usize {
        self.snapshot()
            .iter()
            .filter(|s| s.effective_version(version) < version)
            .count()
    }

    /// Sessions whose open transaction (or running statement) wrote `table`.
    pub fn in_flight(&self, table: &str) -> usize {
        // Pairs with the fence of a session recording its writes: either it
        // sees the pause, or this count sees its writes.
        std::sync::atomic::fence(Ordering::SeqCst);
        self.snapshot()
            .iter()
            .filter(|s| s.written().iter().any(|t| t == table))
            .count()
    }
}

/// A session's place in the registry, through which it publishes its state.
pub struct Registration {
    sessions: Arc<Sessions>,
    info: Arc<SessionInfo>,
}

impl Registration {
    /// The session's connection id.
    pub fn id(&self) -> u32 {
        self.info.id
    }

    /// A command begins on `version`.
    pub fn command_started(&self, version: u64) {
        self.info.version.store(version, Ordering::Relaxed);
        self.info.bound.store(true, Ordering::Relaxed);
        self.info.idle_since_ms.store(BUSY, Ordering::Relaxed);
    }

    /// A command ended; `bound`: the session keeps its version for the
    /// next one (transaction, held connection).
    pub fn command_ended(&self, in_transaction: bool, bound: bool) {
        self.info
            .in_transaction
            .store(in_transaction, Ordering::Relaxed);
        self.info.bound.store(bound, Ordering::Relaxed);
        self.info
            .idle_since_ms
            .store(self.sessions.now_ms(), Ordering::Relaxed);
    }

    /// Records that the session writes `tables`; returns those it had not
    /// written yet in this transaction.
    pub fn record_writes(&self, tables: &[String]) -> Vec<String> {
        let mut written = self.info.written();
        let mut added = Vec::new();
        for table in tables {
            if !written.contains(table) {
                written.push(table.clone());
                added.push(table.clone());
            }
        }
        added
    }

    /// Takes back writes recorded for a statement that did not run.
    pub fn forget_writes(&self, tables: &[String]) {
        self.info.written().retain(|t| !tables.contains(t));
    }

    /// The tables the open transaction wrote.
    pub fn written(&self) -> Vec<String> {
        self.info.written().clone()
    }

    /// The transaction ended: it wrote nothing any more.
    pub fn clear_writes(&self) {
        self.info.written().clear();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sessions.lock().remove(&self.info.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_show_their_version_transaction_and_writes() {
        let sessions = Arc::new(Sessions::default());
        let a = sessions.register(1, "app", 1);
        let b = sessions.register(2, "app", 1);

        a.command_started(1);
        a.record_writes(&["users".into()]);
        a.command_ended(true, true);
        assert_eq!(sessions.in_flight("users"), 1);
        assert_eq!(sessions.in_flight("orders"), 0);

        // Version 2 comes: the idle session b follows at its next command,
        // the session in a transaction keeps version 1.
        let list = sessions.list(2);
        assert_eq!(list[0].rules_version, 1);
        assert!(list[0].in_transaction);
        assert_eq!(list[1].rules_version, 2);
        assert_eq!(sessions.on_older_versions(2), 1);

        a.clear_writes();
        a.command_ended(false, false);
        assert_eq!(sessions.in_flight("users"), 0);
        assert_eq!(sessions.on_older_versions(2), 0);

        drop(b);
        assert_eq!(sessions.list(2).len(), 1);
        let added = a.record_writes(&["users".into(), "orders".into()]);
        assert_eq!(added.len(), 2);
        a.forget_writes(&added);
        assert!(a.written().is_empty());
    }
}
