//! What one session wrote on each data source, for read-your-writes with
//! `read_consistency = "session"`: after a statement that may have written
//! on a primary, the data source is marked; before the session's next
//! read that could go to a replica, the primary's committed position is
//! learnt (asking later rather than right after the write keeps the
//! write's connection untouched for the client's own follow-up
//! statements); a replica serves the read only once it has applied that
//! position.
//!
//! When the primary cannot be asked because it is down, nothing newer than
//! what its replicas received can be read anywhere: a replica that has
//! applied everything it received from the primary serves the read, and
//! the next read asks again.

use foldhash::HashMap;

use crate::backend::ReplicaPosition;
use crate::error::BackendError;

/// What a session knows of its last write on one data source.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Written<P> {
    /// Written; the primary's position not asked yet.
    Pending,
    /// A replica must have applied this to serve the session.
    At(P),
    /// Written, position unknown: reads use the primary.
    Unknown,
    /// Written, and the primary was down when its position was asked.
    PrimaryDown,
}

/// What a replica must have applied to serve a session's read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness<P> {
    /// Anything: the session wrote nothing there (or it is known to be
    /// everywhere).
    Any,
    /// This position, the session's last write there.
    At(P),
    /// Everything it received from its primary, which is down.
    AllReceived,
}

/// A session's writes by data source.
#[derive(Debug, Clone, Default)]
pub struct SessionWrites<P> {
    written: HashMap<String, Written<P>>,
}

impl<P: ReplicaPosition> SessionWrites<P> {
    /// A statement may have written on `ds`'s primary and committed.
    pub fn wrote(&mut self, ds: &str) {
        self.written.insert(ds.to_owned(), Written::Pending);
    }

    /// Whether a read on `ds` must go to its primary: the session wrote
    /// there and the position of that write is not known (yet).
    pub fn needs_primary(&self, ds: &str) -> bool {
        matches!(
            self.written.get(ds),
            Some(Written::Pending | Written::Unknown)
        )
    }

    /// What a replica of `ds` must have applied to serve the session.
    pub fn freshness(&self, ds: &str) -> Freshness<P> {
        match self.written.get(ds) {
            Some(Written::At(pos)) => Freshness::At(pos.clone()),
            Some(Written::PrimaryDown) => Freshness::AllReceived,
            _ => Freshness::Any,
        }
    }

    /// The data sources whose primary must be asked for its position
    /// before a read (written since, or down when last asked).
    pub fn to_ask(&self) -> Vec<String> {
        self.written
            .iter()
            .filter(|(_, w)| matches!(w, Written::Pending | Written::PrimaryDown))
            .map(|(ds, _)| ds.clone())
            .collect()
    }

    /// What asking `ds`'s primary for its committed position gave (None:
    /// the data source has no primary to ask).
    pub fn asked(&mut self, ds: &str, answer: Option<Result<P, BackendError>>) {
        let written = match answer {
            Some(Ok(pos)) => Written::At(pos),
            Some(Err(e)) if e.is_unreachable() => {
                tracing::debug!(%ds, "the primary is down: {e}");
                Written::PrimaryDown
            }
            Some(Err(e)) => {
                tracing::debug!(%ds, "cannot read the primary's position: {e}");
                Written::Unknown
            }
            None => Written::Unknown,
        };
        self.written.insert(ds.to_owned(), written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::Seq;
    use crate::error::ConnError;

    fn refused() -> BackendError {
        ConnError::Connect {
            ds: "ds1".into(),
            addr: "127.0.0.1:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        }
        .into()
    }

    #[test]
    fn a_write_sends_reads_to_the_primary_until_its_position_is_known() {
        let mut writes = SessionWrites::<Seq>::default();
        assert!(!writes.needs_primary("ds1"));
        assert_eq!(writes.freshness("ds1"), Freshness::Any);
        assert!(writes.to_ask().is_empty());
        writes.wrote("ds1");
        assert!(writes.needs_primary("ds1"));
        assert!(!writes.needs_primary("ds2"));
        assert_eq!(writes.to_ask(), vec!["ds1".to_owned()]);
        writes.asked("ds1", Some(Ok(Seq(7))));
        assert!(!writes.needs_primary("ds1"));
        assert_eq!(writes.freshness("ds1"), Freshness::At(Seq(7)));
        assert!(writes.to_ask().is_empty());
        // A later write needs a later position.
        writes.wrote("ds1");
        assert!(writes.needs_primary("ds1"));
    }

    #[test]
    fn a_primary_that_is_down_lets_replicas_serve_what_they_received() {
        let mut writes = SessionWrites::<Seq>::default();
        writes.wrote("ds1");
        writes.asked("ds1", Some(Err(refused())));
        assert!(!writes.needs_primary("ds1"));
        assert_eq!(writes.freshness("ds1"), Freshness::AllReceived);
        // Asked again at the next read.
        assert_eq!(writes.to_ask(), vec!["ds1".to_owned()]);
    }

    #[test]
    fn a_position_that_cannot_be_read_keeps_reads_on_the_primary() {
        let mut writes = SessionWrites::<Seq>::default();
        writes.wrote("ds1");
        let refused_statement = BackendError::from(ConnError::Server {
            ds: "ds1".into(),
            err: crate::error::DbError {
                code: 1227,
                sqlstate: *b"42000",
                message: "Access denied".into(),
            },
        });
        writes.asked("ds1", Some(Err(refused_statement)));
        assert!(writes.needs_primary("ds1"));
        assert!(writes.to_ask().is_empty());
        writes.asked("ds2", None);
        assert!(writes.needs_primary("ds2"));
    }
}
