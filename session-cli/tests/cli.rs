//! `sessionctl` end to end, as a process.

use session_manager::SessionStoreExt as _;
use std::process::{Command, Output};
use std::time::Duration;

use session_manager::{Bytes, CreateOutcome, SessionId, SessionStore, time::OffsetDateTime};

fn sessionctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sessionctl"))
        .args(args)
        .output()
        .expect("sessionctl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts a successful `check` whose table lists every behaviour as passed.
fn assert_check_passes(output: &Output) {
    let out = stdout(output);
    assert!(
        output.status.success(),
        "exit {:?}\n{out}\n{}",
        output.status,
        stderr(output)
    );
    let all: Vec<conformance_tests::Behaviour> = conformance_tests::behaviours()
        .into_iter()
        .chain(session_manager::testing::FRONT_CHECKS.iter().copied())
        .collect();
    let count = |family| all.iter().filter(|b| b.family == family).count();
    for behaviour in &all {
        let row = out
            .lines()
            .find(|line| line.split_whitespace().next() == Some(behaviour.name))
            .unwrap_or_else(|| panic!("no row for {}\n{out}", behaviour.name));
        assert_eq!(row.split_whitespace().nth(1), Some("pass"), "{row}");
    }
    let summary = format!(
        "store contract: {} passed, 0 failed; front checks: {} passed, 0 failed; owner index: {} passed, 0 failed",
        count(conformance_tests::Family::Store),
        count(conformance_tests::Family::Front),
        count(conformance_tests::Family::Owner)
    );
    assert!(out.contains(&summary), "{out}");
}

#[test]
fn check_passes_on_embedded_sqlite_without_a_url() {
    let output = sessionctl(&["check"]);
    assert_check_passes(&output);
    assert!(stdout(&output).contains("sqlite (temporary file)"));
}

#[test]
fn check_passes_on_memory() {
    assert_check_passes(&sessionctl(&["check", "memory://"]));
}

#[test]
fn check_passes_on_postgres() {
    if let Some(url) = session_test_support::server_url("SESSION_TEST_POSTGRES_URL") {
        assert_check_passes(&sessionctl(&["check", &url]));
    }
}

#[test]
fn check_passes_on_redis() {
    if let Some(url) = session_test_support::server_url("SESSION_TEST_REDIS_URL") {
        assert_check_passes(&sessionctl(&["check", &url]));
    }
}

fn later(secs: u64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::from_secs(secs)
}

#[test]
fn check_leaves_existing_sessions_and_no_tables_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let key = SessionId::generate().key();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = session_sqlite::SqliteStore::open(&path).await.unwrap();
        assert_eq!(
            store
                .create(&key, later(3600), Bytes::from_static(b"keep me"))
                .await
                .unwrap(),
            CreateOutcome::Created
        );
    });
    let url = format!("sqlite://{}", path.display());
    assert_check_passes(&sessionctl(&["check", &url, "--jobs", "2"]));

    let connection = session_sqlite::rusqlite::Connection::open(&path).unwrap();
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        [session_sqlite::SCHEMA_TABLE, "sessions"],
        "check left tables behind"
    );
    runtime.block_on(async {
        let store = session_sqlite::SqliteStore::open(&path).await.unwrap();
        let record = store
            .read(&key)
            .await
            .unwrap()
            .expect("the app's session survives");
        assert_eq!(&record.data[..], b"keep me");
        assert_eq!(record.version, 1);
    });
}

#[test]
fn check_only_filters_behaviours() {
    let output = sessionctl(&["check", "memory://", "--only", "race_"]);
    let out = stdout(&output);
    assert!(output.status.success(), "{out}");
    let races = conformance_tests::behaviours()
        .iter()
        .filter(|b| b.name.contains("race_") && b.family == conformance_tests::Family::Store)
        .count();
    assert!(
        out.contains(&format!(
            "store contract: {races} passed, 0 failed; front checks: 0 passed"
        )),
        "{out}"
    );
    assert!(!out.contains("create_read_round_trip"), "{out}");
    let output = sessionctl(&["check", "memory://", "--only", "no_such_behaviour"]);
    assert_eq!(output.status.code(), Some(2));
}

/// Exit status `code`; on stderr at most the "connecting" progress line and one error line
/// containing `needle`; no panic, no secret, nothing on stdout.
fn assert_fatal(args: &[&str], code: i32, needle: &str) {
    let output = sessionctl(args);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(code), "{args:?}: {err}");
    let lines: Vec<&str> = err.trim_end().lines().collect();
    let (last, before) = lines.split_last().expect("an error line");
    assert!(
        before
            .iter()
            .all(|l| l.starts_with("sessionctl: connecting to ")),
        "{args:?}: {err}"
    );
    assert!(last.starts_with("sessionctl: "), "{err}");
    assert!(last.contains(needle), "{args:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(stdout(&output).is_empty(), "{args:?}");
}

