//! The owner index at scale: `sessions_of` and `revoke_owner` for owners with 1, 10 and 1,000
//! sessions among a small and a large number of stored sessions (every stored session owned,
//! two per background owner), and what owning costs a write (owned vs plain create, save and
//! rotation, same store, same run).
//!
//! ```sh
//! cargo bench -p session-any --bench owners
//! ```
//!
//! Backends: `memory://` and SQLite (a temporary file) always; PostgreSQL, Redis, MySQL and the
//! Redis Cluster when `SESSION_TEST_POSTGRES_URL`, `SESSION_TEST_REDIS_URL`,
//! `SESSION_TEST_MYSQL_URL`, `SESSION_TEST_REDIS_CLUSTER_URL` are set (each run in a fresh
//! namespace, dropped afterwards). `BENCH_BACKENDS=memory,redis` picks some;
//! `BENCH_SMALL` (default 10,000) and `BENCH_LARGE` (default 1,000,000; 100,000 for SQLite,
//! which the issue allows) set the store sizes. Latencies are
//! medians of interleaved repeats, single task (one request listing or revoking).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use session_any::{AnyStore, StoreAdmin, StoreConfig};
use session_manager::time::{Duration as TimeDuration, OffsetDateTime};
use session_manager::{
    Bytes, CreateOutcome, Owner, OwnerChange, Ownership, SessionId, SessionKey, SessionStore,
    SessionStoreExt, UpdateOutcome, WriteOptions,
};

/// The options of a write that gives the session `ownership`.
fn owned_write(ownership: &Ownership) -> WriteOptions {
    WriteOptions::new().with_owner(OwnerChange::Set(ownership.clone()))
}

const OWNER_SIZES: [usize; 3] = [1, 10, 1_000];
const PREFILL_TASKS: usize = 64;

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + TimeDuration::hours(2)
}

