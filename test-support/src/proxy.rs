//! [`FaultProxy`]: a TCP proxy on loopback in front of a test server that injects the network
//! faults a store must survive honestly: a freeze (nothing forwarded, connections stay open), a
//! lost reply (the request reached the server and ran; its answer never comes back and the
//! connection is cut), a lost request (cut before anything reached the server).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use session_core::time::{Duration as TimeDuration, OffsetDateTime};
use session_core::{
    Bytes, CreateOutcome, Error, Owner, OwnerChange, Ownership, SessionId, SessionKey,
    SessionStore, SessionStoreExt, UpdateOutcome, WriteOptions,
};
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

fn later(minutes: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + TimeDuration::minutes(minutes)
}

/// A fresh key `store` can rotate `previous` to in one atomic update.
fn rotation_target(store: &dyn SessionStore, previous: &SessionKey) -> SessionKey {
    let capabilities = store.capabilities();
    loop {
        let key = SessionId::generate().key();
        if capabilities.can_rotate_between(previous, &key) {
            return key;
        }
    }
}

/// Which half of one exchange the proxy loses.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// The request runs; its reply is lost and the connection cut.
    Reply,
    /// The request never reaches the server; the connection is cut.
    Request,
}

fn arm(proxy: &FaultProxy, fault: Fault) {
    match fault {
        Fault::Reply => proxy.drop_next_reply(),
        Fault::Request => proxy.drop_next_request(),
    }
}

/// An error after a fault must say that the outcome is unknown (transient).
fn transient(what: &str, error: &Error) {
    assert!(
        error.is_transient(),
        "{what}: a lost reply or request must be a transient error, got {error:?}"
    );
}

/// Runs `op` with `fault` armed; the proxy is disarmed afterwards and the store gets a moment to
/// reconnect.
async fn faulty<T>(
    proxy: &FaultProxy,
    fault: Fault,
    op: impl std::future::Future<Output = T>,
) -> T {
    arm(proxy, fault);
    let answer = op.await;
    proxy.disarm();
    answer
}

/// Every write of the contract (create, update in place, rotation of a small and a large value,
/// touch, delete, owned create, owned rotation, revoke, purge) under `fault`, each against state
/// set up beforehand; panics on a dishonest outcome: `IdTaken`, `Conflict`, `NotFound`, `false`
/// or a short count for a write whose preconditions held, or a permanent error. `store` must go
/// through `proxy`, with a response timeout short enough for the test.
pub async fn every_write(store: &dyn SessionStore, proxy: &FaultProxy, fault: Fault) {
    let data = Bytes::from_static(b"payload");
    let cuts = proxy.cuts();

    // create of a fresh key: Created (and stored) or transient; never IdTaken.
    let k = SessionId::generate().key();
    match faulty(proxy, fault, store.create(&k, later(10), data.clone())).await {
        Ok(CreateOutcome::Created) => assert!(store.read(&k).await.unwrap().is_some()),
        Ok(other) => panic!("{fault:?}: create of a fresh key answered {other:?}"),
        Err(e) => transient("create", &e),
    }

    // update in place from version 1.
    let k = SessionId::generate().key();
    assert_eq!(
        store.create(&k, later(10), data.clone()).await.unwrap(),
        CreateOutcome::Created
    );
    match faulty(
        proxy,
        fault,
        store.update(&k, &k, 1, later(10), data.clone()),
    )
    .await
    {
        Ok(UpdateOutcome::Updated { version: 2 }) => {
            assert_eq!(store.read(&k).await.unwrap().unwrap().version, 2)
        }
        Ok(other) => panic!("{fault:?}: a save from the stored version answered {other:?}"),
        Err(e) => transient("update", &e),
    }

    // rotation within one slot, a large value (the staged path) and a small one.
    for size in [16, 4096] {
        let previous = SessionId::generate().key();
        let current = rotation_target(store, &previous);
        let value = Bytes::from(vec![7u8; size]);
        assert_eq!(
            store
                .create(&previous, later(10), value.clone())
                .await
                .unwrap(),
            CreateOutcome::Created
        );
        let answer = faulty(
            proxy,
            fault,
            store.update(&current, &previous, 1, later(10), value.clone()),
        )
        .await;
        match answer {
            Ok(UpdateOutcome::Updated { version: 2 }) => {
                assert!(store.read(&previous).await.unwrap().is_none());
                assert_eq!(store.read(&current).await.unwrap().unwrap().version, 2);
            }
            Ok(other) => panic!("{fault:?}: a rotation ({size} B) answered {other:?}"),
            Err(e) => transient("rotation", &e),
        }
    }

    // touch of a live session.
    let k = SessionId::generate().key();
    let _ = store.create(&k, later(10), data.clone()).await.unwrap();
    match faulty(proxy, fault, store.touch(&k, later(20))).await {
        Ok(true) => {}
        Ok(false) => panic!("{fault:?}: touch of a live session answered false"),
        Err(e) => transient("touch", &e),
    }

    // delete.
    let k = SessionId::generate().key();
    let _ = store.create(&k, later(10), data.clone()).await.unwrap();
    match faulty(proxy, fault, store.delete(&k)).await {
        Ok(()) => assert!(store.read(&k).await.unwrap().is_none()),
        Err(e) => transient("delete", &e),
    }

    // owned create, owned rotation, and a revoke of two sessions.
    let owner = Owner::new(format!("ada-{}", SessionId::generate().key().to_hex())).unwrap();
    let owned = WriteOptions::new().with_owner(OwnerChange::Set(Ownership::of(owner.clone())));
    let k = SessionId::generate().key();
    match faulty(
        proxy,
        fault,
        store.create_opts(&k, later(10), data.clone(), &owned),
    )
    .await
    {
        Ok(CreateOutcome::Created) => {}
        Ok(other) => panic!("{fault:?}: an owned create of a fresh key answered {other:?}"),
        Err(e) => transient("owned create", &e),
    }
    let previous = SessionId::generate().key();
    let current = rotation_target(store, &previous);
    let _ = store
        .create_opts(&previous, later(10), data.clone(), &owned)
        .await
        .unwrap();
    match faulty(
        proxy,
        fault,
        store.update_opts(&current, &previous, 1, later(10), data.clone(), &owned),
    )
    .await
    {
        Ok(UpdateOutcome::Updated { version: 2 }) => {}
        Ok(other) => panic!("{fault:?}: an owned rotation answered {other:?}"),
        Err(e) => transient("owned rotation", &e),
    }
    let other = Owner::new(format!("bob-{}", SessionId::generate().key().to_hex())).unwrap();
    let bob = WriteOptions::new().with_owner(OwnerChange::Set(Ownership::of(other.clone())));
    for _ in 0..2 {
        let k = SessionId::generate().key();
        let _ = store
            .create_opts(&k, later(10), data.clone(), &bob)
            .await
            .unwrap();
    }
    match faulty(proxy, fault, store.revoke_owner(&other, None)).await {
        Ok(count) => {
            assert_eq!(count, 2, "{fault:?}: revoke counted {count} of 2");
            assert!(store.sessions_of(&other).await.unwrap().is_empty());
        }
        Err(e) => transient("revoke", &e),
    }
    // purge: an answer (any count) or a transient error.
    if let Err(e) = faulty(proxy, fault, store.delete_expired()).await {
        transient("delete_expired", &e);
    }
    assert!(
        store.revoke_owner(&other, None).await.is_ok(),
        "the store works after the faults"
    );
    assert!(
        proxy.cuts() > cuts,
        "{fault:?}: the proxy cut no connection"
    );
}

