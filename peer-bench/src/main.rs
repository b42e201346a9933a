#![doc = include_str!("../README.md")]

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Map, Value};
use session_manager::{SessionId, SessionManager, SessionState, SessionStore};
use time::OffsetDateTime;

type Handle = Box<dyn Any + Send + Sync>;

/// A session store as an application uses it.
#[async_trait]
trait Subject: Send + Sync {
    async fn create(&self, data: &Map<String, Value>) -> Handle;
    async fn load(&self, handle: &Handle) -> Map<String, Value>;
    async fn save(&self, handle: &mut Handle, data: &Map<String, Value>);
    async fn delete(&self, handle: &Handle);
}

/// Ours: the manager over one of our stores.
struct Ours(SessionManager<Arc<dyn SessionStore>>);

#[async_trait]
impl Subject for Ours {
    async fn create(&self, data: &Map<String, Value>) -> Handle {
        let bytes = serde_json::to_vec(data).expect("json");
        Box::new(self.0.create(bytes).await.expect("create"))
    }

    async fn load(&self, handle: &Handle) -> Map<String, Value> {
        let state = handle.downcast_ref::<SessionState>().expect("ours");
        let loaded = self.0.load(state.id()).await.expect("load").expect("live");
        serde_json::from_slice(loaded.data()).expect("json")
    }

    async fn save(&self, handle: &mut Handle, data: &Map<String, Value>) {
        let state = handle.downcast_mut::<SessionState>().expect("ours");
        state.set_data(serde_json::to_vec(data).expect("json"));
        self.0.save(state).await.expect("save");
    }

    async fn delete(&self, handle: &Handle) {
        let state = handle.downcast_ref::<SessionState>().expect("ours");
        self.0.destroy(state.id()).await.expect("delete");
    }
}

fn expiry() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::hours(1)
}

fn to_hash(data: &Map<String, Value>) -> HashMap<String, Value> {
    data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Implements [`Subject`] for `$peer<S>` over the `SessionStore` trait and `Record`/`Id` types of
/// one tower-sessions-core version (`$core`): the stores users pick implement 0.14 or 0.15.
macro_rules! peer {
    ($(#[$doc:meta])* $peer:ident, $core:ident) => {
        $(#[$doc])*
        struct $peer<S>(S);

        #[async_trait]
        impl<S> Subject for $peer<S>
        where
            S: $core::SessionStore,
        {
            async fn create(&self, data: &Map<String, Value>) -> Handle {
                use $core::session::{Id, Record};
                let mut record = Record {
                    id: Id::default(),
                    data: to_hash(data),
                    expiry_date: expiry(),
                };
                self.0.create(&mut record).await.expect("create");
                Box::new(record)
            }

            async fn load(&self, handle: &Handle) -> Map<String, Value> {
                let record = handle
                    .downcast_ref::<$core::session::Record>()
                    .expect("peer");
                let loaded = self.0.load(&record.id).await.expect("load").expect("live");
                loaded.data.into_iter().collect()
            }

            async fn save(&self, handle: &mut Handle, data: &Map<String, Value>) {
                let record = handle
                    .downcast_mut::<$core::session::Record>()
                    .expect("peer");
                record.data = to_hash(data);
                record.expiry_date = expiry();
                self.0.save(record).await.expect("save");
            }

            async fn delete(&self, handle: &Handle) {
                let record = handle
                    .downcast_ref::<$core::session::Record>()
                    .expect("peer");
                self.0.delete(&record.id).await.expect("delete");
            }
        }
    };
}

peer!(
    /// A peer on tower-sessions-core 0.15 (tower-sessions' own stores).
    Peer15,
    tower_sessions
);
peer!(
    /// A peer on tower-sessions-core 0.14 (the sqlx and Redis stores).
    Peer14,
    tsc14
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Load,
    Save,
    Delete,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Load => "load",
            Op::Save => "save",
            Op::Delete => "delete",
        }
    }
}

/// Session data of about `bytes` bytes as JSON: a user id, a flag and a filler string.
fn data(bytes: usize) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("user_id".into(), Value::from(4242));
    map.insert("admin".into(), Value::from(false));
    map.insert(
        "blob".into(),
        Value::from("x".repeat(bytes.saturating_sub(40))),
    );
    map
}

