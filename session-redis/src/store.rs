//! [`RedisStore`]: one key per session, `SET NX PXAT` creates, Lua scripts for updates.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use session_core::time::OffsetDateTime;
use session_core::{
    Bytes, CreateOutcome, Error, ErrorKind, Record, Result, SessionKey, SessionStore,
    UpdateOutcome, async_trait, from_unix_millis, redact_url, truncate_to_millis, unix_millis,
};

use crate::config::RedisConfig;
use crate::error::map_redis_error;

/// Bytes before the data in a stored value: version (u64) and expiry in ms (i64), big-endian.
const HEADER: usize = 16;
/// Keys unlinked per `UNLINK` by `clear`.
const CLEAR_BATCH: usize = 500;

/// Replaces the record at KEYS[2] by ARGV[2] at KEYS[1] if its version is ARGV[1] and (when
/// rotating) KEYS[1] is free. Returns 0 not found, 1 updated, 2 conflict, 3 id taken. Only the
/// 16-byte header of the old value enters Lua (`GETRANGE`), whatever the session's size.
const UPDATE_SCRIPT: &str = r#"
local head = redis.call('GETRANGE', KEYS[2], 0, 15)
if string.len(head) < 16 then
  if head == '' and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
  return redis.error_reply('CORRUPT stored session is shorter than its header')
end
if string.sub(head, 1, 8) ~= ARGV[1] then return 2 end
if KEYS[1] ~= KEYS[2] then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 3 end
  redis.call('UNLINK', KEYS[2])
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
"#;

