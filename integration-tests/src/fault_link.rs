//! A TCP link with faults a test switches on and off, between the proxy and
//! one server: added latency each way, or a cut (nothing crosses; the
//! connections stay open, silent, as behind a partition). User space stands
//! in for `tc netem`, which this machine's kernel does not offer.
//!
//! Packet loss cannot be had this way: a relay sees a byte stream, not
//! packets (dropping bytes would corrupt the stream, not lose a packet for
//! TCP to retransmit). [`lossy`] puts the link's listening end in a network
//! namespace instead, where nftables drops real packets.

pub mod lossy;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What crosses the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Every chunk waits this long, each way.
    Latency(Duration),
    /// Nothing crosses; new connections are accepted and left silent.
    Cut,
}

/// A link to `target`: connect to [`FaultLink::addr`] instead.
pub struct FaultLink {
    pub addr: SocketAddr,
    fault: watch::Sender<Fault>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultLink {
    pub async fn start(target: SocketAddr) -> FaultLink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        FaultLink::serve(listener, target)
    }

    /// A link accepting on `listener` (made elsewhere: in another network
    /// namespace, say); it connects to `target` from this process's own
    /// namespace. Needs a Tokio runtime.
    pub fn on(listener: std::net::TcpListener, target: SocketAddr) -> FaultLink {
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        FaultLink::serve(TcpListener::from_std(listener).expect("listen"), target)
    }

    fn serve(listener: TcpListener, target: SocketAddr) -> FaultLink {
        let addr = listener.local_addr().expect("addr");
        let (fault, watching) = watch::channel(Fault::None);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watching = watching.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(carry(cr, sw, watching.clone()), carry(sr, cw, watching));
                });
            }
        });
        FaultLink { addr, fault, task }
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Cuts the link until the guard is dropped.
    pub fn cut(&self) -> Cut<'_> {
        self.set(Fault::Cut);
        Cut(self)
    }
}

/// A cut link, healed when dropped.
pub struct Cut<'a>(&'a FaultLink);

impl Drop for Cut<'_> {
    fn drop(&mut self) {
        self.0.set(Fault::None);
    }
}

impl Drop for FaultLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One direction, under the link's fault of the moment.
async fn carry(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut fault: watch::Receiver<Fault>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while matches!(*fault.borrow_and_update(), Fault::Cut) {
            if fault.changed().await.is_err() {
                return;
            }
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read as the cut begins are held until it ends.
        loop {
            let now = *fault.borrow_and_update();
            match now {
                Fault::Cut => {
                    if fault.changed().await.is_err() {
                        return;
                    }
                }
                Fault::Latency(d) => {
                    tokio::time::sleep(d).await;
                    break;
                }
                Fault::None => break,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