fn data() -> Bytes {
    Bytes::from(vec![b'x'; 200])
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn owned(name: &str) -> Ownership {
    Ownership::new(Owner::new(name).expect("owner"), "bench device").expect("label")
}

/// Creates `count` sessions of `owner` (64 at a time); their keys.
async fn create_many(
    store: &Arc<AnyStore>,
    owner: &Ownership,
    count: usize,
) -> Vec<session_manager::SessionKey> {
    futures::stream::iter(0..count)
        .map(|_| {
            let store = Arc::clone(store);
            let owner = owner.clone();
            async move {
                let key = SessionId::generate().key();
                let outcome = store
                    .create_opts(&key, later(), data(), &owned_write(&owner))
                    .await
                    .expect("an owned create");
                assert_eq!(outcome, CreateOutcome::Created);
                key
            }
        })
        .buffer_unordered(PREFILL_TASKS)
        .collect()
        .await
}

/// `total` background sessions, two per owner `bg-N`.
async fn prefill(store: &Arc<AnyStore>, total: usize) -> Duration {
    let started = Instant::now();
    futures::stream::iter(0..total)
        .map(|i| {
            let store = Arc::clone(store);
            async move {
                let key = SessionId::generate().key();
                let owner = owned(&format!("bg-{}", i / 2));
                let outcome = store
                    .create_opts(&key, later(), data(), &owned_write(&owner))
                    .await
                    .expect("prefill");
                assert_eq!(outcome, CreateOutcome::Created);
            }
        })
        .buffer_unordered(PREFILL_TASKS)
        .collect::<Vec<()>>()
        .await;
    started.elapsed()
}

struct Scale {
    stored: usize,
    /// Per owner size: (sessions_of p50 µs, revoke_owner p50 µs).
    cells: Vec<(usize, f64, f64)>,
}

async fn measure_scale(store: &Arc<AnyStore>, stored: usize, repeats: usize) -> Scale {
    let owners: Vec<(usize, Ownership)> = OWNER_SIZES
        .iter()
        .map(|&n| (n, owned(&format!("listed-{n}-{stored}"))))
        .collect();
    for (n, owner) in &owners {
        create_many(store, owner, *n).await;
    }
    // sessions_of: interleaved rounds over the three owners.
    let mut listing: Vec<Vec<f64>> = vec![Vec::new(); owners.len()];
    for _ in 0..repeats {
        for (i, (n, owner)) in owners.iter().enumerate() {
            let started = Instant::now();
            let listed = store.sessions_of(owner.owner()).await.expect("sessions_of");
            listing[i].push(us(started.elapsed()));
            assert_eq!(listed.len(), *n, "sessions_of");
        }
    }
    // revoke_owner: each repeat revokes freshly created sessions (creation not timed).
    let revoke_repeats = repeats.div_ceil(3).max(3);
    let mut revoking: Vec<Vec<f64>> = vec![Vec::new(); owners.len()];
    for round in 0..revoke_repeats {
        for (i, &n) in OWNER_SIZES.iter().enumerate() {
            let owner = owned(&format!("revoked-{n}-{stored}-{round}"));
            create_many(store, &owner, n).await;
            let started = Instant::now();
            let revoked = store
                .revoke_owner(owner.owner(), None)
                .await
                .expect("revoke_owner");
            revoking[i].push(us(started.elapsed()));
            assert_eq!(revoked, n as u64, "revoke_owner count");
        }
    }
    Scale {
        stored,
        cells: OWNER_SIZES
            .iter()
            .enumerate()
            .map(|(i, &n)| (n, median(listing[i].clone()), median(revoking[i].clone())))
            .collect(),
    }
}

/// Owned vs plain writes on one store: ops/s of each in interleaved rounds; the median ratio.
async fn write_overhead(
    store: &Arc<AnyStore>,
    rounds: usize,
    per_round: usize,
) -> Vec<(&'static str, f64, f64, f64)> {
    let owner = owned("writer");
    let mut rows = Vec::new();
    for op in ["create", "save", "rotate"] {
        let (mut plain, mut with_owner) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            for owned_run in [false, true] {
                // Sessions to save or rotate, made before the clock starts.
                let mut keys = Vec::with_capacity(per_round);
                if op != "create" {
                    for _ in 0..per_round {
                        let key = SessionId::generate().key();
                        let created = if owned_run {
                            store
                                .create_opts(&key, later(), data(), &owned_write(&owner))
                                .await
                        } else {
                            store.create(&key, later(), data()).await
                        };
                        assert_eq!(created.expect("create"), CreateOutcome::Created);
                        keys.push(key);
                    }
                }
                let targets: Vec<Option<SessionKey>> = if keys.is_empty() {
                    vec![None; per_round]
                } else {
                    keys.into_iter().map(Some).collect()
                };
                let started = Instant::now();
                for target in &targets {
                    match target {
                        None => {
                            let key = SessionId::generate().key();
                            let outcome = if owned_run {
                                store
                                    .create_opts(&key, later(), data(), &owned_write(&owner))
                                    .await
                            } else {
                                store.create(&key, later(), data()).await
                            };
                            assert_eq!(outcome.expect("create"), CreateOutcome::Created);
                        }
                        Some(key) if op == "save" => {
                            let outcome = store.update(key, key, 1, later(), data()).await;
                            assert_eq!(
                                outcome.expect("save"),
                                UpdateOutcome::Updated { version: 2 }
                            );
                        }
                        Some(key) => {
                            let mut next = SessionId::generate().key();
                            while !store.can_rotate_between(key, &next) {
                                next = SessionId::generate().key();
                            }
                            let outcome = store.update(&next, key, 1, later(), data()).await;
                            assert_eq!(
                                outcome.expect("rotate"),
                                UpdateOutcome::Updated { version: 2 }
                            );
                        }
                    }
                }
                let rate = per_round as f64 / started.elapsed().as_secs_f64();
                if owned_run {
                    with_owner.push(rate);
                } else {
                    plain.push(rate);
                }
            }
        }
        let ratios: Vec<f64> = with_owner.iter().zip(&plain).map(|(o, p)| o / p).collect();
        rows.push((op, median(plain), median(with_owner), median(ratios)));
    }
    rows
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
}

