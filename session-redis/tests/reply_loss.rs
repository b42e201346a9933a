//! Honest outcomes when a reply or a request is lost (a loopback proxy that runs the request and
//! swallows its answer, or swallows the request): every write answers its true outcome or a
//! transient error, never `IdTaken`, `Conflict`, `NotFound` or `false` for a write that landed,
//! and the store keeps working afterwards. On a single Redis server (`SESSION_TEST_REDIS_URL`)
//! and on a one-node Redis Cluster of the test's own that announces the proxy's port (so every
//! connection of the cluster client goes through it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use session_core::{BackendConfig, SessionStore};
use session_redis::{RedisConfig, RedisStore};
use session_test_support::proxy::{Fault, FaultProxy, every_write};

/// The single server's store through a proxy, or `None` (loudly) without a server.
async fn single() -> Option<(RedisStore, FaultProxy)> {
    let url = session_test_support::server_url(session_test_support::REDIS)?;
    let parsed = url::Url::parse(&url).unwrap();
    let target = format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(6379)
    );
    let proxy = FaultProxy::start(target).await.unwrap();
    let mut via = parsed.clone();
    via.set_host(Some("127.0.0.1")).unwrap();
    via.set_port(Some(proxy.port())).unwrap();
    let config = RedisConfig::from_url(via.as_str())
        .unwrap()
        .key_prefix(format!("{}:", conformance_tests::fresh_namespace()))
        .response_timeout(Duration::from_secs(2));
    Some((RedisStore::connect(config).await.unwrap(), proxy))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_server_writes_are_honest_when_replies_or_requests_are_lost() {
    let Some((store, proxy)) = single().await else {
        return;
    };
    for fault in [Fault::Reply, Fault::Request] {
        every_write(&store, &proxy, fault).await;
    }
    store.clear().await.unwrap();
}

/// A one-node Redis Cluster announcing the proxy's port; stopped on drop.
struct OneNodeCluster {
    child: Child,
    dir: PathBuf,
}

impl Drop for OneNodeCluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 50_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A one-node cluster behind a proxy, or `None` (loudly; a failure under CI) without
/// `redis-server`.
async fn cluster() -> Option<(RedisStore, FaultProxy, OneNodeCluster)> {
    if Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        assert!(
            !session_test_support::servers_required(),
            "redis-server is not installed"
        );
        eprintln!("SKIPPED: redis-server is not installed");
        return None;
    }
    let port = free_port();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = FaultProxy::on(listener, format!("127.0.0.1:{port}"));
    let dir = std::env::temp_dir().join(format!("reply-loss-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes", "--cluster-config-file"])
        .arg(dir.join("nodes.conf"))
        .args(["--cluster-announce-ip", "127.0.0.1"])
        .args(["--cluster-announce-port", &proxy.port().to_string()])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let node = OneNodeCluster { child, dir };
    let started = Instant::now();
    while !cli(port, &["PING"]).contains("PONG") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "redis-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cli(port, &["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
    while !cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the cluster did not form"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = RedisConfig::from_url(&format!("redis+cluster://127.0.0.1:{}", proxy.port()))
        .unwrap()
        .key_prefix("reply_loss:")
        .response_timeout(Duration::from_secs(2));
    let store = RedisStore::connect(config).await.unwrap();
    Some((store, proxy, node))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_writes_are_honest_when_replies_or_requests_are_lost() {
    let Some((store, proxy, _node)) = cluster().await else {
        return;
    };
    for fault in [Fault::Reply, Fault::Request] {
        every_write(&store, &proxy, fault).await;
    }
}
