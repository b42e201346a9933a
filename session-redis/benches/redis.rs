//! `RedisStore` against the raw redis-crate floor on the same kind of connection (a
//! `ConnectionManager`, or a cluster connection): `SET NX PXAT`, `GET`, `EVALSHA` of a script
//! doing the same checks, `PEXPIREAT`, `UNLINK`. Same harness, same run, 200 B and 4 KiB. With
//! `SESSION_TEST_REDIS_CLUSTER_URL` set, the cluster store against the raw cluster client too.
//!
//! `SESSION_TEST_REDIS_URL=redis://127.0.0.1:6379 cargo bench -p session-redis --bench redis`

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use session_bench::{Op, compare, print_markdown};
use session_core::time::OffsetDateTime;
use session_core::{
    Bytes, CreateOutcome, Record, Result, SessionId, SessionKey, SessionStore, UpdateOutcome,
    async_trait, unix_millis,
};

/// The store's own update script (reads only the 16-byte header of the old value).
const SCRIPT: &str = r#"
local head = redis.call('GETRANGE', KEYS[2], 0, 15)
if string.len(head) < 16 then
  if head == '' and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
  return redis.error_reply('CORRUPT')
end
if string.sub(head, 1, 8) ~= ARGV[1] then return 2 end
if KEYS[1] ~= KEYS[2] then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 3 end
  redis.call('UNLINK', KEYS[2])
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
"#;

struct RawRedis<C> {
    connection: C,
    prefix: String,
    script: redis::Script,
    /// Cluster key names: `prefix{tt}hex`, so a rotation stays in one slot.
    cluster: bool,
}

fn fail(e: redis::RedisError) -> session_core::Error {
    session_core::Error::backend("raw redis", e, false)
}

impl<C> RawRedis<C> {
    fn key(&self, key: &SessionKey) -> String {
        let hex = key.to_hex();
        if self.cluster {
            format!("{}{{{}}}{hex}", self.prefix, &hex[..2])
        } else {
            format!("{}{hex}", self.prefix)
        }
    }
}

#[async_trait]
impl<C> SessionStore for RawRedis<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn create_opts(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
        _options: &session_core::WriteOptions,
    ) -> Result<CreateOutcome> {
        let mut value = 1u64.to_be_bytes().to_vec();
        value.extend_from_slice(&data);
        let reply: Option<String> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PXAT")
            .arg(unix_millis(expires_at))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(fail)?;
        Ok(if reply.is_some() {
            CreateOutcome::Created
        } else {
            CreateOutcome::IdTaken
        })
    }
    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(fail)?;
        Ok(value.map(|v| Record {
            data: Bytes::from(v),
            expires_at: OffsetDateTime::now_utc(),
            version: 1,
        }))
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
        let mut value = (expected + 1).to_be_bytes().to_vec();
        value.extend_from_slice(&data);
        let outcome: i64 = self
            .script
            .key(self.key(current))
            .key(self.key(previous))
            .arg(&expected.to_be_bytes()[..])
            .arg(value)
            .arg(unix_millis(expires_at))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(fail)?;
        Ok(if outcome == 1 {
            UpdateOutcome::Updated {
                version: expected + 1,
            }
        } else {
            UpdateOutcome::Conflict
        })
    }
    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        let n: i64 = redis::cmd("PEXPIREAT")
            .arg(self.key(key))
            .arg(unix_millis(expires_at))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(fail)?;
        Ok(n == 1)
    }
    async fn delete(&self, key: &SessionKey) -> Result<()> {
        let _: i64 = redis::cmd("UNLINK")
            .arg(self.key(key))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(fail)?;
        Ok(())
    }
    async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }
    async fn clear(&self) -> Result<()> {
        Ok(())
    }
    fn capabilities(&self) -> session_core::Capabilities {
        let rotation = if self.cluster {
            session_core::Rotation::WithinPartition { bits: 8 }
        } else {
            session_core::Rotation::Anywhere
        };
        session_core::Capabilities::new().rotation(rotation)
    }
}

fn main() {
    let Ok(url) = std::env::var("SESSION_TEST_REDIS_URL") else {
        eprintln!("set SESSION_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379)");
        std::process::exit(2);
    };
    let ops: usize = session_bench::ops_from_env(20_000);
    let runtime = session_bench::runtime();
    let run = SessionId::generate().key().to_hex()[..8].to_owned();
    let rows = runtime.block_on(async {
        let client = redis::Client::open(url.as_str()).unwrap();
        let raw = RawRedis {
            connection: ConnectionManager::new(client).await.unwrap(),
            prefix: format!("bench:{run}:raw:"),
            script: redis::Script::new(SCRIPT),
            cluster: false,
        };
        side_by_side(&url, "RedisStore", raw, "raw redis", ops).await
    });
    print_markdown(&rows, "raw redis");
    let Ok(cluster_url) = std::env::var("SESSION_TEST_REDIS_CLUSTER_URL") else {
        eprintln!("(set SESSION_TEST_REDIS_CLUSTER_URL to compare the cluster store as well)");
        return;
    };
    let rows = runtime.block_on(async {
        let seeds: Vec<String> =
            <session_redis::RedisConfig as session_core::BackendConfig>::from_url(&cluster_url)
                .map(|c| {
                    std::iter::once(c.url.clone())
                        .chain(c.seeds.iter().map(|s| format!("redis://{s}")))
                        .collect()
                })
                .unwrap();
        let client = redis::cluster::ClusterClient::new(seeds).unwrap();
        let raw = RawRedis {
            connection: client.get_async_connection().await.unwrap(),
            prefix: format!("bench:{run}:rawcluster:"),
            script: redis::Script::new(SCRIPT),
            cluster: true,
        };
        side_by_side(
            &cluster_url,
            "RedisStore (cluster)",
            raw,
            "raw cluster",
            ops,
        )
        .await
    });
    print_markdown(&rows, "raw cluster");
}

/// The store at `url` (a fresh namespace of the backend's own test factory, removed
/// afterwards) against `raw`, every op, 1/16/64 tasks, 200 B and 4 KiB.
async fn side_by_side<C>(
    url: &str,
    name: &'static str,
    raw: RawRedis<C>,
    raw_name: &'static str,
    ops: usize,
) -> Vec<session_bench::Row>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let factory = session_redis::testing::factory(url).unwrap();
    let store = factory.open_fresh().await.unwrap();
    let stores: Vec<(&str, Arc<dyn SessionStore>)> =
        vec![(name, Arc::new(store)), (raw_name, Arc::new(raw))];
    let rows = compare(
        &stores,
        raw_name,
        &Op::ALL,
        &[1, 16, 64],
        &[200, 4096],
        ops,
        Duration::from_secs(10),
    )
    .await
    .expect("benchmark");
    factory.remove_namespaces().await.unwrap();
    rows
}
