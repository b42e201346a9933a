//! A soak run of `SqliteStore` at full throughput: creates, reads, updates, rotations, touches
//! and deletes from many tasks, a purge every 10 s, and every 10 s a line with the WAL size,
//! database size, RSS (anonymous and file-backed), queue depths and p50/p99 per operation over the last 10 s.
//!
//! ```sh
//! cargo bench -p session-sqlite --bench soak                 # 5 minutes, 16 tasks, 200 B
//! SOAK_SECONDS=60 SOAK_TASKS=64 SOAK_PAYLOAD=4096 cargo bench -p session-sqlite --bench soak
//! SOAK_OPTIONS="mmap_size=1073741824" cargo bench -p session-sqlite --bench soak  # URL query
//! ```

use session_core::SessionStoreExt as _;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use session_core::BackendConfig as _;
use session_core::Bytes;
use session_core::time::{Duration as TimeDuration, OffsetDateTime};
use session_core::{CreateOutcome, SessionId, SessionKey, SessionStore, UpdateOutcome};
use session_sqlite::{SqliteConfig, SqliteStore};

const OPS: [&str; 7] = [
    "create", "read", "update", "rotate", "touch", "delete", "purge",
];
const EVERY: Duration = Duration::from_secs(10);
/// Live sessions each task keeps at most.
const PER_TASK: usize = 4_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

type Latencies = Arc<Mutex<HashMap<&'static str, Histogram<u64>>>>;

fn record(latencies: &Latencies, op: &'static str, took: Duration) {
    let mut map = latencies.lock();
    let histogram = map
        .entry(op)
        .or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds"));
    let _ = histogram.record(took.as_nanos().max(1) as u64);
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// A `/proc/self/status` field in bytes: `RssAnon` is the process's own memory (what a leak
/// grows); `RssFile` includes the pages of the memory-mapped database, which come and go with
/// the OS page cache.
fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn ms(nanos: u64) -> String {
    format!("{:.2}", nanos as f64 / 1e6)
}

fn later(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + TimeDuration::seconds(seconds)
}

/// One worker: a mix of operations on its own sessions until `stop`.
async fn worker(
    store: Arc<SqliteStore>,
    latencies: Latencies,
    stop: Arc<AtomicBool>,
    payload: Arc<Vec<u8>>,
    seed: u64,
) {
    let mut sessions: Vec<(SessionKey, u64)> = Vec::new();
    let mut x = seed | 1;
    while !stop.load(Ordering::Relaxed) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let pick = x % 100;
        let started = Instant::now();
        // A steady population: past `PER_TASK` sessions a create becomes a delete, so the
        // database, the bench's own bookkeeping and the store's memory can level off.
        let pick = if pick < 10 && sessions.len() >= PER_TASK {
            95
        } else {
            pick
        };
        let op = if sessions.len() < 50 || pick < 10 {
            let key = SessionId::generate().key();
            // One in five sessions is short-lived, so each purge has work.
            let ttl = if pick.is_multiple_of(5) { 5 } else { 3_600 };
            if store
                .create(&key, later(ttl), Bytes::copy_from_slice(&payload))
                .await
                .unwrap()
                == CreateOutcome::Created
            {
                sessions.push((key, 1));
            }
            "create"
        } else {
            let i = (x / 100) as usize % sessions.len();
            let (key, version) = sessions[i];
            match pick {
                10..=59 => {
                    std::hint::black_box(store.read(&key).await.unwrap());
                    "read"
                }
                60..=84 => {
                    match store
                        .update(
                            &key,
                            &key,
                            version,
                            later(3_600),
                            Bytes::copy_from_slice(&payload),
                        )
                        .await
                        .unwrap()
                    {
                        UpdateOutcome::Updated { version } => sessions[i].1 = version,
                        _ => {
                            sessions.swap_remove(i);
                        }
                    }
                    "update"
                }
                85..=89 => {
                    let fresh = SessionId::generate().key();
                    match store
                        .update(
                            &fresh,
                            &key,
                            version,
                            later(3_600),
                            Bytes::copy_from_slice(&payload),
                        )
                        .await
                        .unwrap()
                    {
                        UpdateOutcome::Updated { version } => sessions[i] = (fresh, version),
                        _ => {
                            sessions.swap_remove(i);
                        }
                    }
                    "rotate"
                }
                90..=94 => {
                    if !store.touch(&key, later(3_600)).await.unwrap() {
                        sessions.swap_remove(i);
                    }
                    "touch"
                }
                _ => {
                    store.delete(&key).await.unwrap();
                    sessions.swap_remove(i);
                    "delete"
                }
            }
        };
        record(&latencies, op, started.elapsed());
    }
}