/// One measurement: `tasks` tasks each doing `per_task` operations `op` (the sessions they need
/// made beforehand, untimed), stopping early after `limit`. Returns ops/s.
async fn measure(
    subject: Arc<dyn Subject>,
    op: Op,
    tasks: usize,
    per_task: usize,
    bytes: usize,
    limit: Duration,
) -> f64 {
    let data = Arc::new(data(bytes));
    let barrier = Arc::new(tokio::sync::Barrier::new(tasks + 1));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (subject, data, barrier) = (
            Arc::clone(&subject),
            Arc::clone(&data),
            Arc::clone(&barrier),
        );
        handles.push(tokio::spawn(async move {
            let mut sessions = Vec::new();
            if op != Op::Create {
                for _ in 0..per_task {
                    sessions.push(subject.create(&data).await);
                }
            }
            barrier.wait().await;
            let started = Instant::now();
            let mut done = 0u64;
            for i in 0..per_task {
                if started.elapsed() > limit {
                    break;
                }
                match op {
                    Op::Create => sessions.push(subject.create(&data).await),
                    Op::Load => {
                        std::hint::black_box(subject.load(&sessions[i]).await);
                    }
                    Op::Save => subject.save(&mut sessions[i], &data).await,
                    Op::Delete => subject.delete(&sessions[i]).await,
                }
                done += 1;
            }
            let took = started.elapsed();
            // Every task stops its clock before any cleans up: the untimed deletes below must
            // not run beside another task's timed operations.
            barrier.wait().await;
            if op != Op::Delete {
                for session in &sessions {
                    subject.delete(session).await;
                }
            }
            (done, took)
        }));
    }
    // Start together, then wait for every clock to stop.
    barrier.wait().await;
    barrier.wait().await;
    let (mut done, mut longest) = (0, Duration::ZERO);
    for handle in handles {
        let (n, took) = handle.await.expect("a task panicked");
        done += n;
        longest = longest.max(took);
    }
    done as f64 / longest.as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

struct Settings {
    backends: Vec<String>,
    repeats: usize,
    ops: usize,
    limit: Duration,
    tasks: Vec<usize>,
    payloads: Vec<usize>,
    redis_connections: usize,
    /// Sessions written straight into both SQLite tables before measuring (`--prefill N`).
    prefill: usize,
    /// Query of our SQLite store's URL (`--sqlite-options "cache_size_kib=65536"`).
    sqlite_options: String,
    /// Measure only our store (`--ours-only`): for quick comparisons of our own settings.
    ours_only: bool,
    /// The operations measured (`--op create,save`; default all four).
    ops_measured: Vec<Op>,
    /// SQLite only (`--scale-base N`): the second column is our own store holding `N` prefilled
    /// sessions instead of the peer, so the ratio reads "at `--prefill` / at `N`", both sizes
    /// measured in the same run, interleaved.
    scale_base: Option<usize>,
}

fn settings() -> Settings {
    let mut settings = Settings {
        backends: vec![
            "memory".into(),
            "sqlite".into(),
            "postgres".into(),
            "redis".into(),
            "mysql".into(),
        ],
        repeats: 3,
        ops: 20_000,
        limit: Duration::from_millis(1_500),
        tasks: vec![1, 16, 64],
        payloads: vec![200, 4096],
        redis_connections: session_redis::RedisConfig::default().connections,
        prefill: 0,
        sqlite_options: String::new(),
        ours_only: false,
        ops_measured: vec![Op::Create, Op::Load, Op::Save, Op::Delete],
        scale_base: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--backend" => settings.backends = value.split(',').map(str::to_owned).collect(),
            "--repeats" => settings.repeats = value.parse().expect("--repeats N"),
            "--ops" => settings.ops = value.parse().expect("--ops N"),
            "--seconds" => {
                settings.limit = Duration::from_secs_f64(value.parse().expect("--seconds S"));
            }
            "--tasks" => {
                settings.tasks = value
                    .split(',')
                    .map(|t| t.parse().expect("--tasks"))
                    .collect();
            }
            "--prefill" => settings.prefill = value.parse().expect("--prefill N"),
            "--scale-base" => {
                settings.scale_base = Some(value.parse().expect("--scale-base N"));
            }
            "--sqlite-options" => settings.sqlite_options = value,
            "--op" => {
                settings.ops_measured = value
                    .split(',')
                    .map(|name| {
                        [Op::Create, Op::Load, Op::Save, Op::Delete]
                            .into_iter()
                            .find(|op| op.name() == name)
                            .expect("--op create,load,save,delete")
                    })
                    .collect();
            }
            "--ours-only" => {
                settings.ours_only = true;
                i += 1;
                continue;
            }
            "--redis-connections" => {
                settings.redis_connections = value.parse().expect("--redis-connections N");
            }
            "--payload" => {
                settings.payloads = value
                    .split(',')
                    .map(|t| t.parse().expect("--payload"))
                    .collect();
            }
            other => panic!("unknown argument {other}; see the crate docs"),
        }
        i += 2;
    }
    settings
}

