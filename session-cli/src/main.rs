#![doc = include_str!("../README.md")]

use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use conformance_tests::behaviours::{HistoryOptions, check_histories};
use conformance_tests::{Behaviour, CheckResult, Family};
use futures::{FutureExt, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use session_any::testing::{UrlFactory, fresh_namespace};
use session_any::{AnyStore, StoreAdmin, StoreConfig};
use session_bench::{Op, Workload};
use session_manager::testing::FRONT_CHECKS;
use session_manager::{Error, SessionId, SessionStore};

/// Check, benchmark and inspect session stores.
#[derive(Debug, Parser)]
#[command(
    name = "sessionctl",
    version,
    about,
    after_help = "Exit status: 0 success; 1 a behaviour failed (check); 2 usage error (flags, malformed URL, unknown scheme or option); 3 the store cannot be used (unreachable, access refused, no session table there, or an error during the work)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every conformance behaviour against a store, each in a fresh namespace (a new table or
    /// key prefix, removed afterwards): existing sessions are never touched.
    Check {
        /// Store URL (memory://, sqlite://path, postgres://…, redis://…). Default: an embedded
        /// SQLite file in a temporary directory.
        url: Option<String>,
        /// Only behaviours whose name contains this text.
        #[arg(long)]
        only: Option<String>,
        /// Behaviours run at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
        /// Also run this many random concurrent histories and check each for linearizability
        /// (beyond the fixed-seed ones of `histories_are_linearizable`).
        #[arg(long, default_value_t = 0)]
        histories: u32,
        /// Seed of the first extra history (history i uses seed + i). Default: from the clock;
        /// the seed is printed, and a failure names the seed of the failing history.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Measure create/read/update/rotate/touch/delete throughput and latency, in a fresh
    /// namespace removed afterwards.
    Bench {
        /// Store URL. Default: an embedded SQLite file in a temporary directory.
        url: Option<String>,
        /// Concurrent tasks, one measurement per value.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        tasks: Vec<usize>,
        /// Session data sizes in bytes, one measurement per value.
        #[arg(long, value_delimiter = ',', default_value = "200,4096")]
        payload: Vec<usize>,
        /// Operations per measurement.
        #[arg(long, default_value_t = 5000)]
        ops: usize,
        /// Longest time per measurement, in seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Operations to measure.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "create,read,update,rotate,touch,delete"
        )]
        op: Vec<BenchOp>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Live and expired sessions of a store.
    Stats {
        /// Store URL.
        url: String,
    },
    /// Purge expired sessions (`delete_expired`) and print how many went.
    Gc {
        /// Store URL.
        url: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BenchOp {
    Create,
    Read,
    Update,
    Rotate,
    Touch,
    Delete,
}

impl From<BenchOp> for Op {
    fn from(op: BenchOp) -> Self {
        match op {
            BenchOp::Create => Op::Create,
            BenchOp::Read => Op::Read,
            BenchOp::Update => Op::Update,
            BenchOp::Rotate => Op::Rotate,
            BenchOp::Touch => Op::Touch,
            BenchOp::Delete => Op::Delete,
        }
    }
}

/// Exit status when a behaviour of `check` failed.
const EXIT_FAILED: u8 = 1;
/// Exit status of a usage error: bad flags, a malformed URL, an unknown scheme.
const EXIT_USAGE: u8 = 2;
/// Exit status when the store cannot be used: unreachable, refused (credentials, privileges),
/// no session table there, or an error during the work.
const EXIT_STORE: u8 = 3;

/// What ends the program early: a one-line error and its exit status.
enum Fatal {
    /// The command line is wrong (exit 2).
    Usage(String),
    /// The store cannot be used (exit 3).
    Store(String),
}

impl From<Error> for Fatal {
    fn from(error: Error) -> Self {
        Self::Store(error.to_string())
    }
}

/// A usage error (exit 2) from an error of reading the URL or options.
fn usage(error: Error) -> Fatal {
    Fatal::Usage(error.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sessionctl: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Check {
                url,
                only,
                jobs,
                histories,
                seed,
            } => check(url, only, jobs.into(), histories, seed).await,
            Command::Bench {
                url,
                tasks,
                payload,
                ops,
                duration,
                op,
                format,
            } => {
                let settings = BenchSettings {
                    tasks,
                    payloads: payload,
                    ops,
                    duration,
                    ops_to_run: op.into_iter().map(Op::from).collect(),
                    format,
                };
                bench(url, settings).await
            }
            Command::Stats { url } => stats(&url).await,
            Command::Gc { url } => gc(&url).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(Fatal::Usage(message)) => {
            eprintln!("sessionctl: {message}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Fatal::Store(message)) => {
            eprintln!("sessionctl: {message}");
            ExitCode::from(EXIT_STORE)
        }
    }
}

/// The factory for `url`, or for a temporary SQLite file; checks that the store is reachable
/// and usable (creates and removes a namespace) before anything else runs.
/// The factory for `url`, how to show the store, and whether it keeps an owner index.
async fn factory_for(url: Option<String>) -> Result<(UrlFactory, String, bool), Fatal> {
    let url = url.unwrap_or_else(|| "sqlite::memory:".to_owned());
    let factory = UrlFactory::new(&url).map_err(usage)?;
    // Said before the attempt: an unreachable server can take the whole connect timeout.
    eprintln!(
        "sessionctl: connecting to {}",
        session_manager::redact_url(&url)
    );
    let probe = async {
        let store = factory.open(&fresh_namespace()).await?;
        store.read(&SessionId::generate().key()).await?;
        let owners = store.capabilities().owner_index;
        factory.remove_namespaces().await?;
        Ok::<_, session_manager::Error>(owners)
    };
    let owners = match probe.await {
        Ok(owners) => owners,
        Err(error) => {
            let _ = factory.remove_namespaces().await;
            return Err(Fatal::Store(format!(
                "cannot use the store at {}: {error}",
                session_manager::redact_url(&url)
            )));
        }
    };
    let shown = if url == "sqlite::memory:" {
        "sqlite (temporary file)".to_owned()
    } else {
        session_manager::redact_url(&url).into_owned()
    };
    Ok((factory, shown, owners))
}

fn progress(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {elapsed} {wide_msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked".to_owned()
    }
}

/// One item of a check run: a behaviour of the suite, or the extra histories.
#[derive(Clone, Copy)]
enum Item {
    Behaviour(Behaviour),
    Histories(HistoryOptions),
}

impl Item {
    fn name(&self) -> String {
        match self {
            Item::Behaviour(b) => b.name.to_owned(),
            Item::Histories(o) => format!("{} histories from seed {}", o.histories, o.seed),
        }
    }

    fn family(&self) -> Family {
        match self {
            Item::Behaviour(b) => b.family,
            Item::Histories(_) => Family::Store,
        }
    }

    async fn run(self, factory: &UrlFactory) -> (CheckResult, Duration) {
        match self {
            Item::Behaviour(b) => match b.check(factory).await {
                // A check of an ability this store lacks: nothing to hold it to.
                (Err(failure), took) if failure.is_not_applicable() => (Ok(()), took),
                outcome => outcome,
            },
            Item::Histories(options) => {
                let started = Instant::now();
                (check_histories(factory, options).await, started.elapsed())
            }
        }
    }
}

async fn check(
    url: Option<String>,
    only: Option<String>,
    jobs: usize,
    histories: u32,
    seed: Option<u64>,
) -> Result<ExitCode, Fatal> {
    let (factory, shown, owners) = factory_for(url).await?;
    let mut selected: Vec<Item> = conformance_tests::behaviours()
        .into_iter()
        .chain(FRONT_CHECKS.iter().copied())
        .filter(|b| owners || b.family != Family::Owner)
        .filter(|b| only.as_deref().is_none_or(|text| b.name.contains(text)))
        .map(Item::Behaviour)
        .collect();
    if histories > 0 {
        let seed = seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
        selected.push(Item::Histories(HistoryOptions {
            histories,
            seed,
            ..HistoryOptions::default()
        }));
    }
    if selected.is_empty() {
        return Err(Fatal::Usage(format!(
            "no behaviour's name contains {:?}",
            only.unwrap_or_default()
        )));
    }
    // A misbehaving store may make a behaviour panic: that is its failure, reported in the
    // table, not a crash of the program.
    std::panic::set_hook(Box::new(|_| {}));
    let bar = progress(selected.len());
    bar.set_message(format!("checking {shown}"));
    let started = Instant::now();
    let factory = &factory;
    let bar_ref = &bar;
    let results: Vec<(Item, Result<(), String>, Duration)> =
        futures::stream::iter(selected.iter().copied())
            .map(|item| async move {
                bar_ref.set_message(format!("running {}", item.name()));
                let own = factory.fresh();
                let run = AssertUnwindSafe(item.run(&own)).catch_unwind();
                let outcome = run.await;
                if let Err(error) = own.remove_namespaces().await {
                    bar_ref.suspend(|| {
                        eprintln!(
                            "sessionctl: warning: could not remove a check namespace: {error}"
                        );
                    });
                }
                let (result, took) = match outcome {
                    Ok((result, took)) => (result.map_err(|f| f.to_string()), took),
                    Err(payload) => (
                        Err(format!("panicked: {}", panic_message(payload.as_ref()))),
                        Duration::ZERO,
                    ),
                };
                bar_ref.inc(1);
                (item, result, took)
            })
            .buffered(jobs)
            .collect()
            .await;
    bar.finish_and_clear();
    let _ = std::panic::take_hook();

    let width = results
        .iter()
        .map(|(item, ..)| item.name().len())
        .max()
        .unwrap_or(9);
    let mut out = String::new();
    for family in [Family::Store, Family::Front, Family::Owner] {
        let title = match family {
            Family::Store => "store contract",
            Family::Front => "front checks (the SessionManager over this store)",
            Family::Owner => "owner index (sessions of an owner, revoke_owner)",
        };
        if family == Family::Owner && !owners {
            let _ = writeln!(out, "{title}: this store keeps no owner index\n");
            continue;
        }
        let _ = writeln!(out, "{title}");
        let _ = writeln!(
            out,
            "{:<width$}  {:<6}  {:>9}",
            "behaviour", "result", "time"
        );
        let _ = writeln!(out, "{}", "-".repeat(width + 19));
        for (item, result, took) in results.iter().filter(|(i, ..)| i.family() == family) {
            let verdict = if result.is_ok() { "pass" } else { "FAIL" };
            let _ = writeln!(
                out,
                "{:<width$}  {verdict:<6}  {:>9}",
                item.name(),
                session_bench::short(*took)
            );
        }
        let _ = writeln!(out);
    }
    let failed: Vec<_> = results.iter().filter(|(_, r, _)| r.is_err()).collect();
    for (item, result, _) in &failed {
        if let Err(message) = result {
            let _ = writeln!(out, "FAILED {}: {message}\n", item.name());
        }
    }
    let count = |family: Family, passed: bool| {
        results
            .iter()
            .filter(|(i, r, _)| i.family() == family && r.is_ok() == passed)
            .count()
    };
    let _ = writeln!(
        out,
        "store contract: {} passed, {} failed; front checks: {} passed, {} failed; owner index: {} passed, {} failed; {:.1}s against {shown}",
        count(Family::Store, true),
        count(Family::Store, false),
        count(Family::Front, true),
        count(Family::Front, false),
        count(Family::Owner, true),
        count(Family::Owner, false),
        started.elapsed().as_secs_f64()
    );
    print!("{out}");
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

struct BenchSettings {
    tasks: Vec<usize>,
    payloads: Vec<usize>,
    ops: usize,
    duration: f64,
    ops_to_run: Vec<Op>,
    format: Format,
}

/// One measurement, as printed.
#[derive(Debug, Serialize)]
struct BenchRow {
    op: &'static str,
    tasks: usize,
    payload: usize,
    ops: u64,
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

async fn bench(url: Option<String>, settings: BenchSettings) -> Result<ExitCode, Fatal> {
    if !(settings.duration.is_finite() && settings.duration > 0.0 && settings.duration <= 3600.0) {
        return Err(Fatal::Usage(
            "--duration must be a number of seconds between 0 and 3600".into(),
        ));
    }
    if settings.ops == 0 || settings.ops > 10_000_000 {
        return Err(Fatal::Usage("--ops must be between 1 and 10000000".into()));
    }
    if settings.tasks.iter().any(|&t| t == 0 || t > 4096) {
        return Err(Fatal::Usage(
            "--tasks values must be between 1 and 4096".into(),
        ));
    }
    if settings.payloads.iter().any(|&p| p > 1 << 20) {
        return Err(Fatal::Usage(
            "--payload values must be at most 1048576 bytes (the default size limit)".into(),
        ));
    }
    let (factory, shown, _) = factory_for(url).await?;
    let store: Arc<dyn SessionStore> = factory.open(&fresh_namespace()).await?;
    let max_duration = Duration::from_secs_f64(settings.duration);
    let mut cells = Vec::new();
    for &op in &settings.ops_to_run {
        for &payload in &settings.payloads {
            for &tasks in &settings.tasks {
                cells.push(Workload {
                    op,
                    tasks,
                    payload,
                    ops: settings.ops,
                    max_duration,
                });
            }
        }
    }
    let bar = progress(cells.len());
    let mut rows = Vec::with_capacity(cells.len());
    let mut failure = None;
    // Tables and CSV are printed row by row as each measurement completes (also when stdout is
    // a pipe); JSON, one array, at the end.
    emit(&bar, &header(settings.format, &shown));
    for workload in cells {
        bar.set_message(format!(
            "{} x{} {}B on {shown}",
            workload.op, workload.tasks, workload.payload
        ));
        match session_bench::run(Arc::clone(&store), workload).await {
            Ok(stats) => {
                let row = BenchRow {
                    op: workload.op.name(),
                    tasks: workload.tasks,
                    payload: workload.payload,
                    ops: stats.ops,
                    ops_per_sec: stats.ops_per_sec().round(),
                    p50_us: micros(stats.quantile(0.5)),
                    p99_us: micros(stats.quantile(0.99)),
                    max_us: micros(stats.max()),
                };
                emit(&bar, &line(&row, settings.format));
                rows.push(row);
            }
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    drop(store);
    let cleanup = factory.remove_namespaces().await;
    if let Some(error) = failure {
        return Err(Fatal::Store(format!("benchmark failed: {error}")));
    }
    cleanup?;
    if settings.format == Format::Json {
        let mut out = serde_json::to_string_pretty(&rows).expect("rows serialize");
        out.push('\n');
        emit(&bar, &out);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints `text` to stdout at once (flushed), above the progress bar.
fn emit(bar: &ProgressBar, text: &str) {
    use std::io::Write as _;
    if text.is_empty() {
        return;
    }
    bar.suspend(|| {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    });
}

/// What comes before the rows.
fn header(format: Format, shown: &str) -> String {
    match format {
        Format::Table => format!(
            "store: {shown}\n{:<7} {:>5} {:>7} {:>8} {:>10} {:>9} {:>9} {:>9}\n",
            "op", "tasks", "payload", "ops", "ops/s", "p50", "p99", "max"
        ),
        Format::Csv => "op,tasks,payload,ops,ops_per_sec,p50_us,p99_us,max_us\n".to_owned(),
        Format::Json => String::new(),
    }
}

/// One row as printed (nothing for JSON, printed whole at the end).
fn line(row: &BenchRow, format: Format) -> String {
    match format {
        Format::Table => format!(
            "{:<7} {:>5} {:>7} {:>8} {:>10.0} {:>9} {:>9} {:>9}\n",
            row.op,
            row.tasks,
            row.payload,
            row.ops,
            row.ops_per_sec,
            short_us(row.p50_us),
            short_us(row.p99_us),
            short_us(row.max_us),
        ),
        Format::Csv => format!(
            "{},{},{},{},{},{},{},{}\n",
            row.op,
            row.tasks,
            row.payload,
            row.ops,
            row.ops_per_sec,
            row.p50_us,
            row.p99_us,
            row.max_us
        ),
        Format::Json => String::new(),
    }
}

fn micros(d: Duration) -> f64 {
    (d.as_nanos() as f64 / 100.0).round() / 10.0
}

fn short_us(us: f64) -> String {
    session_bench::short(Duration::from_nanos((us * 1000.0) as u64))
}

/// Opens `url` for an operator command; a store private to its instance (in-process memory)
/// is refused: there is nothing of an application's to see from here.
async fn open_for_operator(url: &str) -> Result<AnyStore, Fatal> {
    let config: StoreConfig = url.parse().map_err(usage)?;
    eprintln!(
        "sessionctl: connecting to {}",
        session_manager::redact_url(url)
    );
    // Never creates anything: a mistyped path or table must not become an empty store.
    let store = AnyStore::open_existing(&config).await.map_err(|error| {
        let message = error.to_string();
        let what = if message.contains("migrate=false") || message.contains("without creating") {
            "no session table here"
        } else {
            "cannot open the store"
        };
        Fatal::Store(format!(
            "{what} at {}: {error}",
            session_manager::redact_url(url)
        ))
    })?;
    if !store.capabilities().shared {
        return Err(Fatal::Usage(format!(
            "a {}:// store lives inside one application process; sessionctl cannot see it",
            store.backend()
        )));
    }
    Ok(store)
}

async fn stats(url: &str) -> Result<ExitCode, Fatal> {
    let store = open_for_operator(url).await?;
    let counts = store.counts().await?;
    println!("store    {}", session_manager::redact_url(url));
    println!("live     {}", counts.live);
    match counts.expired {
        Some(expired) => println!("expired  {expired}"),
        None => println!(
            "expired  - ({} drops expired sessions itself)",
            store.backend()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

async fn gc(url: &str) -> Result<ExitCode, Fatal> {
    let store = open_for_operator(url).await?;
    let deleted = store.delete_expired().await?;
    if store.capabilities().expires_by_itself {
        println!(
            "deleted {deleted} expired sessions ({} drops expired sessions itself)",
            store.backend()
        );
    } else {
        println!("deleted {deleted} expired sessions");
    }
    Ok(ExitCode::SUCCESS)
}
