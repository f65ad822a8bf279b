//! Breaking a connection's socket from outside the task that owns it, so
//! that a statement waiting on a data source that stopped answering ends at
//! once with an error: when a pool marks its data source down, it breaks
//! every connection it has open there.
//!
//! A breaker holds a duplicate of the socket's descriptor (a
//! `std::net::TcpStream` from `try_clone`), so shutting it down needs no
//! unsafe code and can never reach a descriptor number the system has given
//! to another socket since: the owner disarms it (drops the duplicate)
//! before its own end closes.

use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// One connection's breaker.
#[derive(Debug)]
pub struct Breaker(Mutex<Option<TcpStream>>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Breaker {
    /// A breaker for the socket `duplicate` is a copy of.
    pub fn new(duplicate: TcpStream) -> Arc<Self> {
        Arc::new(Breaker(Mutex::new(Some(duplicate))))
    }

    /// Shuts the socket down both ways: its owner's reads end, its writes fail.
    pub fn trip(&self) {
        if let Some(socket) = lock(&self.0).as_ref() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// The owner closes the connection: the duplicate goes first.
    pub fn disarm(&self) {
        lock(&self.0).take();
    }
}

/// The breakers of one pool's connections.
#[derive(Debug, Default)]
pub struct Breakers(Mutex<Vec<Weak<Breaker>>>);

impl Breakers {
    /// Keeps `breaker` for `trip_all`; those of closed connections are
    /// forgotten now and then, so the list stays about as long as the
    /// connections open.
    pub fn add(&self, breaker: &Arc<Breaker>) {
        let mut all = lock(&self.0);
        if all.len() >= 16 && all.len().is_power_of_two() {
            all.retain(|b| b.strong_count() > 0);
        }
        all.push(Arc::downgrade(breaker));
    }

    /// Breaks every open connection.
    pub fn trip_all(&self) {
        let all = std::mem::take(&mut *lock(&self.0));
        all.iter().filter_map(Weak::upgrade).for_each(|b| b.trip());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn a_tripped_socket_ends_its_owners_read_and_a_disarmed_one_is_left_alone() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut owned = TcpStream::connect(addr).unwrap();
        let _server = listener.accept().unwrap();
        let breakers = Breakers::default();
        let breaker = Breaker::new(owned.try_clone().unwrap());
        breakers.add(&breaker);
        let reader = std::thread::spawn(move || owned.read(&mut [0u8; 16]));
        breakers.trip_all();
        // End of stream: the read that was waiting returns.
        assert_eq!(reader.join().unwrap().unwrap(), 0);

        let mut other = TcpStream::connect(addr).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let breaker = Breaker::new(other.try_clone().unwrap());
        breakers.add(&breaker);
        breaker.disarm();
        breakers.trip_all();
        std::io::Write::write_all(&mut server, b"x").unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(other.read(&mut byte).unwrap(), 1, "still open");
    }
}
