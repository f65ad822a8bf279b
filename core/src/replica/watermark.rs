//! What reads must not be older than, with `read_consistency = "proxy"`:
//! per data source, every write this proxy acknowledged before the read
//! began, from any session. Applications spread their statements over a
//! pool of connections; a read on one connection right after a write on
//! another must see it, as on one server.
//!
//! A write bumps its data source's epoch once it has committed, before the
//! client hears of it. A read takes the primary's committed position as
//! of that epoch (asking the primary once per epoch, whichever session
//! reads first) and reads a replica only once the replica has applied it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::backend::ReplicaPosition;

/// The write watermarks of every data source; they outlive configuration
/// versions (a reload must not forget a write).
pub struct Watermarks<P> {
    by_source: Mutex<HashMap<String, Arc<Watermark<P>>>>,
}

impl<P> Default for Watermarks<P> {
    fn default() -> Self {
        Watermarks {
            by_source: Mutex::default(),
        }
    }
}

impl<P: ReplicaPosition> Watermarks<P> {
    /// The watermark of data source `ds`.
    pub fn of(&self, ds: &str) -> Arc<Watermark<P>> {
        let mut map = self.by_source.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = map.get(ds) {
            return w.clone();
        }
        map.entry(ds.to_owned())
            .or_insert_with(|| Arc::new(Watermark::default()))
            .clone()
    }
}

/// One data source's writes, as far as reads are concerned.
pub struct Watermark<P> {
    /// Bumped by every committed write. Starts ahead of `known`: writes
    /// may have happened before this proxy started.
    epoch: AtomicU64,
    /// The primary's position as of an epoch (None: not asked yet).
    known: Mutex<(u64, Option<Arc<P>>)>,
    /// One question to the primary at a time.
    asking: tokio::sync::Mutex<()>,
}

impl<P> Default for Watermark<P> {
    fn default() -> Self {
        Watermark {
            epoch: AtomicU64::new(1),
            known: Mutex::new((0, None)),
            asking: tokio::sync::Mutex::new(()),
        }
    }
}

impl<P: ReplicaPosition> Watermark<P> {
    /// A write committed on the primary.
    pub fn wrote(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The position a read must see, when known for the current epoch
    /// (no waiting, no question to the primary).
    pub fn current(&self) -> Option<Arc<P>> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        (known.0 == epoch).then(|| known.1.clone()).flatten()
    }

    /// The position a read must see: the known one if no write came since,
    /// else what `ask` (the primary's position) answers now.
    pub async fn position<E, F, Fut>(&self, ask: F) -> Result<Arc<P>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<P, E>>,
    {
        if let Some(known) = self.current() {
            return Ok(known);
        }
        let _asking = self.asking.lock().await;
        // Another read may have asked while this one waited.
        if let Some(known) = self.current() {
            return Ok(known);
        }
        // Read before asking: writes after this point make it stale again.
        let epoch = self.epoch.load(Ordering::Acquire);
        let position = Arc::new(ask().await?);
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.0 < epoch {
            *known = (epoch, Some(position.clone()));
        }
        Ok(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::backend::memory::Seq;

    #[tokio::test]
    async fn the_primary_is_asked_once_per_epoch() {
        let w = Watermark::default();
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let ask = || async {
            asked.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(Seq(5))
        };
        assert!(w.current().is_none(), "writes before the start count");
        w.position(ask).await.unwrap();
        w.position(ask).await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        w.wrote();
        assert!(w.current().is_none());
        w.position(ask).await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        assert_eq!(w.current().unwrap().as_ref(), &Seq(5));
    }
}