#[test]
fn usage_errors_exit_2_and_store_errors_exit_3_with_one_line() {
    assert_fatal(
        &["check", "oracle://scott@localhost/db"],
        2,
        "unknown store URL scheme `oracle`",
    );
    assert_fatal(&["check", "not a url"], 2, "has no scheme");
    assert_fatal(
        &["check", "sqlite:///no/such/dir/s.db"],
        3,
        "cannot use the store",
    );
    assert_fatal(
        &[
            "check",
            "postgres://app:hunter2@127.0.0.1:1/app?acquire_timeout=1000",
        ],
        3,
        "Connection refused",
    );
    assert_fatal(
        &[
            "bench",
            "redis://:hunter2@127.0.0.1:1?connection_timeout=1000&response_timeout=1000",
        ],
        3,
        "cannot use the store at redis://:***@127.0.0.1:1",
    );
    // The backend checks its settings when it reads the URL, before anything is opened: a bad
    // table name is a malformed URL, like an unknown option.
    assert_fatal(
        &["stats", "sqlite://s.db?table=bad-name"],
        2,
        "not a plain identifier",
    );
    assert_fatal(
        &["gc", "memory://"],
        2,
        "lives inside one application process",
    );
    assert_fatal(&["bench", "memory://", "--ops", "0"], 2, "--ops");
    assert_fatal(&["bench", "memory://", "--duration", "0"], 2, "--duration");
    assert_fatal(
        &["stats", "sqlite://s.db?tabel=x"],
        2,
        "unknown option `tabel`",
    );
}

#[test]
fn wrong_postgres_credentials_exit_3() {
    if let Some(url) = session_test_support::server_url("SESSION_TEST_POSTGRES_URL") {
        let mut parsed = url::Url::parse(&url).unwrap();
        parsed.set_username("no_such_role_for_sessionctl").unwrap();
        parsed.set_password(Some("hunter2")).unwrap();
        assert_fatal(
            &["check", parsed.as_str()],
            3,
            "no_such_role_for_sessionctl",
        );
        parsed.set_username("postgres").unwrap();
        parsed.set_password(None).unwrap();
        parsed.set_path("/no_such_database_for_sessionctl");
        assert_fatal(&["stats", parsed.as_str()], 3, "does not exist");
    }
}

#[test]
fn stats_and_gc_never_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("mistyped.db");
    for command in ["stats", "gc"] {
        let url = format!("sqlite://{}", missing.display());
        assert_fatal(&[command, &url], 3, "no session table here");
        assert!(!missing.exists(), "{command} created {}", missing.display());
    }
    // An existing file with another table name: the mistyped table is not created.
    let path = dir.path().join("app.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        session_sqlite::SqliteStore::open(&path).await.unwrap();
    });
    for command in ["stats", "gc"] {
        let url = format!("sqlite://{}?table=sesions", path.display());
        assert_fatal(&[command, &url], 3, "no session table here");
    }
    let connection = session_sqlite::rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = connection
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sesions'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
    if let Some(url) = session_test_support::server_url("SESSION_TEST_POSTGRES_URL") {
        let table = format!("mistyped_{}", &SessionId::generate().key().to_hex()[..12]);
        let url = format!("{url}?table={table}");
        assert_fatal(&["stats", &url], 3, "no session table here");
        let output = std::process::Command::new("psql")
            .args([
                session_test_support::server_url("SESSION_TEST_POSTGRES_URL")
                    .unwrap()
                    .as_str(),
                "-tAc",
                &format!("SELECT to_regclass('public.{table}') IS NULL"),
            ])
            .output();
        if let Ok(output) = output {
            assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "t");
        }
    }
}

#[test]
fn bench_prints_each_row_as_it_completes() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sessionctl"))
        .args([
            "bench",
            "memory://",
            "--op",
            "create",
            "--tasks",
            "1",
            "--payload",
            "64,128",
            "--ops",
            "1000000",
            "--duration",
            "1",
            "--format",
            "csv",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let header = lines.next().unwrap().unwrap();
    assert!(header.starts_with("op,tasks"), "{header}");
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("create,1,64,"), "{first}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first row arrived only when the program ended"
    );
    let second = lines.next().unwrap().unwrap();
    assert!(second.starts_with("create,1,128,"), "{second}");
    assert!(child.wait().unwrap().success());
}

const ARGS: [&str; 8] = [
    "--ops",
    "50",
    "--tasks",
    "1,4",
    "--payload",
    "64",
    "--duration",
    "2",
];

#[test]
fn bench_prints_a_well_formed_table() {
    let output = sessionctl(&[&["bench", "memory://"][..], &ARGS].concat());
    let out = stdout(&output);
    assert!(output.status.success(), "{out}{}", stderr(&output));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "store: memory://");
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "op", "tasks", "payload", "ops", "ops/s", "p50", "p99", "max"
        ]
    );
    // 6 ops x 2 task counts x 1 payload.
    assert_eq!(lines.len(), 2 + 12, "{out}");
    for (row, (op, tasks)) in lines[2..].iter().zip(
        ["create", "read", "update", "rotate", "touch", "delete"]
            .iter()
            .flat_map(|op| [(op, "1"), (op, "4")]),
    ) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells.len(), 8, "{row}");
        assert_eq!((cells[0], cells[1], cells[2]), (*op, tasks, "64"), "{row}");
        assert!(cells[3].parse::<u64>().unwrap() >= 1, "{row}");
        assert!(cells[4].parse::<f64>().unwrap() > 0.0, "{row}");
        for latency in &cells[5..] {
            assert!(
                latency.ends_with("ns") || latency.ends_with("µs") || latency.ends_with("ms"),
                "{row}"
            );
        }
    }
}

