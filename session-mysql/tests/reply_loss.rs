//! Honest outcomes when a reply or a request is lost, and every operation inside its deadline
//! when the server freezes. When a reply or a request is lost (a loopback proxy that runs the request and
//! swallows its answer, or swallows the request, cutting the connection either way): every
//! write answers its true outcome or a transient error, never `IdTaken`, `Conflict`,
//! `NotFound` or `false` for a write that landed (`session_test_support::proxy::every_write`).

use std::sync::Arc;
use std::time::Duration;

use session_core::{BackendConfig, StoreAdmin};
use session_manager::SessionManager;
use session_mysql::MysqlConfig;
use session_test_support::proxy::{Fault, FaultProxy, every_operation_within, every_write};

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

/// Under a frozen server every operation answers within its deadline plus a tenth (plus
/// scheduling slack), the manager's re-read and the reachability probe included: with a pool
/// that holds connections, and with one that never connected (the probe runs beside the work).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_within_its_deadline_under_a_frozen_server() {
    let Some(url) = session_test_support::server_url(session_test_support::MYSQL) else {
        return;
    };
    let deadline = Duration::from_millis(500);
    let slack = Duration::from_millis(250);
    for lazy in [false, true] {
        let mut via = url::Url::parse(&url).unwrap();
        let target = format!(
            "{}:{}",
            via.host_str().unwrap_or("127.0.0.1"),
            via.port().unwrap_or(3306)
        );
        let proxy = FaultProxy::start(target).await.unwrap();
        via.set_host(Some("127.0.0.1")).unwrap();
        via.set_port(Some(proxy.port())).unwrap();
        let config = MysqlConfig::from_url(via.as_str())
            .unwrap()
            .isolated(&conformance_tests::fresh_namespace())
            .unwrap()
            .operation_timeout(deadline)
            .acquire_timeout(deadline)
            .lazy(lazy);
        if lazy {
            // Never connected: every connection attempt hangs from the start.
            proxy.freeze(true);
        }
        let store = Arc::new(config.open().await.unwrap());
        let mut state = None;
        if !lazy {
            let manager = SessionManager::new(Arc::clone(&store));
            state = Some((manager.create(&b"v1"[..]).await.unwrap(), manager));
        }
        let for_save = Arc::clone(&store);
        every_operation_within(&*store, &proxy, deadline, slack, || async move {
            match state {
                Some((mut state, manager)) => {
                    state.set_data(&b"v2"[..]);
                    manager.save(&mut state).await
                }
                None => SessionManager::new(for_save)
                    .create(&b"v1"[..])
                    .await
                    .map(drop),
            }
        })
        .await;
        proxy.freeze(false);
        if !lazy {
            store.drop_namespace().await.unwrap();
        }
    }
}