/// Every public operation of `store` (and a `SessionManager`-style save with its re-read, which
/// the caller passes as `save`) answers within `deadline` plus a tenth while `proxy` is frozen,
/// plus `slack` for scheduling; each error is transient. The proxy is unfrozen afterwards.
pub async fn every_operation_within<F, Fut>(
    store: &dyn SessionStore,
    proxy: &FaultProxy,
    deadline: Duration,
    slack: Duration,
    save: F,
) where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = session_core::Result<()>>,
{
    let bound = deadline + deadline / 10 + slack;
    let key = SessionId::generate().key();
    let other = rotation_target(store, &key);
    let owner = Owner::new("frozen").unwrap();
    let owned = WriteOptions::new().with_owner(OwnerChange::Set(Ownership::of(owner.clone())));
    let data = Bytes::from_static(b"frozen");
    proxy.freeze(true);
    macro_rules! bounded {
        ($name:literal, $op:expr) => {{
            let started = std::time::Instant::now();
            let answer = $op.await;
            let took = started.elapsed();
            assert!(
                took < bound,
                "{}: answered after {took:?} against a frozen server (deadline {deadline:?})",
                $name
            );
            // An answer without a round trip (a store whose backend purges by itself) is fine;
            // an error must say the outcome is unknown.
            if let Err(e) = answer {
                transient($name, &e);
            }
        }};
    }
    bounded!("create", store.create(&key, later(10), data.clone()));
    bounded!(
        "owned create",
        store.create_opts(&key, later(10), data.clone(), &owned)
    );
    bounded!("read", store.read(&key));
    bounded!(
        "update",
        store.update(&key, &key, 1, later(10), data.clone())
    );
    bounded!(
        "rotation",
        store.update(&other, &key, 1, later(10), data.clone())
    );
    bounded!("touch", store.touch(&key, later(10)));
    bounded!("delete", store.delete(&key));
    bounded!("delete_expired", store.delete_expired());
    bounded!("sessions_of", store.sessions_of(&owner));
    bounded!("revoke_owner", store.revoke_owner(&owner, None));
    bounded!("clear", store.clear());
    bounded!("a save with its re-read", save());
    proxy.freeze(false);
}