#[test]
fn bench_prints_csv_and_json_on_sqlite_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let url = format!("sqlite://{}", path.display());
    let output = sessionctl(&[&["bench", &url, "--format", "csv"][..], &ARGS].concat());
    let out = stdout(&output);
    assert!(output.status.success(), "{out}{}", stderr(&output));
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("op,tasks,payload,ops,ops_per_sec,p50_us,p99_us,max_us")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 12, "{out}");
    for row in &rows {
        assert_eq!(row.len(), 8, "{row:?}");
        assert!(row[3].parse::<u64>().unwrap() >= 1, "{row:?}");
        for number in &row[4..] {
            assert!(number.parse::<f64>().unwrap() >= 0.0, "{row:?}");
        }
        let (p50, p99, max): (f64, f64, f64) = (
            row[5].parse().unwrap(),
            row[6].parse().unwrap(),
            row[7].parse().unwrap(),
        );
        assert!(p50 <= p99 && p99 <= max, "{row:?}");
    }
    // The bench's namespace is gone: only the probe-free file remains, without tables.
    let connection = session_sqlite::rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = connection
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);

    let output = sessionctl(
        &[
            &["bench", "memory://", "--format", "json", "--op", "rotate"][..],
            &ARGS,
        ]
        .concat(),
    );
    assert!(output.status.success());
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(row["op"], "rotate");
        assert!(row["ops_per_sec"].as_f64().unwrap() > 0.0);
        // 50 operations split evenly over the tasks, rounded up.
        let tasks = row["tasks"].as_u64().unwrap();
        assert_eq!(row["ops"].as_u64(), Some(50u64.div_ceil(tasks) * tasks));
    }
}

#[test]
fn stats_and_gc_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = session_sqlite::SqliteStore::open(&path).await.unwrap();
        for _ in 0..3 {
            let outcome = store
                .create(
                    &SessionId::generate().key(),
                    later(3600),
                    Bytes::from_static(b"live"),
                )
                .await
                .unwrap();
            assert_eq!(outcome, CreateOutcome::Created);
        }
        let soon = OffsetDateTime::now_utc() + Duration::from_millis(50);
        for _ in 0..2 {
            let outcome = store
                .create(
                    &SessionId::generate().key(),
                    soon,
                    Bytes::from_static(b"dying"),
                )
                .await
                .unwrap();
            assert_eq!(outcome, CreateOutcome::Created);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    let url = format!("sqlite://{}", path.display());
    let output = sessionctl(&["stats", &url]);
    let out = stdout(&output);
    assert!(output.status.success(), "{out}{}", stderr(&output));
    assert!(out.contains("live     3\n"), "{out}");
    assert!(out.contains("expired  2\n"), "{out}");
    let output = sessionctl(&["gc", &url]);
    assert_eq!(stdout(&output), "deleted 2 expired sessions\n");
    let output = sessionctl(&["stats", &url]);
    assert!(stdout(&output).contains("expired  0\n"));
}

#[test]
fn check_runs_extra_histories_with_a_seed() {
    let output = sessionctl(&[
        "check",
        "memory://",
        "--only",
        "histories",
        "--histories",
        "20",
        "--seed",
        "77",
    ]);
    let out = stdout(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("20 histories from seed 77"), "{out}");
    assert!(out.contains("pass"), "{out}");
}

#[test]
fn no_output_holds_a_secret() {
    const SECRET: &str = "Hunter2SecretPw";
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let urls = [
        format!("postgres://app:{SECRET}@127.0.0.1:{port}/app"),
        format!("postgres://127.0.0.1:{port}/app?client_secret={SECRET}"),
        format!("redis://:{SECRET}@127.0.0.1:{port}"),
        format!("redis+unix:///nonexistent/redis.sock?pass={SECRET}"),
    ];
    for url in &urls {
        for args in [
            vec!["stats", url.as_str()],
            vec!["gc", url.as_str()],
            vec!["check", url.as_str(), "--only", "create_read"],
            vec!["bench", url.as_str(), "--tasks", "1", "--ops", "10"],
        ] {
            let output = sessionctl(&args);
            // 3 for a store that cannot be reached; 2 for a scheme this build does not take.
            assert!(
                matches!(output.status.code(), Some(2 | 3)),
                "{args:?}: {:?}",
                output.status
            );
            let (out, err) = (stdout(&output), stderr(&output));
            assert!(
                !out.contains(SECRET) && !err.contains(SECRET),
                "{args:?}:\n{out}\n{err}"
            );
            assert!(err.contains("sessionctl:"), "{args:?}: {err}");
        }
    }
}