/// Ours and the peer for `backend`, or why not.
async fn subjects(
    backend: &str,
    dir: &std::path::Path,
    settings: &Settings,
) -> Result<(Arc<dyn Subject>, Arc<dyn Subject>), String> {
    let suffix = &SessionId::generate().key().to_hex()[..12];
    match backend {
        "memory" => Ok((
            Arc::new(Ours(SessionManager::new(Arc::new(
                session_memory::MemoryStore::new(),
            )))),
            Arc::new(Peer15(tower_sessions::MemoryStore::default())),
        )),
        "sqlite" => {
            let ours = our_sqlite(&dir.join("ours.sqlite"), settings.prefill, settings).await?;
            if let Some(base) = settings.scale_base {
                // The second column: our own store at `base` sessions, same options.
                let base = our_sqlite(&dir.join("base.sqlite"), base, settings).await?;
                return Ok((ours, base));
            }
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.join("peer.sqlite"))
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
            let pool = sqlx::SqlitePool::connect_with(options)
                .await
                .map_err(|e| e.to_string())?;
            let peer = tower_sessions_sqlx_store::SqliteStore::new(pool);
            peer.migrate().await.map_err(|e| e.to_string())?;
            if settings.prefill > 0 && !settings.ours_only {
                prefill_sqlite(&dir.join("peer.sqlite"), settings.prefill, true)?;
            }
            Ok((ours, Arc::new(Peer14(peer))))
        }
        "postgres" => {
            let url = std::env::var("SESSION_TEST_POSTGRES_URL")
                .map_err(|_| "SESSION_TEST_POSTGRES_URL is not set".to_owned())?;
            let ours = session_postgres::PostgresStore::connect(
                session_postgres::PostgresConfig::new(&url).table(format!("bench_{suffix}")),
            )
            .await
            .map_err(|e| e.to_string())?;
            let pool = sqlx::PgPool::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            let peer = tower_sessions_sqlx_store::PostgresStore::new(pool)
                .with_table_name(format!("peer_{suffix}"))?;
            peer.migrate().await.map_err(|e| e.to_string())?;
            Ok((
                Arc::new(Ours(SessionManager::new(Arc::new(ours)))),
                Arc::new(Peer14(peer)),
            ))
        }
        "redis" => {
            use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};
            let url = std::env::var("SESSION_TEST_REDIS_URL")
                .map_err(|_| "SESSION_TEST_REDIS_URL is not set".to_owned())?;
            let ours = session_redis::RedisStore::connect(
                session_redis::RedisConfig::new(&url)
                    .key_prefix(format!("bench_{suffix}:"))
                    .connections(settings.redis_connections),
            )
            .await
            .map_err(|e| e.to_string())?;
            let config = Config::from_url(&url).map_err(|e| e.to_string())?;
            let pool = Pool::new(config, None, None, None, 6).map_err(|e| e.to_string())?;
            // The connection task runs on; its handle is not needed.
            drop(pool.connect());
            pool.wait_for_connect().await.map_err(|e| e.to_string())?;
            Ok((
                Arc::new(Ours(SessionManager::new(Arc::new(ours)))),
                Arc::new(Peer14(tower_sessions_redis_store::RedisStore::new(pool))),
            ))
        }
        "mysql" => {
            let url = std::env::var("SESSION_TEST_MYSQL_URL")
                .map_err(|_| "SESSION_TEST_MYSQL_URL is not set".to_owned())?;
            let ours = session_mysql::MysqlStore::connect(
                session_mysql::MysqlConfig::new(&url).table(format!("bench_{suffix}")),
            )
            .await
            .map_err(|e| e.to_string())?;
            let pool = sqlx::MySqlPool::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            let peer = tower_sessions_sqlx_store::MySqlStore::new(pool)
                .with_table_name(format!("peer_{suffix}"))?;
            peer.migrate().await.map_err(|e| e.to_string())?;
            Ok((
                Arc::new(Ours(SessionManager::new(Arc::new(ours)))),
                Arc::new(Peer14(peer)),
            ))
        }
        other => Err(format!("unknown backend {other}")),
    }
}

