//! [`FaultProxy`]: a TCP proxy on loopback in front of a test server that injects the network
//! faults a store must survive honestly: a freeze (nothing forwarded, connections stay open), a
//! lost reply (the request reached the server and ran; its answer never comes back and the
//! connection is cut), a lost request (cut before anything reached the server).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Faults {
    frozen: AtomicBool,
    /// Replies still to swallow (each cuts its connection).
    drop_replies: AtomicUsize,
    /// Requests still to swallow (each cuts its connection).
    drop_requests: AtomicUsize,
    /// Connections cut by a fault so far.
    cuts: AtomicUsize,
}

impl Faults {
    /// Takes one armed fault from `counter`, if any.
    fn take(counter: &AtomicUsize) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// A TCP proxy on 127.0.0.1 forwarding every connection to one target; stopped on drop.
pub struct FaultProxy {
    address: SocketAddr,
    faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// A proxy on a free port forwarding to `target` (`host:port`).
    pub async fn start(target: impl Into<String>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Ok(Self::on(listener, target))
    }

    /// A proxy on `listener` (bound before the server starts, when the server must announce
    /// the proxy's port) forwarding to `target`.
    pub fn on(listener: TcpListener, target: impl Into<String>) -> Self {
        let address = listener.local_addr().expect("a bound listener");
        let target = target.into();
        let faults = Arc::new(Faults::default());
        let shared = Arc::clone(&faults);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (target, faults) = (target.clone(), Arc::clone(&shared));
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    // Either direction ending (a fault, or a side closing) ends the connection.
                    tokio::select! {
                        () = pump(client_read, server_write, &faults, Direction::Request) => {}
                        () = pump(server_read, client_write, &faults, Direction::Reply) => {}
                    }
                });
            }
        });
        Self {
            address,
            faults,
            task,
        }
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// While `frozen`, nothing is forwarded in either direction (the kernel still accepts and
    /// acknowledges): a hung server or network.
    pub fn freeze(&self, frozen: bool) {
        self.faults.frozen.store(frozen, Ordering::SeqCst);
    }

    /// The next reply any server sends is swallowed and its connection cut: the request ran,
    /// its answer is lost.
    pub fn drop_next_reply(&self) {
        self.faults.drop_replies.fetch_add(1, Ordering::SeqCst);
    }

    /// The next request any client sends is swallowed and its connection cut: nothing reached
    /// the server.
    pub fn drop_next_request(&self) {
        self.faults.drop_requests.fetch_add(1, Ordering::SeqCst);
    }

    /// Disarms faults not yet spent; returns how many were left.
    pub fn disarm(&self) -> usize {
        self.faults.drop_replies.swap(0, Ordering::SeqCst)
            + self.faults.drop_requests.swap(0, Ordering::SeqCst)
    }

    /// Connections cut by a fault so far.
    pub fn cuts(&self) -> usize {
        self.faults.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Request,
    Reply,
}

/// Copies `from` to `to` chunk by chunk: held while frozen, swallowed (and the connection
/// ended) when a fault of this direction is armed.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, faults: &Faults, way: Direction) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while faults.frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let armed = match way {
            Direction::Request => &faults.drop_requests,
            Direction::Reply => &faults.drop_replies,
        };
        if Faults::take(armed) {
            faults.cuts.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
