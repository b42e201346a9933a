//! Helpers shared by the behaviours, and by checks of other crates written in their style (the
//! front's checks in `session-manager`).

use session_core::time::{Duration, OffsetDateTime};
use session_core::{
    Bytes, CreateOutcome, Record, Result, SessionId, SessionKey, SessionStore, SessionStoreExt,
    truncate_to_millis,
};

/// Fails the enclosing behaviour with a formatted message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::Failure::new(format!($($msg)+)));
        }
    };
}
pub use crate::ensure;

/// Fails the enclosing behaviour unless `left == right`, showing both.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err($crate::Failure::new(format!(
                "{}: expected {:?}, got {:?}", format!($($msg)+), right, left
            )));
        }
    }};
}
pub use crate::ensure_eq;

/// A fresh random key. All keys of one run share their first byte (chosen at random once), so
/// any two of them can be rotated between on a partitioned store too (Redis Cluster keeps a
/// rotation within one first byte: `SessionStore::can_rotate_between`); the rest is random.
pub fn key() -> SessionKey {
    static FIRST: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    let first = *FIRST.get_or_init(|| SessionId::generate().key().as_bytes()[0]);
    let mut bytes = *SessionId::generate().key().as_bytes();
    bytes[0] = first;
    SessionKey::from_bytes(&bytes).expect("32 bytes")
}

/// `now + seconds`, at the millisecond precision stores keep.
pub fn in_secs(seconds: i64) -> OffsetDateTime {
    truncate_to_millis(OffsetDateTime::now_utc() + Duration::seconds(seconds))
}

/// A time that has certainly passed for the store's clock too.
pub fn long_ago() -> OffsetDateTime {
    truncate_to_millis(OffsetDateTime::now_utc() - Duration::hours(1))
}

/// Writes a record and checks the store said `Created`.
pub async fn create(
    store: &dyn SessionStore,
    key: &SessionKey,
    expires_at: OffsetDateTime,
    data: &[u8],
) -> crate::CheckResult {
    ensure_eq!(
        store
            .create(key, expires_at, Bytes::copy_from_slice(data))
            .await?,
        CreateOutcome::Created,
        "create on a fresh key"
    );
    Ok(())
}

/// Writes a record that is already expired: some stores refuse to keep it at all, others keep it
/// invisible; both are fine.
pub async fn create_expired(
    store: &dyn SessionStore,
    key: &SessionKey,
    data: &[u8],
) -> crate::CheckResult {
    let outcome = store
        .create(key, long_ago(), Bytes::copy_from_slice(data))
        .await?;
    ensure_eq!(
        outcome,
        CreateOutcome::Created,
        "create of an already expired record on a fresh key"
    );
    Ok(())
}

/// The live record at `key`, or a failure saying `missing` when there is none.
pub async fn live(
    store: &dyn SessionStore,
    key: &SessionKey,
    missing: &str,
) -> Result<Record, crate::Failure> {
    store
        .read(key)
        .await?
        .ok_or_else(|| crate::Failure::new(missing))
}

/// The data every write must keep exactly, on create, update and rotation alike: empty, every
/// byte value, trailing NULs, trailing spaces, and 1 MiB of pseudo-random bytes.
pub fn data_set() -> Vec<Vec<u8>> {
    let every_byte: Vec<u8> = (0..=255u8).collect();
    let mut big = vec![0u8; 1024 * 1024];
    let mut x: u32 = 0x9e37_79b9;
    for byte in &mut big {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *byte = x as u8;
    }
    vec![
        Vec::new(),
        every_byte,
        b"trailing nuls\0\0\0".to_vec(),
        b"trailing spaces   ".to_vec(),
        b"\0".to_vec(),
        b" ".to_vec(),
        big,
    ]
}

/// A short description of `data` for failure messages.
pub fn describe(data: &[u8]) -> String {
    let head: String = data.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{} bytes ({head}…)", data.len())
}

/// Waits until the wall clock reaches `at`.
pub async fn sleep_until(at: OffsetDateTime) {
    let left = at - OffsetDateTime::now_utc();
    if left > Duration::ZERO {
        tokio::time::sleep(left.try_into().unwrap_or_default()).await;
    }
}

/// Checks that the live record at `key` has `version` and `data`.
pub async fn holds(
    store: &dyn SessionStore,
    key: &SessionKey,
    version: u64,
    data: &[u8],
    what: &str,
) -> crate::CheckResult {
    let record = live(store, key, &format!("{what}: missing")).await?;
    ensure_eq!(record.version, version, "{what}: version");
    ensure!(
        record.data == data,
        "{what}: data is {}",
        describe(&record.data)
    );
    Ok(())
}

/// `key` with byte `index` flipped: a key that differs from it in exactly one byte.
pub fn neighbour(key: &SessionKey, index: usize) -> SessionKey {
    let mut bytes = *key.as_bytes();
    bytes[index] ^= 0x01;
    SessionKey::from_bytes(&bytes).expect("32 bytes")
}

/// Waits for every worker; the first failure (or panic) wins.
pub async fn join_workers(
    handles: Vec<tokio::task::JoinHandle<crate::CheckResult>>,
) -> crate::CheckResult {
    let mut first = Ok(());
    for handle in handles {
        let result = handle
            .await
            .map_err(|e| crate::Failure::new(format!("a worker panicked: {e}")))
            .and_then(|r| r);
        if first.is_ok() {
            first = result;
        }
    }
    first
}

/// The owner `name` (a valid one: the helpers' names are).
pub fn owner(name: &str) -> session_core::Owner {
    session_core::Owner::new(name).expect("a valid owner")
}

/// `name`'s ownership with `label`.
pub fn owned(name: &str, label: &str) -> session_core::Ownership {
    session_core::Ownership::new(owner(name), label).expect("a valid label")
}

/// The keys `store` lists for the owner `name`, sorted.
pub async fn keys_of(
    store: &dyn SessionStore,
    name: &str,
) -> Result<std::collections::BTreeSet<SessionKey>, crate::Failure> {
    Ok(store
        .sessions_of(&owner(name))
        .await?
        .into_iter()
        .map(|s| s.key)
        .collect())
}
