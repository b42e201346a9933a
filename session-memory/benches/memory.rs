//! `MemoryStore` against the two designs it replaces: one `std::sync::Mutex<HashMap>` and one
//! `tokio::sync::Mutex<HashMap>` (tower-sessions' `MemoryStore`), same harness, same run.
//!
//! `cargo bench -p session-memory --bench memory`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use session_bench::{Op, compare, print_markdown};
use session_core::Bytes;
use session_core::time::OffsetDateTime;
use session_core::{
    CreateOutcome, Record, Result, SessionKey, SessionStore, UpdateOutcome, async_trait,
};
use session_memory::MemoryStore;

type Map = HashMap<SessionKey, Record>;

fn create(
    map: &mut Map,
    key: &SessionKey,
    expires_at: OffsetDateTime,
    data: Bytes,
) -> CreateOutcome {
    let now = OffsetDateTime::now_utc();
    if map.get(key).is_some_and(|r| r.expires_at > now) {
        return CreateOutcome::IdTaken;
    }
    map.insert(
        *key,
        Record {
            data,
            expires_at,
            version: 1,
        },
    );
    CreateOutcome::Created
}

fn read(map: &Map, key: &SessionKey) -> Option<Record> {
    let now = OffsetDateTime::now_utc();
    map.get(key).filter(|r| r.expires_at > now).cloned()
}

fn update(
    map: &mut Map,
    current: &SessionKey,
    previous: &SessionKey,
    expected: u64,
    expires_at: OffsetDateTime,
    data: Bytes,
) -> UpdateOutcome {
    let now = OffsetDateTime::now_utc();
    match map.get(previous) {
        Some(r) if r.expires_at > now && r.version == expected => {}
        Some(r) if r.expires_at > now => return UpdateOutcome::Conflict,
        _ => return UpdateOutcome::NotFound,
    }
    if current != previous && map.get(current).is_some_and(|r| r.expires_at > now) {
        return UpdateOutcome::IdTaken;
    }
    map.remove(previous);
    map.insert(
        *current,
        Record {
            data,
            expires_at,
            version: expected + 1,
        },
    );
    UpdateOutcome::Updated {
        version: expected + 1,
    }
}

fn touch(map: &mut Map, key: &SessionKey, expires_at: OffsetDateTime) -> bool {
    let now = OffsetDateTime::now_utc();
    match map.get_mut(key) {
        Some(r) if r.expires_at > now => {
            r.expires_at = expires_at;
            true
        }
        _ => false,
    }
}

/// Generates a baseline store over one mutex; `$lock` turns `self.0` into a guard.
macro_rules! baseline {
    ($name:ident, $mutex:ty, |$s:ident| $lock:expr) => {
        #[derive(Default)]
        struct $name($mutex);

        #[async_trait]
        impl SessionStore for $name {
            fn capabilities(&self) -> session_core::Capabilities {
                session_core::Capabilities::new()
            }
            async fn create_opts(
                &self,
                key: &SessionKey,
                expires_at: OffsetDateTime,
                data: Bytes,
                _options: &session_core::WriteOptions,
            ) -> Result<CreateOutcome> {
                let $s = self;
                Ok(create(&mut *$lock, key, expires_at, data))
            }
            async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
                let $s = self;
                Ok(read(&*$lock, key))
            }
            async fn update_opts(
                &self,
                current: &SessionKey,
                previous: &SessionKey,
                expected: u64,
                expires_at: OffsetDateTime,
                data: Bytes,
                _options: &session_core::WriteOptions,
            ) -> Result<UpdateOutcome> {
                let $s = self;
                Ok(update(
                    &mut *$lock,
                    current,
                    previous,
                    expected,
                    expires_at,
                    data,
                ))
            }
            async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
                let $s = self;
                Ok(touch(&mut *$lock, key, expires_at))
            }
            async fn delete(&self, key: &SessionKey) -> Result<()> {
                let $s = self;
                $lock.remove(key);
                Ok(())
            }
            async fn delete_expired(&self) -> Result<u64> {
                Ok(0)
            }
            async fn clear(&self) -> Result<()> {
                let $s = self;
                $lock.clear();
                Ok(())
            }
        }
    };
}

baseline!(StdMutexStore, std::sync::Mutex<Map>, |s| s
    .0
    .lock()
    .unwrap());
baseline!(TokioMutexStore, tokio::sync::Mutex<Map>, |s| s
    .0
    .lock()
    .await);

fn main() {
    let runtime = session_bench::runtime();
    let stores: Vec<(&str, Arc<dyn SessionStore>)> = vec![
        ("MemoryStore", Arc::new(MemoryStore::new())),
        ("std Mutex<HashMap>", Arc::new(StdMutexStore::default())),
        ("tokio Mutex<HashMap>", Arc::new(TokioMutexStore::default())),
    ];
    let rows = runtime
        .block_on(compare(
            &stores,
            "tokio Mutex<HashMap>",
            &[Op::Create, Op::Read, Op::Update, Op::Delete],
            &[1, 16, 64],
            &[200, 4096],
            session_bench::ops_from_env(64_000),
            Duration::from_secs(5),
        ))
        .expect("benchmark");
    print_markdown(&rows, "tokio mutex");
}