fn main() {
    let seconds = env("SOAK_SECONDS", 300);
    let tasks = env("SOAK_TASKS", 16) as usize;
    let payload = Arc::new(vec![0x5au8; env("SOAK_PAYLOAD", 200) as usize]);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("soak.sqlite");
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = std::path::PathBuf::from(wal);
    let runtime = session_bench::runtime();
    runtime.block_on(async {
        // `SOAK_OPTIONS`: the query of the store's URL (e.g. `mmap_size=1073741824`).
        let options = std::env::var("SOAK_OPTIONS").unwrap_or_default();
        let url = format!("sqlite://{}?{options}", path.display());
        let config = SqliteConfig::from_url(&url).expect("SOAK_OPTIONS: a valid URL query");
        let store = Arc::new(SqliteStore::with_config(config).await.expect("open"));
        let limit = store.config().wal_limit;
        println!(
            "soak: {seconds} s, {tasks} tasks, {} B sessions, WAL limit {} MiB, purge every {} s\n",
            payload.len(),
            mib(limit),
            EVERY.as_secs()
        );
        print!("| t (s) | WAL MiB | db MiB | RSS anon/file MiB | queued w/r |");
        for op in OPS {
            print!(" {op} n | p50/p99 ms |");
        }
        println!();
        println!("|{}", "---:|".repeat(5 + 2 * OPS.len()));
        let latencies: Latencies = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for t in 0..tasks {
            handles.push(tokio::spawn(worker(
                Arc::clone(&store),
                Arc::clone(&latencies),
                Arc::clone(&stop),
                Arc::clone(&payload),
                0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1),
            )));
        }
        let started = Instant::now();
        let mut next = EVERY;
        let (mut largest_wal, mut rss_after_warmup) = (0u64, Vec::new());
        while started.elapsed() < Duration::from_secs(seconds) {
            // Sample the WAL often; report every 10 s.
            tokio::time::sleep(Duration::from_millis(100)).await;
            largest_wal = largest_wal.max(size(&wal));
            if started.elapsed() < next {
                continue;
            }
            next += EVERY;
            let purge_started = Instant::now();
            let purged = store.delete_expired().await.expect("purge");
            record(&latencies, "purge", purge_started.elapsed());
            let interval = std::mem::take(&mut *latencies.lock());
            let (w, r) = store.queued();
            let (rss, mapped) = (status_bytes("RssAnon:"), status_bytes("RssFile:"));
            if started.elapsed() > Duration::from_secs(30) {
                rss_after_warmup.push(rss);
            }
            print!(
                "| {:.0} | {} | {} | {}/{} | {w}/{r} |",
                started.elapsed().as_secs_f64(),
                mib(largest_wal),
                mib(size(&path)),
                mib(rss),
                mib(mapped)
            );
            for op in OPS {
                match interval.get(op) {
                    Some(h) => print!(
                        " {} | {}/{} |",
                        h.len(),
                        ms(h.value_at_quantile(0.5)),
                        ms(h.value_at_quantile(0.99))
                    ),
                    None => print!(" 0 | - |"),
                }
            }
            println!(" purged {purged}");
            largest_wal = size(&wal);
        }
        stop.store(true, Ordering::Relaxed);
        for handle in handles {
            handle.await.expect("a worker panicked");
        }
        if let (Some(low), Some(high)) =
            (rss_after_warmup.iter().min(), rss_after_warmup.iter().max())
        {
            println!(
                "\nanonymous RSS after warm-up: {} to {} MiB ({:+.1} %)",
                mib(*low),
                mib(*high),
                (*high as f64 / *low as f64 - 1.0) * 100.0
            );
        }
    });
}
