//! SQLite's own floor at scale: how much of its speed raw `rusqlite` keeps on the store's schema
//! (a `WITHOUT ROWID` table keyed by random 32-byte keys, plus the expiry index) at `SCALE_ROWS`
//! rows (default 1,000,000) against `SCALE_BASE` rows (default 30,000: the 10,000 of the
//! store's small case plus the 20,000 sessions peer-bench's load, save and delete cells create
//! first). No store, no threads between caller and SQLite: what is left is the B-tree and the
//! log. Same pragmas as the store (WAL, `synchronous=NORMAL`, its default `mmap_size`, which
//! `SCALE_MMAP_SIZE` overrides), SQLite's default automatic checkpoints. Both files are measured in the same run, interleaved, `SCALE_REPEATS`
//! times (default 5); the medians and their ratio are printed.
//!
//! ```sh
//! cargo bench -p session-sqlite --bench scale
//! ```

use std::path::Path;
use std::time::Instant;

use parking_lot::Mutex;

use session_core::SessionId;
use session_sqlite::DEFAULT_MMAP_SIZE;
use session_sqlite::rusqlite::{Connection, params};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const FAR: i64 = 4_000_000_000_000;

fn key() -> [u8; 32] {
    *SessionId::generate().key().as_bytes()
}

fn open(path: &Path) -> Connection {
    let mmap = env("SCALE_MMAP_SIZE", DEFAULT_MMAP_SIZE as usize);
    let c = Connection::open(path).expect("open");
    c.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA mmap_size = {mmap};"
    ))
    .expect("pragmas");
    c
}

/// A table of `rows` sessions of 200 bytes; their keys.
fn build(path: &Path, rows: usize) -> Vec<[u8; 32]> {
    let c = open(path);
    c.execute_batch(
        "CREATE TABLE s (key BLOB PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL,
           version INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID;
         CREATE INDEX s_expires_at ON s (expires_at);
         BEGIN",
    )
    .expect("schema");
    let data = vec![b'x'; 200];
    let mut keys = Vec::with_capacity(rows);
    {
        let mut insert = c
            .prepare("INSERT INTO s VALUES (?1, ?2, 1, ?3)")
            .expect("prepare");
        for i in 0..rows {
            let k = key();
            insert
                .execute(params![&k[..], FAR + i as i64, &data])
                .expect("insert");
            keys.push(k);
        }
    }
    c.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("commit");
    keys
}

/// A random index below `n` (xorshift: the bench's own randomness must cost next to nothing).
fn next(state: &mut u64, n: usize) -> usize {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state % n as u64) as usize
}

