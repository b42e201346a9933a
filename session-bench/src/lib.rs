#![doc = include_str!("../README.md")]

use session_core::SessionStoreExt as _;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use session_core::time::{Duration as TimeDuration, OffsetDateTime};
use session_core::{
    Bytes, CreateOutcome, Result, SessionId, SessionKey, SessionStore, UpdateOutcome,
};

/// One operation to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `create` of a fresh key.
    Create,
    /// `read` of a live key.
    Read,
    /// `update` in place with the right version.
    Update,
    /// `update` to a fresh key (id rotation).
    Rotate,
    /// `touch` of a live key.
    Touch,
    /// `delete` of a live key.
    Delete,
}

impl Op {
    /// Every operation, in table order.
    pub const ALL: [Op; 6] = [
        Op::Create,
        Op::Read,
        Op::Update,
        Op::Rotate,
        Op::Touch,
        Op::Delete,
    ];

    /// The operation's lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Read => "read",
            Op::Update => "update",
            Op::Rotate => "rotate",
            Op::Touch => "touch",
            Op::Delete => "delete",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// What to run: one operation, a number of tasks, a payload size, bounds.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// The operation.
    pub op: Op,
    /// Concurrent tasks.
    pub tasks: usize,
    /// Bytes of session data.
    pub payload: usize,
    /// Operations in all (split over the tasks).
    pub ops: usize,
    /// Stop early after this long.
    pub max_duration: Duration,
}

/// The measurement of one workload.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Operations completed.
    pub ops: u64,
    /// Wall time of the timed phase.
    pub elapsed: Duration,
    /// Latencies in nanoseconds.
    pub latency: Histogram<u64>,
}

