//! Several OS processes on one database file: creates and rotations raced from two processes,
//! and a writer killed with SIGKILL again and again.
//!
//! The child processes are this test binary run again on the ignored entry point `child`, with
//! `SESSION_SQLITE_CHILD` saying what to do.

use session_core::SessionStoreExt as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use session_core::Bytes;
use session_core::time::{Duration as TimeDuration, OffsetDateTime};
use session_core::{CreateOutcome, SessionKey, SessionStore, UpdateOutcome};
use session_sqlite::{Durability, SqliteConfig, SqliteStore};

const RACE_KEYS: u32 = 100;

/// A deterministic key: every process computes the same one.
fn key(tag: u8, i: u32) -> SessionKey {
    let mut bytes = [0u8; 32];
    bytes[0] = tag;
    bytes[1..5].copy_from_slice(&i.to_le_bytes());
    SessionKey::from_bytes(&bytes).expect("32 bytes")
}

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + TimeDuration::hours(1)
}

fn spawn_child(mode: &str, path: &Path, extra: &[(&str, String)]) -> Child {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SESSION_SQLITE_CHILD", mode)
        .env("SESSION_SQLITE_CHILD_PATH", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (name, value) in extra {
        command.env(name, value);
    }
    command.spawn().expect("spawn a child test process")
}

/// Entry point of the child processes; `SESSION_SQLITE_CHILD` selects the role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the child processes that the race and crash tests spawn"]
async fn child() {
    let mode = std::env::var("SESSION_SQLITE_CHILD").expect("run by the parent tests only");
    let path = PathBuf::from(std::env::var("SESSION_SQLITE_CHILD_PATH").expect("a path"));
    let mut out = std::io::stdout().lock();
    match mode.as_str() {
        "race" => {
            let me: u8 = std::env::var("SESSION_SQLITE_CHILD_ID")
                .unwrap()
                .parse()
                .unwrap();
            let store = SqliteStore::with_config(SqliteConfig::new(&path))
                .await
                .unwrap();
            let start: u64 = std::env::var("SESSION_SQLITE_CHILD_START")
                .unwrap()
                .parse()
                .unwrap();
            let start = std::time::UNIX_EPOCH + Duration::from_millis(start);
            while std::time::SystemTime::now() < start {
                std::hint::spin_loop();
            }
            for i in 0..RACE_KEYS {
                let created = store
                    .create(&key(1, i), later(), Bytes::copy_from_slice(&[me]))
                    .await
                    .unwrap();
                writeln!(out, "create {i} {}", created == CreateOutcome::Created).unwrap();
                let rotated = store
                    .update(
                        &key(10 + me, i),
                        &key(2, i),
                        1,
                        later(),
                        Bytes::copy_from_slice(&[me]),
                    )
                    .await
                    .unwrap();
                writeln!(
                    out,
                    "rotate {i} {}",
                    matches!(rotated, UpdateOutcome::Updated { .. })
                )
                .unwrap();
            }
        }
        "crash" => {
            let config = SqliteConfig::new(&path).durability(Durability::Full);
            let store = SqliteStore::with_config(config).await.unwrap();
            let offset: u32 = std::env::var("SESSION_SQLITE_CHILD_OFFSET")
                .unwrap()
                .parse()
                .unwrap();
            // Several writers at once, so batches of many writes are in flight when the kill lands.
            let store = std::sync::Arc::new(store);
            let (tx, rx) = std::sync::mpsc::channel::<u32>();
            for w in 0..8u32 {
                let (store, tx) = (store.clone(), tx.clone());
                tokio::spawn(async move {
                    for n in 0.. {
                        let i = offset + w * 1_000_000 + n;
                        let outcome = store
                            .create(&key(3, i), later(), Bytes::copy_from_slice(&[7u8; 512]))
                            .await
                            .unwrap();
                        assert_eq!(outcome, CreateOutcome::Created);
                        if tx.send(i).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            for i in rx {
                writeln!(out, "ack {i}").unwrap();
                out.flush().unwrap();
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_race_creates_and_rotations_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.sqlite");
    let store = SqliteStore::with_config(SqliteConfig::new(&path))
        .await
        .unwrap();
    for i in 0..RACE_KEYS {
        assert_eq!(
            store
                .create(&key(2, i), later(), Bytes::from_static(b"origin"))
                .await
                .unwrap(),
            CreateOutcome::Created
        );
    }
    let start = (std::time::SystemTime::now() + Duration::from_millis(1500))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let children: Vec<Child> = (0..2u8)
        .map(|me| {
            spawn_child(
                "race",
                &path,
                &[
                    ("SESSION_SQLITE_CHILD_ID", me.to_string()),
                    ("SESSION_SQLITE_CHILD_START", start.clone()),
                ],
            )
        })
        .collect();
    let mut created = vec![Vec::new(); RACE_KEYS as usize];
    let mut rotated = vec![Vec::new(); RACE_KEYS as usize];
    for (me, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "child {me} failed");
        for line in String::from_utf8(output.stdout).unwrap().lines() {
            // libtest's "test child ... " may share the first line.
            let line = line.rsplit("... ").next().unwrap_or(line);
            let parts: Vec<&str> = line.split(' ').collect();
            let (op, i, won) = match parts[..] {
                [op @ ("create" | "rotate"), i, won] => {
                    (op, i.parse::<usize>().unwrap(), won == "true")
                }
                _ => continue,
            };
            if won {
                if op == "create" {
                    created[i].push(me as u8)
                } else {
                    rotated[i].push(me as u8)
                }
            }
        }
    }
    for i in 0..RACE_KEYS {
        let winners = &created[i as usize];
        assert_eq!(winners.len(), 1, "create winners of key {i}: {winners:?}");
        let record = store
            .read(&key(1, i))
            .await
            .unwrap()
            .expect("the raced key is live");
        assert_eq!(
            record.data.to_vec(),
            vec![winners[0]],
            "stored data is the winner's"
        );
        let winners = &rotated[i as usize];
        assert_eq!(winners.len(), 1, "rotation winners of key {i}: {winners:?}");
        assert!(
            store.read(&key(2, i)).await.unwrap().is_none(),
            "the rotated-away key {i} is live"
        );
        for me in 0..2u8 {
            let live = store.read(&key(10 + me, i)).await.unwrap();
            assert_eq!(
                live.is_some(),
                me == winners[0],
                "successor of child {me} for key {i}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_no_acknowledged_write_in_full_mode() {
    const KILLS: u32 = 12;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.sqlite");
    let mut acknowledged: Vec<u32> = Vec::new();
    for round in 0..KILLS {
        let mut child = spawn_child(
            "crash",
            &path,
            &[(
                "SESSION_SQLITE_CHILD_OFFSET",
                (round * 10_000_000).to_string(),
            )],
        );
        let stdout = child.stdout.take().unwrap();
        // Kill after a varying number of acknowledgements, mid-stream.
        let wanted = 50 + (round as usize * 37) % 400;
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.strip_prefix("ack ") {
                    acks.push(i.parse::<u32>().unwrap());
                }
            }
            acks
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        // Give the child time to get going, then kill it at a point that varies by round.
        std::thread::sleep(Duration::from_millis(150 + (wanted as u64 % 7) * 40));
        assert!(Instant::now() < deadline);
        child.kill().expect("SIGKILL the child");
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        assert!(
            !acks.is_empty(),
            "round {round}: the child acknowledged nothing before the kill"
        );
        acknowledged.extend(acks);

        let raw = rusqlite::Connection::open(&path).unwrap();
        let check: String = raw
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}: integrity check");
        drop(raw);
        let store = SqliteStore::with_config(SqliteConfig::new(&path).durability(Durability::Full))
            .await
            .unwrap();
        for &i in &acknowledged {
            assert!(
                store.read(&key(3, i)).await.unwrap().is_some(),
                "round {round}: acknowledged write {i} is missing"
            );
        }
    }
    println!(
        "{KILLS} kills, {} acknowledged writes all present",
        acknowledged.len()
    );
}
