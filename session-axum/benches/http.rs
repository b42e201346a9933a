//! Requests/s of the example's counter route with no session layer, with the memory store and
//! with the SQLite store, in one run, served on 127.0.0.1 and driven by a keep-alive HTTP/1
//! client load. `BENCH_REQUESTS` (default 20000 per variant) and `BENCH_SECONDS` (default 10)
//! bound each variant.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use session_axum::{Session, SessionLayer};
use session_manager::SessionStore;

const CONNECTIONS: usize = 64;

async fn counter(session: Session) -> String {
    let n: u64 = session.get("n").await.unwrap().unwrap_or(0) + 1;
    session.insert("n", n).await.unwrap();
    n.to_string()
}

static PLAIN: AtomicU64 = AtomicU64::new(0);

async fn plain_counter() -> String {
    (PLAIN.fetch_add(1, Ordering::Relaxed) + 1).to_string()
}

async fn start(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn with_store(store: Arc<dyn SessionStore>) -> Router {
    Router::new()
        .route("/counter", get(counter))
        .layer(SessionLayer::new(store).with_secure(false))
}

/// Drives `url` with `CONNECTIONS` clients (one keep-alive connection and one session each)
/// for `requests` requests in all or `limit`, whichever first. Returns (requests, elapsed).
async fn drive(url: String, requests: usize, limit: Duration) -> (u64, Duration) {
    let per_client = requests.div_ceil(CONNECTIONS);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .cookie_store(true)
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                let mut done = 0u64;
                for _ in 0..per_client {
                    if started.elapsed() > limit {
                        break;
                    }
                    let response = client.get(&url).send().await.unwrap();
                    assert!(response.status().is_success());
                    response.bytes().await.unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    (total, started.elapsed())
}

fn main() {
    let requests = session_bench::ops_from_env(20_000);
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let runtime = session_bench::runtime();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = session_any::connect(&format!(
            "sqlite://{}",
            dir.path().join("bench.sqlite").display()
        ))
        .await
        .unwrap();
        let variants: Vec<(&str, String)> = vec![
            (
                "no session layer",
                start(Router::new().route("/counter", get(plain_counter))).await,
            ),
            (
                "memory store",
                start(with_store(session_any::connect("memory://").await.unwrap())).await,
            ),
            ("sqlite store", start(with_store(sqlite)).await),
        ];
        // Warm-up: a short pass on each.
        for (_, base) in &variants {
            drive(format!("{base}/counter"), 2_000, Duration::from_secs(2)).await;
        }
        println!("| route /counter | connections | requests | req/s | vs no layer |");
        println!("|---|---:|---:|---:|---:|");
        let mut baseline = None;
        for (name, base) in &variants {
            let (done, elapsed) = drive(
                format!("{base}/counter"),
                requests,
                Duration::from_secs(seconds),
            )
            .await;
            let rate = done as f64 / elapsed.as_secs_f64();
            let base_rate = *baseline.get_or_insert(rate);
            println!(
                "| {name} | {CONNECTIONS} | {done} | {rate:.0} | {:.2}x |",
                rate / base_rate
            );
        }
    });
}