impl Stats {
    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q` (0..=1).
    pub fn quantile(&self, q: f64) -> Duration {
        Duration::from_nanos(self.latency.value_at_quantile(q))
    }

    /// The largest latency seen.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.latency.max())
    }
}

/// Latencies from 1 ns to 60 s at 3 significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

fn far_expiry() -> OffsetDateTime {
    OffsetDateTime::now_utc() + TimeDuration::hours(1)
}

fn unexpected(what: &str) -> session_core::Error {
    session_core::Error::new(
        session_core::ErrorKind::Backend,
        format!("benchmark: unexpected outcome of {what}"),
    )
}

/// Runs `workload` against `store` and measures it. Keys needed beforehand (for everything but
/// `create`) are written first, untimed; the keys written are deleted afterwards, untimed.
pub async fn run(store: Arc<dyn SessionStore>, workload: Workload) -> Result<Stats> {
    let tasks = workload.tasks.max(1);
    let per_task = workload.ops.div_ceil(tasks).max(1);
    let payload = Bytes::from(vec![0xa5u8; workload.payload]);
    let expires_at = far_expiry();

    let mut handles = Vec::with_capacity(tasks);
    let start = Arc::new(tokio::sync::Barrier::new(tasks + 1));
    for _ in 0..tasks {
        let store = Arc::clone(&store);
        let payload = payload.clone();
        let start = Arc::clone(&start);
        handles.push(tokio::spawn(async move {
            let mut keys: Vec<SessionKey> =
                (0..per_task).map(|_| SessionId::generate().key()).collect();
            if workload.op != Op::Create {
                for key in &keys {
                    if store.create(key, expires_at, payload.clone()).await?
                        != CreateOutcome::Created
                    {
                        return Err(unexpected("create"));
                    }
                }
            }
            let fresh: Vec<SessionKey> = if workload.op == Op::Rotate {
                // A target the store can rotate each key to (a partitioned store keeps a
                // rotation within one partition), drawn before the clock starts.
                keys.iter()
                    .map(|key| {
                        loop {
                            let candidate = SessionId::generate().key();
                            if store.can_rotate_between(key, &candidate) {
                                break candidate;
                            }
                        }
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let mut histogram = new_histogram();
            start.wait().await;
            let began = Instant::now();
            let mut done = 0u64;
            for i in 0..per_task {
                if began.elapsed() > workload.max_duration {
                    break;
                }
                let key = &keys[i];
                let t = Instant::now();
                match workload.op {
                    Op::Create => {
                        if store.create(key, expires_at, payload.clone()).await?
                            != CreateOutcome::Created
                        {
                            return Err(unexpected("create"));
                        }
                    }
                    Op::Read => {
                        if store.read(key).await?.is_none() {
                            return Err(unexpected("read"));
                        }
                    }
                    Op::Update => {
                        if store
                            .update(key, key, 1, expires_at, payload.clone())
                            .await?
                            != (UpdateOutcome::Updated { version: 2 })
                        {
                            return Err(unexpected("update"));
                        }
                    }
                    Op::Rotate => {
                        if store
                            .update(&fresh[i], key, 1, expires_at, payload.clone())
                            .await?
                            != (UpdateOutcome::Updated { version: 2 })
                        {
                            return Err(unexpected("rotate"));
                        }
                    }
                    Op::Touch => {
                        if !store.touch(key, expires_at).await? {
                            return Err(unexpected("touch"));
                        }
                    }
                    Op::Delete => store.delete(key).await?,
                }
                histogram.saturating_record(t.elapsed().as_nanos() as u64);
                done += 1;
            }
            let ended = Instant::now();
            if workload.op == Op::Rotate {
                keys.extend(fresh);
            }
            for key in &keys {
                store.delete(key).await?;
            }
            Ok::<_, session_core::Error>((done, began, ended, histogram))
        }));
    }
    start.wait().await;
    let mut stats = Stats {
        ops: 0,
        elapsed: Duration::ZERO,
        latency: new_histogram(),
    };
    // Wall time from the first task's start to the last task's end: tasks that never yield run
    // one after another on the runtime's threads, so per-task times would overstate throughput.
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    for handle in handles {
        let (done, began, ended, histogram) = handle.await.expect("benchmark task panicked")?;
        stats.ops += done;
        first = Some(first.map_or(began, |f| f.min(began)));
        last = Some(last.map_or(ended, |l| l.max(ended)));
        stats.latency.add(histogram).expect("same bounds");
    }
    if let (Some(first), Some(last)) = (first, last) {
        stats.elapsed = last - first;
    }
    Ok(stats)
}

/// Repeats per cell of [`compare`]: `BENCH_REPEATS` or 1.
pub fn repeats_from_env() -> usize {
    std::env::var("BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// Operations per benchmark cell: `BENCH_OPS` from the environment, else `default`.
pub fn ops_from_env(default: usize) -> usize {
    std::env::var("BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The multi-threaded runtime the benchmark programs run on (one worker per core).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Formats a duration compactly: `850ns`, `12.3µs`, `4.56ms`.
pub fn short(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos < 1_000 {
        format!("{nanos}ns")
    } else if nanos < 1_000_000 {
        format!("{:.1}µs", nanos as f64 / 1e3)
    } else {
        format!("{:.2}ms", nanos as f64 / 1e6)
    }
}

/// A row of a comparison table: one workload, one store, and its ratio to the baseline.
#[derive(Debug, Clone)]
pub struct Row {
    /// The workload.
    pub workload: Workload,
    /// The store's name.
    pub store: String,
    /// The measurement.
    pub stats: Stats,
    /// This store's ops/s divided by the baseline's, if there is one.
    pub ratio: Option<f64>,
}

/// Prints rows as a Markdown table.
pub fn print_markdown(rows: &[Row], baseline: &str) {
    println!("| op | tasks | payload | store | ops/s | p50 | p99 | max | vs {baseline} |");
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} |",
            row.workload.op,
            row.workload.tasks,
            row.workload.payload,
            row.store,
            row.stats.ops_per_sec(),
            short(row.stats.quantile(0.5)),
            short(row.stats.quantile(0.99)),
            short(row.stats.max()),
            row.ratio
                .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}x")),
        );
    }
}

/// Measures every store on every (op, tasks, payload) cell, stores interleaved within a cell so
/// they share the machine's conditions, and returns the rows with ratios to `baseline` (the name
/// of one of the stores). With `BENCH_REPEATS=N` (default 1) each store runs N times per cell,
/// alternating the order, and its median run is reported.
pub async fn compare(
    stores: &[(&str, Arc<dyn SessionStore>)],
    baseline: &str,
    ops: &[Op],
    tasks: &[usize],
    payloads: &[usize],
    ops_per_cell: usize,
    max_duration: Duration,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &op in ops {
        for &payload in payloads {
            for &task_count in tasks {
                let workload = Workload {
                    op,
                    tasks: task_count,
                    payload,
                    ops: ops_per_cell,
                    max_duration,
                };
                // Each store runs `repeats` times, the order alternating between repeats, and
                // keeps its median run (single runs on small VMs are bimodal).
                let repeats = repeats_from_env();
                let mut runs: Vec<Vec<Stats>> = vec![Vec::new(); stores.len()];
                for repeat in 0..repeats {
                    let order: Vec<usize> = if repeat % 2 == 0 {
                        (0..stores.len()).collect()
                    } else {
                        (0..stores.len()).rev().collect()
                    };
                    for i in order {
                        let store = &stores[i].1;
                        // An untimed quarter-size pass first: whichever store ran first in a
                        // cell would otherwise pay for the allocator's first touch of fresh
                        // memory.
                        let warmup = Workload {
                            ops: (ops_per_cell / 4).max(1),
                            ..workload
                        };
                        run(Arc::clone(store), warmup).await?;
                        runs[i].push(run(Arc::clone(store), workload).await?);
                    }
                }
                let mut cell = Vec::new();
                for ((name, _), mut store_runs) in stores.iter().zip(runs) {
                    store_runs.sort_by(|a, b| a.ops_per_sec().total_cmp(&b.ops_per_sec()));
                    let stats = store_runs.swap_remove(store_runs.len() / 2);
                    cell.push(Row {
                        workload,
                        store: (*name).to_owned(),
                        stats,
                        ratio: None,
                    });
                }
                let base = cell
                    .iter()
                    .find(|r| r.store == baseline)
                    .map(|r| r.stats.ops_per_sec());
                for row in &mut cell {
                    row.ratio = base.map(|b| row.stats.ops_per_sec() / b);
                }
                rows.extend(cell);
            }
        }
    }
    Ok(rows)
}