/// Writes `n` live sessions of 200 B straight into our table and the peer's (one transaction
/// each, random keys), so that the measured operations run against a large table.
/// Writes `n` unexpiring sessions of 200 bytes straight into our table in `file` (one
/// transaction, then a truncating checkpoint), or into the peer's table with `peer`.
fn prefill_sqlite(file: &std::path::Path, n: usize, peer: bool) -> Result<(), String> {
    use session_sqlite::rusqlite::{Connection, params};
    let started = std::time::Instant::now();
    let now_ms = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let data = vec![b'x'; 200];
    let connection = Connection::open(file).map_err(|e| e.to_string())?;
    connection
        .execute_batch("BEGIN")
        .map_err(|e| e.to_string())?;
    {
        let sql = if peer {
            "INSERT INTO tower_sessions (id, data, expiry_date) VALUES (?1, ?2, ?3)"
        } else {
            "INSERT INTO sessions (key, expires_at, version, data) VALUES (?1, ?2, 1, ?3)"
        };
        let mut insert = connection.prepare(sql).map_err(|e| e.to_string())?;
        for _ in 0..n {
            let inserted = if peer {
                let id = SessionId::generate().expose();
                insert.execute(params![&id[..22], &data, now_ms / 1000 + 3_600])
            } else {
                let key = SessionId::generate().key();
                insert.execute(params![&key.as_bytes()[..], now_ms + 3_600_000, &data])
            };
            inserted.map_err(|e| e.to_string())?;
        }
    }
    connection
        .execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE)")
        .map_err(|e| e.to_string())?;
    eprintln!(
        "peer-bench: prefilled {n} sessions into {} in {:.1?}",
        file.display(),
        started.elapsed()
    );
    Ok(())
}

/// Our SQLite store over `file` with the bench's options, `prefill` sessions written first.
async fn our_sqlite(
    file: &std::path::Path,
    prefill: usize,
    settings: &Settings,
) -> Result<Arc<dyn Subject>, String> {
    use session_manager::BackendConfig as _;
    let url = format!("sqlite://{}?{}", file.display(), settings.sqlite_options);
    let config = session_sqlite::SqliteConfig::from_url(&url).map_err(|e| e.to_string())?;
    let ours = session_sqlite::SqliteStore::with_config(config)
        .await
        .map_err(|e| e.to_string())?;
    if prefill > 0 {
        prefill_sqlite(file, prefill, false)?;
    }
    Ok(Arc::new(Ours(SessionManager::new(Arc::new(ours)))))
}

#[tokio::main]
async fn main() {
    let settings = settings();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (a, b, ratio) = match settings.scale_base {
        Some(base) => (
            format!("ours at {} ops/s", settings.prefill),
            format!("ours at {base} ops/s"),
            "ratio",
        ),
        None => (
            "ours ops/s".to_owned(),
            "peer ops/s".to_owned(),
            "ours/peer",
        ),
    };
    println!(
        "| backend | op | tasks | payload | {a} | {b} | {ratio} |\n|---|---|---:|---:|---:|---:|---:|"
    );
    for backend in &settings.backends {
        let (ours, peer) = match subjects(backend, dir.path(), &settings).await {
            Ok(pair) => pair,
            Err(why) => {
                eprintln!("peer-bench: skipping {backend}: {why}");
                continue;
            }
        };
        for &op in &settings.ops_measured {
            for &bytes in &settings.payloads {
                for &tasks in &settings.tasks {
                    let per_task = settings.ops.div_ceil(tasks);
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    for repeat in 0..settings.repeats {
                        // Alternate which runs first.
                        let order: [(&Arc<dyn Subject>, bool); 2] = if repeat % 2 == 0 {
                            [(&ours, true), (&peer, false)]
                        } else {
                            [(&peer, false), (&ours, true)]
                        };
                        for (subject, is_ours) in order {
                            if settings.ours_only && !is_ours {
                                continue;
                            }
                            let rate = measure(
                                Arc::clone(subject),
                                op,
                                tasks,
                                per_task,
                                bytes,
                                settings.limit,
                            )
                            .await;
                            if is_ours { a.push(rate) } else { b.push(rate) }
                        }
                    }
                    let ours_rate = median(&mut a);
                    let peer_rate = if b.is_empty() {
                        f64::NAN
                    } else {
                        median(&mut b)
                    };
                    println!(
                        "| {backend} | {} | {tasks} | {bytes} | {ours_rate:.0} | {peer_rate:.0} | {:.2}× |",
                        op.name(),
                        ours_rate / peer_rate
                    );
                }
            }
        }
    }
}
