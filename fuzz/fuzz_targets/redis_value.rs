//! Values under the Redis store's prefix that are not sessions (another program's keys, a
//! corrupt value, another type): the store's Rust decoder and its Lua scripts read them.
//! Needs Redis: SESSION_TEST_REDIS_URL, default redis://127.0.0.1:6379.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use redis::AsyncCommands;
use session_fuzz::{block_on, key, server_url};
use session_redis::{RedisConfig, RedisStore};

const PREFIX: &str = "fuzz-redis-value:";

#[derive(Arbitrary, Debug)]
enum Value {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    Set(Vec<Vec<u8>>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    value: Value,
    ttl_ms: Option<u16>,
    version: u64,
}

struct Fixture {
    store: RedisStore,
    raw: redis::aio::MultiplexedConnection,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    block_on(async {
        let url = server_url("REDIS", "redis://127.0.0.1:6379");
        let store = RedisStore::connect(RedisConfig::new(url.clone()).key_prefix(PREFIX))
            .await
            .expect("Redis (SESSION_TEST_REDIS_URL)");
        let raw = redis::Client::open(url)
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        Fixture { store, raw }
    })
});

fuzz_target!(|input: Input| {
    let fixture = &*FIXTURE;
    let corrupt = key(1);
    let name = format!("{PREFIX}{}", corrupt.to_hex());
    block_on(async {
        let mut raw = fixture.raw.clone();
        let _: () = raw.del(&name).await.expect("DEL");
        let _: () = match &input.value {
            Value::String(bytes) => raw.set(&name, bytes).await.expect("SET"),
            Value::List(items) if !items.is_empty() => {
                raw.rpush(&name, items).await.expect("RPUSH")
            }
            Value::Hash(pairs) if !pairs.is_empty() => {
                raw.hset_multiple(&name, pairs).await.expect("HSET")
            }
            Value::Set(items) if !items.is_empty() => raw.sadd(&name, items).await.expect("SADD"),
            _ => (),
        };
        if let Some(ttl) = input.ttl_ms {
            let _: () = raw
                .pexpire(&name, i64::from(ttl) + 1)
                .await
                .expect("PEXPIRE");
        }
        session_fuzz::exercise_admin(&fixture.store, &corrupt, input.version, 2).await;
    });
});
