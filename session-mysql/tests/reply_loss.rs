//! Honest outcomes when a reply or a request is lost (a loopback proxy that runs the request and
//! swallows its answer, or swallows the request, cutting the connection either way): every
//! write answers its true outcome or a transient error, never `IdTaken`, `Conflict`,
//! `NotFound` or `false` for a write that landed (`session_test_support::proxy::every_write`).

use std::time::Duration;

use session_core::{BackendConfig, StoreAdmin};
use session_mysql::MysqlConfig;
use session_test_support::proxy::{Fault, FaultProxy, every_write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_honest_when_replies_or_requests_are_lost() {
    let Some(url) = session_test_support::server_url(session_test_support::MYSQL) else {
        return;
    };
    let mut via = url::Url::parse(&url).unwrap();
    let target = format!(
        "{}:{}",
        via.host_str().unwrap_or("127.0.0.1"),
        via.port().unwrap_or(3306)
    );
    let proxy = FaultProxy::start(target).await.unwrap();
    via.set_host(Some("127.0.0.1")).unwrap();
    via.set_port(Some(proxy.port())).unwrap();
    let store = MysqlConfig::from_url(via.as_str())
        .unwrap()
        .isolated(&conformance_tests::fresh_namespace())
        .unwrap()
        .operation_timeout(Duration::from_secs(3))
        .acquire_timeout(Duration::from_secs(3))
        .open()
        .await
        .unwrap();
    for fault in [Fault::Reply, Fault::Request] {
        every_write(&store, &proxy, fault).await;
    }
    store.drop_namespace().await.unwrap();
}
