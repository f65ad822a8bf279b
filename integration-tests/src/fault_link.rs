//! A TCP relay between the proxy and one server that adds latency each
//! way when a test asks: user space stands in for `tc netem`, which this
//! machine's kernel does not offer.
//!
//! Packet loss and partitions cannot be had this way: a relay sees a byte
//! stream, not packets (dropping bytes would corrupt the stream, not lose a
//! packet for TCP to retransmit). [`lossy`] puts the relay's listening end
//! in a network namespace, where nftables drops real packets: some, or all
//! of them for a partition.

pub mod lossy;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the relay does with what crosses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Every chunk waits this long, each way.
    Latency(Duration),
}

/// A link to `target`: connect to [`FaultLink::addr`] instead.
pub struct FaultLink {
    pub addr: SocketAddr,
    fault: watch::Sender<Fault>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultLink {
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
}

impl Drop for FaultLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One direction, under the link's fault of the moment.
async fn carry(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, fault: watch::Receiver<Fault>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = *fault.borrow();
        if let Fault::Latency(d) = now {
            tokio::time::sleep(d).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