/// Point reads of random stored keys on one connection; ops/s.
fn lookups(c: &Connection, keys: &[[u8; 32]], count: usize, seed: u64) -> f64 {
    let mut read = c
        .prepare_cached(
            "SELECT expires_at, version, data FROM s WHERE key = ?1 AND expires_at > ?2",
        )
        .expect("prepare");
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let started = Instant::now();
    for _ in 0..count {
        let k = &keys[next(&mut state, keys.len())];
        let row: (i64, i64, Vec<u8>) = read
            .query_row(params![&k[..], 0], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .expect("read");
        std::hint::black_box(row);
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// Point reads on `reader`, each after a one-row commit on `writer` (untimed), as when reads
/// and writes interleave: the reader's next transaction then sees a changed log. Reads/s over
/// the reads' own time.
fn lookups_after_commits(
    reader: &Connection,
    writer: &Connection,
    keys: &[[u8; 32]],
    count: usize,
    seed: u64,
) -> f64 {
    let mut read = reader
        .prepare_cached(
            "SELECT expires_at, version, data FROM s WHERE key = ?1 AND expires_at > ?2",
        )
        .expect("prepare");
    let mut write = writer
        .prepare_cached("UPDATE s SET version = version + 1 WHERE key = ?1")
        .expect("prepare");
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut spent = std::time::Duration::ZERO;
    for _ in 0..count {
        let w = &keys[next(&mut state, keys.len())];
        write.execute(params![&w[..]]).expect("write");
        let k = &keys[next(&mut state, keys.len())];
        let started = Instant::now();
        let row: (i64, i64, Vec<u8>) = read
            .query_row(params![&k[..], 0], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .expect("read");
        spent += started.elapsed();
        std::hint::black_box(row);
    }
    count as f64 / spent.as_secs_f64()
}

/// Point reads from two threads, a connection each (the store's two readers); total ops/s.
fn lookups2(readers: &[Mutex<Connection>; 2], keys: &[[u8; 32]], count: usize, seed: u64) -> f64 {
    let started = Instant::now();
    std::thread::scope(|s| {
        for (t, reader) in readers.iter().enumerate() {
            s.spawn(move || lookups(&reader.lock(), keys, count / 2, seed * 2 + t as u64));
        }
    });
    count as f64 / started.elapsed().as_secs_f64()
}

/// Writes in transactions of `batch` (the store's group commit at 16 tasks); ops/s. `insert`:
/// new random keys (deleted again afterwards, untimed, so the table keeps its size); otherwise
/// an in-place update of random stored keys.
/// `checkpoints: false` turns SQLite's automatic checkpoints off for the timed part (the log is
/// then only appended to: the B-tree's own cost) and truncates the log afterwards, untimed.
fn writes(
    c: &Connection,
    keys: &[[u8; 32]],
    insert: bool,
    checkpoints: bool,
    count: usize,
    seed: u64,
) -> f64 {
    let pages = if checkpoints { 1000 } else { 0 };
    c.execute_batch(&format!("PRAGMA wal_autocheckpoint = {pages}"))
        .expect("pragma");
    let data = vec![b'y'; 200];
    let sql = if insert {
        "INSERT INTO s VALUES (?1, ?2, 1, ?3)"
    } else {
        "UPDATE s SET expires_at = ?2, version = version + 1, data = ?3 WHERE key = ?1"
    };
    let mut write = c.prepare_cached(sql).expect("prepare");
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut inserted = Vec::new();
    let started = Instant::now();
    for chunk in 0..count / BATCH {
        c.execute_batch("BEGIN IMMEDIATE").expect("begin");
        for i in 0..BATCH {
            let k = if insert {
                key()
            } else {
                keys[next(&mut state, keys.len())]
            };
            let n = write
                .execute(params![&k[..], FAR + (chunk * BATCH + i) as i64, &data])
                .expect("write");
            assert_eq!(n, 1);
            if insert {
                inserted.push(k);
            }
        }
        c.execute_batch("COMMIT").expect("commit");
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    c.execute_batch("BEGIN").expect("begin");
    for k in &inserted {
        c.execute("DELETE FROM s WHERE key = ?1", params![&k[..]])
            .expect("delete");
    }
    c.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("commit");
    rate
}

const BATCH: usize = 16;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rows = env("SCALE_ROWS", 1_000_000);
    let base = env("SCALE_BASE", 30_000);
    let repeats = env("SCALE_REPEATS", 5) as u64;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (big_path, small_path) = (dir.path().join("big.db"), dir.path().join("small.db"));
    let started = Instant::now();
    let (big, small) = (build(&big_path, rows), build(&small_path, base));
    eprintln!(
        "scale: built {rows} and {base} rows in {:.1?}",
        started.elapsed()
    );
    let (cb, cs) = (open(&big_path), open(&small_path));
    let big_readers = [Mutex::new(open(&big_path)), Mutex::new(open(&big_path))];
    let small_readers = [Mutex::new(open(&small_path)), Mutex::new(open(&small_path))];
    // Warm the page caches (and memory maps, if any) once.
    lookups2(&big_readers, &big, 400_000, 1);
    lookups2(&small_readers, &small, 400_000, 1);
    println!("| raw SQLite | ops/s at {rows} | ops/s at {base} | ratio |\n|---|---:|---:|---:|");
    type Run<'a> = Box<dyn Fn(bool, u64) -> f64 + 'a>;
    let (cb, cs, big, small) = (&cb, &cs, &big, &small);
    let write_cell = |name, insert, checkpoints| -> (&str, Run<'_>) {
        (
            name,
            Box::new(move |b, r| {
                if b {
                    writes(cb, big, insert, checkpoints, 20_000, r)
                } else {
                    writes(cs, small, insert, checkpoints, 20_000, r)
                }
            }),
        )
    };
    let cells: Vec<(&str, Run<'_>)> = vec![
        (
            "point read, 1 thread",
            Box::new(|b, r| {
                if b {
                    lookups(&big_readers[0].lock(), big, 200_000, r)
                } else {
                    lookups(&small_readers[0].lock(), small, 200_000, r)
                }
            }),
        ),
        (
            "point read after another connection's commit",
            Box::new(|b, r| {
                if b {
                    lookups_after_commits(&big_readers[1].lock(), cb, big, 20_000, r)
                } else {
                    lookups_after_commits(&small_readers[1].lock(), cs, small, 20_000, r)
                }
            }),
        ),
        (
            "point read, 2 threads",
            Box::new(|b, r| {
                if b {
                    lookups2(&big_readers, big, 200_000, r)
                } else {
                    lookups2(&small_readers, small, 200_000, r)
                }
            }),
        ),
        write_cell("insert, 16 per transaction", true, true),
        write_cell("insert, 16 per transaction, no checkpoints", true, false),
        write_cell("update in place, 16 per transaction", false, true),
        write_cell(
            "update in place, 16 per transaction, no checkpoints",
            false,
            false,
        ),
    ];
    for (name, run) in &cells {
        let (mut at_rows, mut at_base) = (Vec::new(), Vec::new());
        for r in 0..repeats {
            // Alternate which size runs first.
            for b in if r % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            } {
                let rate = run(b, 100 + r);
                if b {
                    at_rows.push(rate)
                } else {
                    at_base.push(rate)
                }
            }
        }
        let (a, b) = (median(at_rows), median(at_base));
        println!("| {name} | {a:.0} | {b:.0} | {:.2}× |", a / b);
    }
}