#[tokio::main]
async fn main() {
    let mut backends: Vec<(&str, String, usize)> = vec![
        ("memory", "memory://".into(), 1_000_000),
        ("sqlite", "sqlite::memory:".into(), 100_000),
    ];
    for (name, var, large) in [
        ("postgres", "SESSION_TEST_POSTGRES_URL", 1_000_000),
        ("redis", "SESSION_TEST_REDIS_URL", 1_000_000),
        ("mysql", "SESSION_TEST_MYSQL_URL", 1_000_000),
        ("redis-cluster", "SESSION_TEST_REDIS_CLUSTER_URL", 1_000_000),
    ] {
        match std::env::var(var) {
            Ok(url) => backends.push((name, url, large)),
            Err(_) => eprintln!("owners bench: {var} is not set; {name} is not measured"),
        }
    }
    if let Ok(only) = std::env::var("BENCH_BACKENDS") {
        let only: Vec<&str> = only.split(',').map(str::trim).collect();
        backends.retain(|(name, ..)| only.contains(name));
    }
    let small = env_usize("BENCH_SMALL").unwrap_or(10_000);
    let repeats = env_usize("BENCH_REPEATS").unwrap_or(15).max(3);
    println!("| backend | stored | owner's sessions | sessions_of p50 | revoke_owner p50 |");
    println!("|---|---:|---:|---:|---:|");
    let mut summaries = Vec::new();
    for (name, url, default_large) in backends {
        let large = env_usize("BENCH_LARGE").unwrap_or(default_large);
        let mut scales = Vec::new();
        let mut overhead = Vec::new();
        for stored in [small, large] {
            let namespace = format!("owners_bench_{:08x}", rand_u32());
            let config = StoreConfig::new(&url)
                .isolated(&namespace)
                .expect("namespace");
            let store = Arc::new(AnyStore::open(&config).await.expect("open"));
            let took = prefill(&store, stored).await;
            eprintln!(
                "owners bench: {name}: {stored} sessions stored in {:.1} s",
                took.as_secs_f64()
            );
            let scale = measure_scale(&store, stored, repeats).await;
            for (n, list, revoke) in &scale.cells {
                println!("| {name} | {stored} | {n} | {list:.1} µs | {revoke:.1} µs |");
            }
            if stored == large {
                overhead = write_overhead(&store, 5, 200).await;
            }
            scales.push(scale);
            store.drop_namespace().await.expect("drop namespace");
        }
        summaries.push((name, scales, overhead));
    }
    println!();
    println!("| backend | owner's sessions | sessions_of large/small | revoke_owner large/small |");
    println!("|---|---:|---:|---:|");
    for (name, scales, _) in &summaries {
        let (a, b) = (&scales[0], &scales[1]);
        for (i, (n, ..)) in a.cells.iter().enumerate() {
            println!(
                "| {name} ({} → {}) | {n} | {:.2} | {:.2} |",
                a.stored,
                b.stored,
                b.cells[i].1 / a.cells[i].1,
                b.cells[i].2 / a.cells[i].2
            );
        }
    }
    println!();
    println!("| backend | write | plain ops/s | owned ops/s | owned / plain |");
    println!("|---|---|---:|---:|---:|");
    for (name, _, overhead) in &summaries {
        for (op, plain, owned, ratio) in overhead {
            println!("| {name} | {op} | {plain:.0} | {owned:.0} | {ratio:.2} |");
        }
    }
}

fn rand_u32() -> u32 {
    let key = SessionId::generate().key();
    u32::from_le_bytes(key.as_bytes()[..4].try_into().expect("4 bytes"))
}
