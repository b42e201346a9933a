//! Where a memory-store create, save and load of a session spends its time, part by part, on
//! one task: `cargo run --release -p peer-bench --bin breakdown`. Each line is the best of 5
//! timed loops (after a warm-up), in nanoseconds per call.

use serde_json::{Map, Value};
use session_manager::SessionStoreExt as _;
use session_manager::{
    Bytes, SessionId,
    time::{Duration, OffsetDateTime},
};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

/// Best-of-5 nanoseconds per call of `f`.
fn per_op<F: FnMut()>(name: &str, n: u32, mut f: F) {
    for _ in 0..n / 10 {
        f();
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / n as f64);
    }
    println!("{name:<44} {best:>8.0} ns");
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // A rotation on Redis Cluster: fresh ids until the key's first byte matches (1 in 256).
    let mut target = 0u8;
    per_op("cluster rotation id (first key byte fixed)", 2_000, || {
        target = target.wrapping_add(1);
        loop {
            let id = SessionId::generate();
            if id.key().as_bytes()[0] == target {
                black_box(id);
                break;
            }
        }
    });
    for bytes in [200usize, 4096] {
        println!("-- payload {bytes} B");
        let mut map = Map::new();
        map.insert("user_id".into(), Value::from(4242));
        map.insert("admin".into(), Value::from(false));
        map.insert("blob".into(), Value::from("x".repeat(bytes - 40)));
        let json = serde_json::to_vec(&map).unwrap();
        per_op("SessionId::generate (OS random)", 200_000, || {
            black_box(SessionId::generate());
        });
        let id = SessionId::generate();
        per_op("SessionId::key (SHA-256)", 200_000, || {
            black_box(id.key());
        });
        per_op("serde_json::to_vec(map)", 100_000, || {
            black_box(serde_json::to_vec(&map).unwrap());
        });
        per_op("serde_json::from_slice -> Map", 100_000, || {
            black_box(serde_json::from_slice::<Map<String, Value>>(&json).unwrap());
        });
        per_op("envelope copy (Vec + header + data)", 200_000, || {
            let mut v = Vec::with_capacity(9 + json.len());
            v.push(1);
            v.extend_from_slice(&[0u8; 8]);
            v.extend_from_slice(&json);
            black_box(v);
        });
        let hm: HashMap<String, Value> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        per_op("peer: HashMap<String, Value> clone", 200_000, || {
            black_box(hm.clone());
        });
        let store = session_memory::MemoryStore::new();
        let at = OffsetDateTime::now_utc() + Duration::hours(1);
        let t = Instant::now();
        let n = 100_000u32;
        for _ in 0..n {
            let k = SessionId::generate().key();
            let _ = store
                .create(&k, at, Bytes::copy_from_slice(&json))
                .await
                .unwrap();
        }
        println!(
            "{:<44} {:>8.0} ns",
            "MemoryStore::create incl. id+key",
            t.elapsed().as_nanos() as f64 / n as f64
        );
        let manager = session_manager::SessionManager::new(session_memory::MemoryStore::new());
        let t = Instant::now();
        for _ in 0..n {
            black_box(
                manager
                    .create(serde_json::to_vec(&map).unwrap())
                    .await
                    .unwrap(),
            );
        }
        println!(
            "{:<44} {:>8.0} ns",
            "SessionManager::create incl. JSON",
            t.elapsed().as_nanos() as f64 / n as f64
        );
    }
}