/// Moves the expiry of KEYS[1] (in the value, ARGV[1], and the key's deadline, ARGV[2]) if it
/// exists. Returns 1 when touched, 0 when absent.
const TOUCH_SCRIPT: &str = r#"
local len = redis.call('STRLEN', KEYS[1])
if len == 0 then return 0 end
if len < 16 then return redis.error_reply('CORRUPT stored session is shorter than its header') end
redis.call('SETRANGE', KEYS[1], 8, ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
"#;

/// A [`SessionStore`] in Redis (single node).
///
/// Each session is one key, `prefix + hex(SessionKey)`, whose value is the version, the expiry
/// and the data in a compact binary form, and whose Redis deadline (`PXAT`) is one millisecond
/// before the expiry: Redis keeps a key while `now <= deadline`, so the key disappears exactly
/// when `expires_at <= now` holds, by Redis's clock. Expired keys are removed by Redis itself;
/// `delete_expired` returns 0.
#[derive(Clone)]
pub struct RedisStore {
    /// The multiplexed connections, used round robin.
    connections: Arc<[ConnectionManager]>,
    next: Arc<AtomicUsize>,
    config: RedisConfig,
    update: Script,
    touch: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn rd(doing: &'static str) -> impl Fn(redis::RedisError) -> Error {
    move |error| map_redis_error(doing, error)
}

/// The Redis deadline for a record expiring at `expires_at` (see the type's docs); at least 1,
/// since Redis refuses deadlines at or before the epoch.
fn deadline(expires_at: OffsetDateTime) -> i64 {
    (unix_millis(expires_at) - 1).max(1)
}

fn encode(version: u64, expires_at: OffsetDateTime, data: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(HEADER + data.len());
    value.extend_from_slice(&version.to_be_bytes());
    value.extend_from_slice(&unix_millis(expires_at).to_be_bytes());
    value.extend_from_slice(data);
    value
}

fn decode(value: Vec<u8>) -> Result<Record> {
    if value.len() < HEADER {
        return Err(Error::new(
            ErrorKind::Decode,
            "redis: a value under the store's prefix is not a session",
        ));
    }
    let version = u64::from_be_bytes(value[..8].try_into().expect("8 bytes"));
    let millis = i64::from_be_bytes(value[8..HEADER].try_into().expect("8 bytes"));
    let expires_at = from_unix_millis(millis)
        .ok_or_else(|| Error::new(ErrorKind::Decode, "redis: a stored expiry is out of range"))?;
    let mut data = Bytes::from(value);
    Ok(Record {
        data: data.split_off(HEADER),
        expires_at,
        version,
    })
}

impl RedisStore {
    /// Connects with `config`. A bad prefix is a `Config` error before anything is sent; a bad
    /// URL is `Config`; an unreachable server a transient `Backend` error within the connection
    /// timeout; a wrong password `Config`; a Redis Cluster is refused (`Unsupported`).
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        // Settings left in the URL's query (`?key_prefix=…`) are taken off it.
        let config = config.parse(&[])?;
        let client = redis::Client::open(config.url.as_str()).map_err(|e| {
            Error::with_source(
                ErrorKind::Config,
                format!("redis: invalid URL {}", redact_url(&config.url)),
                e,
            )
        })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connection_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(2);
        let mut connection =
            ConnectionManager::new_with_config(client.clone(), manager_config.clone())
                .await
                .map_err(rd("connecting"))?;
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut connection)
            .await
            .map_err(rd("reading INFO"))?;
        if info.lines().any(|line| line.trim() == "cluster_enabled:1") {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "redis: Redis Cluster is not supported yet: the two keys of an id rotation live in different hash slots, so the rotation could not be one atomic script",
            ));
        }
        let mut connections = vec![connection];
        for _ in 1..config.connections.max(1) {
            connections.push(
                ConnectionManager::new_with_config(client.clone(), manager_config.clone())
                    .await
                    .map_err(rd("connecting"))?,
            );
        }
        let connections: Arc<[ConnectionManager]> = connections.into();
        Ok(Self {
            connections,
            next: Arc::new(AtomicUsize::new(0)),
            config,
            update: Script::new(UPDATE_SCRIPT),
            touch: Script::new(TOUCH_SCRIPT),
        })
    }

    /// The next connection, round robin.
    fn connection(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[i].clone()
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    fn key(&self, key: &SessionKey) -> String {
        let mut name = String::with_capacity(self.config.key_prefix.len() + 64);
        name.push_str(&self.config.key_prefix);
        name.push_str(&key.to_hex());
        name
    }

    /// The `SCAN MATCH` pattern of exactly the keys this store writes: the prefix and 64
    /// lowercase hex digits (prefixes hold no glob characters: validated).
    fn pattern(&self) -> String {
        format!("{}{}", self.config.key_prefix, "[0-9a-f]".repeat(64))
    }

    /// Whether `name` is a key this store writes (the pattern's check, again on the client).
    fn is_ours(&self, name: &str) -> bool {
        name.strip_prefix(self.config.key_prefix.as_str())
            .is_some_and(|hex| {
                hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
    }

    /// Number of live sessions of this namespace (a `SCAN`; expired keys are gone already).
    pub async fn count(&self) -> Result<u64> {
        let mut connection = self.connection();
        let mut iter: redis::AsyncIter<'_, String> = connection
            .scan_options(
                redis::ScanOptions::default()
                    .with_pattern(self.pattern())
                    .with_count(1000),
            )
            .await
            .map_err(rd("scanning keys"))?;
        let mut count = 0;
        while let Some(item) = iter.next_item().await {
            count += u64::from(self.is_ours(&item.map_err(rd("scanning keys"))?));
        }
        Ok(count)
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
    ) -> Result<CreateOutcome> {
        let expires_at = truncate_to_millis(expires_at);
        let reply: Option<String> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(encode(1, expires_at, &data))
            .arg("NX")
            .arg("PXAT")
            .arg(deadline(expires_at))
            .query_async(&mut self.connection())
            .await
            .map_err(rd("creating a session"))?;
        match reply.as_deref() {
            Some("OK") => Ok(CreateOutcome::Created),
            None => Ok(CreateOutcome::IdTaken),
            Some(_) => Err(Error::new(
                ErrorKind::Backend,
                "redis: unexpected reply to SET NX",
            )),
        }
    }

    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        let value: Option<Vec<u8>> = self
            .connection()
            .get(self.key(key))
            .await
            .map_err(rd("reading a session"))?;
        value.map(decode).transpose()
    }

    async fn update(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
    ) -> Result<UpdateOutcome> {
        let expires_at = truncate_to_millis(expires_at);
        let version = expected_version
            .checked_add(1)
            .ok_or_else(|| Error::new(ErrorKind::Backend, "redis: version overflow"))?;
        let outcome: i64 = self
            .update
            .key(self.key(current))
            .key(self.key(previous))
            .arg(&expected_version.to_be_bytes()[..])
            .arg(encode(version, expires_at, &data))
            .arg(deadline(expires_at))
            .invoke_async(&mut self.connection())
            .await
            .map_err(rd("updating a session"))?;
        match outcome {
            0 => Ok(UpdateOutcome::NotFound),
            1 => Ok(UpdateOutcome::Updated { version }),
            2 => Ok(UpdateOutcome::Conflict),
            3 => Ok(UpdateOutcome::IdTaken),
            _ => Err(Error::new(
                ErrorKind::Backend,
                "redis: unexpected reply from the update script",
            )),
        }
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        let expires_at = truncate_to_millis(expires_at);
        let touched: i64 = self
            .touch
            .key(self.key(key))
            .arg(&unix_millis(expires_at).to_be_bytes()[..])
            .arg(deadline(expires_at))
            .invoke_async(&mut self.connection())
            .await
            .map_err(rd("touching a session"))?;
        Ok(touched == 1)
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        let _: i64 = self
            .connection()
            .unlink(self.key(key))
            .await
            .map_err(rd("deleting a session"))?;
        Ok(())
    }

    /// Redis removes expired keys by itself (lazily and in the background); nothing to purge.
    async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }

    /// `SCAN MATCH <prefix + 64 lowercase hex digits>` and batched `UNLINK`: exactly the keys
    /// this store writes, never `FLUSHDB`, never a foreign key under the same prefix.
    async fn clear(&self) -> Result<()> {
        let mut scanner = self.connection();
        let mut keys: Vec<String> = Vec::new();
        {
            let mut iter: redis::AsyncIter<'_, String> = scanner
                .scan_options(
                    redis::ScanOptions::default()
                        .with_pattern(self.pattern())
                        .with_count(1000),
                )
                .await
                .map_err(rd("scanning keys"))?;
            while let Some(item) = iter.next_item().await {
                let name = item.map_err(rd("scanning keys"))?;
                if self.is_ours(&name) {
                    keys.push(name);
                }
            }
        }
        for batch in keys.chunks(CLEAR_BATCH) {
            let _: i64 = self
                .connection()
                .unlink(batch)
                .await
                .map_err(rd("clearing sessions"))?;
        }
        Ok(())
    }
}

#[async_trait]
impl session_core::StoreAdmin for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    /// Redis expires keys by itself, and keeps no expired ones to count.
    fn capabilities(&self) -> session_core::Capabilities {
        session_core::Capabilities::new()
            .expires_by_itself(true)
            .counts_expired(false)
    }

    async fn counts(&self) -> Result<session_core::Counts> {
        Ok(session_core::Counts {
            live: self.count().await?,
            expired: None,
        })
    }

    /// Deletes the namespace's keys (exactly those `clear` deletes).
    async fn drop_namespace(&self) -> Result<()> {
        self.clear().await
    }
}
