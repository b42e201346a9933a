//! The layer over real HTTP: an axum server on 127.0.0.1 and reqwest clients.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query};
use axum::routing::get;
use cookie::Cookie;
use reqwest::header::{COOKIE, SET_COOKIE};
use session_axum::{Session, SessionLayer};
use session_manager::time::Duration as TimeDuration;
use session_manager::{Expiry, SessionId, SessionStore};
use session_memory::MemoryStore;

async fn insert(session: Session) -> &'static str {
    session.insert("foo", 42).await.unwrap();
    "ok"
}

async fn get_foo(session: Session) -> String {
    match session.get::<u64>("foo").await.unwrap() {
        Some(v) => v.to_string(),
        None => "none".to_owned(),
    }
}

async fn remove(session: Session) -> &'static str {
    session.remove_value("foo").await.unwrap();
    "ok"
}

async fn cycle(session: Session) -> &'static str {
    session.cycle_id().await.unwrap();
    "ok"
}

async fn flush(session: Session) -> &'static str {
    session.flush().await.unwrap();
    "ok"
}

#[derive(serde::Deserialize)]
struct Secs {
    secs: i64,
}

async fn set_expiry(session: Session, Query(q): Query<Secs>) -> &'static str {
    session.set_expiry(Some(Expiry::OnInactivity(TimeDuration::seconds(q.secs))));
    "ok"
}

async fn bump(session: Session, Path(key): Path<String>) -> &'static str {
    session.get_value("foo").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    session.insert(&key, 1).await.unwrap();
    "ok"
}

async fn count_keys(session: Session) -> String {
    let mut n = 0;
    for i in 0..64 {
        if session.get::<u32>(&format!("k{i}")).await.unwrap() == Some(1) {
            n += 1;
        }
    }
    n.to_string()
}

async fn slow_insert(session: Session) -> &'static str {
    session.get_value("foo").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    session.insert("late", true).await.unwrap();
    "ok"
}

async fn slow_get(session: Session) -> String {
    tokio::time::sleep(Duration::from_millis(300)).await;
    get_foo(session).await
}

async fn login(session: Session) -> &'static str {
    session.insert("user", "alice").await.unwrap();
    session.cycle_id().await.unwrap();
    "ok"
}

async fn take_once(session: Session) -> String {
    let taken: Option<u64> = session.remove("foo").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    format!("{taken:?}")
}

async fn noop() -> &'static str {
    "ok"
}

struct Server {
    base: String,
    store: Arc<MemoryStore>,
}

async fn serve(layer: impl FnOnce(Arc<MemoryStore>) -> SessionLayer) -> Server {
    let store = Arc::new(MemoryStore::new());
    let with_session = Router::new()
        .route("/insert", get(insert))
        .route("/get", get(get_foo))
        .route("/remove", get(remove))
        .route("/cycle", get(cycle))
        .route("/flush", get(flush))
        .route("/set_expiry", get(set_expiry))
        .route("/bump/{key}", get(bump))
        .route("/count", get(count_keys))
        .route("/slow_insert", get(slow_insert))
        .route("/slow_get", get(slow_get))
        .route("/login", get(login))
        .route("/take_once", get(take_once))
        .route("/noop", get(noop))
        .layer(layer(Arc::clone(&store)));
    let app = with_session.route("/nolayer", get(get_foo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { base, store }
}

async fn plain_server() -> Server {
    serve(|store| SessionLayer::new(store).with_secure(false)).await
}

fn jar_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

fn set_cookies(response: &reqwest::Response) -> Vec<Cookie<'static>> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| Cookie::parse(v.to_str().unwrap().to_owned()).unwrap())
        .collect()
}

/// Sends `request`, checks for success, returns the body and the cookies set.
async fn body_and_cookies(
    path: &str,
    request: reqwest::RequestBuilder,
) -> (String, Vec<Cookie<'static>>) {
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    let cookies = set_cookies(&response);
    (response.text().await.unwrap(), cookies)
}

impl Server {
    async fn get(&self, client: &reqwest::Client, path: &str) -> (String, Vec<Cookie<'static>>) {
        body_and_cookies(path, client.get(format!("{}{path}", self.base))).await
    }

    /// A request with exactly `cookie` as its Cookie header, from a client without a jar.
    async fn get_with(&self, path: &str, cookie: &str) -> (String, Vec<Cookie<'static>>) {
        let request = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .header(COOKIE, cookie);
        body_and_cookies(path, request).await
    }
}

/// The session token a response set.
fn token(cookies: &[Cookie<'static>]) -> String {
    let cookie = cookies
        .iter()
        .find(|c| c.name() == "id")
        .expect("an id cookie");
    assert!(!cookie.value().is_empty());
    cookie.value().to_owned()
}

fn is_removal(cookies: &[Cookie<'static>]) -> bool {
    cookies.iter().any(|c| {
        c.name() == "id" && c.value().is_empty() && c.max_age() == Some(TimeDuration::ZERO)
    })
}

#[tokio::test]
async fn no_session_no_cookie_no_store_call() {
    let server = plain_server().await;
    let (body, cookies) = server.get(&reqwest::Client::new(), "/noop").await;
    assert_eq!(body, "ok");
    assert!(cookies.is_empty());
    let (body, cookies) = server.get(&reqwest::Client::new(), "/get").await;
    assert_eq!(body, "none");
    assert!(cookies.is_empty(), "reading an absent session sets nothing");
    assert_eq!(server.store.stored_records(), 0);
}

#[tokio::test]
async fn bogus_and_malformed_cookies_are_no_session_and_write_nothing() {
    let server = plain_server().await;
    let unknown = SessionId::generate().expose();
    // A well-formed unknown cookie is left alone (it may be an old cookie that the browser has
    // already replaced); a malformed one is removed.
    for (cookie, removed) in [
        (format!("id={unknown}"), false),
        ("id=garbage".to_owned(), true),
        ("id=".to_owned(), true),
    ] {
        let (body, cookies) = server.get_with("/get", &cookie).await;
        assert_eq!(body, "none", "{cookie}");
        assert_eq!(is_removal(&cookies), removed, "{cookie}: {cookies:?}");
        assert!(removed || cookies.is_empty(), "{cookie}: {cookies:?}");
        let (_, cookies) = server.get_with("/noop", &cookie).await;
        assert_eq!(is_removal(&cookies), removed, "{cookie}: {cookies:?}");
    }
    assert_eq!(
        server.store.stored_records(),
        0,
        "no store filling from random cookies"
    );
    // Writing through an unknown id creates a session under a fresh id.
    let (_, cookies) = server.get_with("/insert", &format!("id={unknown}")).await;
    assert_ne!(token(&cookies), unknown);
    assert_eq!(server.store.live_records(), 1);
}

#[tokio::test]
async fn insert_sets_a_hardened_cookie() {
    let server = serve(SessionLayer::new).await;
    let (_, cookies) = server.get(&reqwest::Client::new(), "/insert").await;
    let cookie = cookies
        .iter()
        .find(|c| c.name() == "__Host-id")
        .expect("the __Host- prefix by default");
    assert!(SessionId::parse(cookie.value()).is_ok());
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.same_site(), Some(cookie::SameSite::Lax));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(
        cookie.max_age(),
        None,
        "a browser-session cookie by default"
    );
    assert_eq!(server.store.live_records(), 1);
}

#[tokio::test]
async fn cookie_settings_apply() {
    let server = serve(|store| {
        SessionLayer::new(store)
            .with_name("sid")
            .with_path("/app")
            .with_domain("example.test")
            .with_secure(false)
            .with_same_site(cookie::SameSite::Strict)
            .with_expiry(Some(Expiry::OnInactivity(TimeDuration::hours(1))))
    })
    .await;
    let (_, cookies) = server.get(&reqwest::Client::new(), "/insert").await;
    let cookie = cookies
        .iter()
        .find(|c| c.name() == "sid")
        .expect("named cookie");
    assert_eq!(cookie.path(), Some("/app"));
    assert_eq!(cookie.domain(), Some("example.test"));
    assert_eq!(cookie.secure(), None);
    assert_eq!(cookie.same_site(), Some(cookie::SameSite::Strict));
    let max_age = cookie.max_age().unwrap();
    assert!(
        max_age > TimeDuration::minutes(59) && max_age <= TimeDuration::hours(1),
        "{max_age}"
    );
}

#[tokio::test]
async fn get_after_insert_and_remove_last_value() {
    let server = plain_server().await;
    let client = jar_client();
    let (_, cookies) = server.get(&client, "/insert").await;
    assert_eq!(cookies.len(), 1);
    let (body, cookies) = server.get(&client, "/get").await;
    assert_eq!(body, "42");
    assert!(
        cookies.is_empty(),
        "an unchanged browser-session cookie is not re-sent"
    );
    let (_, cookies) = server.get(&client, "/remove").await;
    assert!(
        cookies.is_empty(),
        "same id, same kind of cookie: nothing to re-send"
    );
    assert_eq!(server.get(&client, "/get").await.0, "none");
}

#[tokio::test]
async fn set_and_change_expiry() {
    let server = plain_server().await;
    let client = jar_client();
    server.get(&client, "/insert").await;
    let (_, cookies) = server.get(&client, "/set_expiry?secs=60").await;
    let max_age = cookies[0].max_age().unwrap();
    assert!(max_age > TimeDuration::seconds(55) && max_age <= TimeDuration::seconds(60));
    let (_, cookies) = server.get(&client, "/set_expiry?secs=600").await;
    let max_age = cookies[0].max_age().unwrap();
    assert!(max_age > TimeDuration::seconds(595) && max_age <= TimeDuration::seconds(600));
    assert_eq!(server.get(&client, "/get").await.0, "42");
}

#[tokio::test]
async fn cycle_id_kills_the_old_cookie() {
    let server = plain_server().await;
    let client = jar_client();
    let (_, cookies) = server.get(&client, "/insert").await;
    let old = token(&cookies);
    let (_, cookies) = server.get(&client, "/cycle").await;
    let new = token(&cookies);
    assert_ne!(old, new);
    assert_eq!(server.get(&client, "/get").await.0, "42");
    let (body, cookies) = server.get_with("/get", &format!("id={old}")).await;
    assert_eq!(body, "none");
    assert!(
        cookies.is_empty(),
        "the old cookie is not answered: {cookies:?}"
    );
    assert_eq!(server.store.live_records(), 1);
}

#[tokio::test]
async fn flush_removes_the_cookie_and_the_session() {
    let server = plain_server().await;
    let client = jar_client();
    let (_, cookies) = server.get(&client, "/insert").await;
    let old = token(&cookies);
    let (_, cookies) = server.get(&client, "/flush").await;
    assert!(is_removal(&cookies));
    assert_eq!(server.store.stored_records(), 0);
    assert_eq!(server.get(&client, "/get").await.0, "none");
    assert_eq!(
        server.get_with("/get", &format!("id={old}")).await.0,
        "none"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_changing_different_keys_all_persist() {
    const REQUESTS: usize = 24;
    let server = Arc::new(plain_server().await);
    let (_, cookies) = server.get(&reqwest::Client::new(), "/insert").await;
    let cookie = format!("id={}", token(&cookies));
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let server = Arc::clone(&server);
            let cookie = cookie.clone();
            tokio::spawn(async move { server.get_with(&format!("/bump/k{i}"), &cookie).await })
        })
        .collect();
    for task in tasks {
        let (body, cookies) = task.await.unwrap();
        assert_eq!(body, "ok");
        assert!(!is_removal(&cookies));
    }
    assert_eq!(
        server.get_with("/count", &cookie).await.0,
        REQUESTS.to_string()
    );
    assert_eq!(server.get_with("/get", &cookie).await.0, "42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_wins_over_a_slow_concurrent_request() {
    let server = Arc::new(plain_server().await);
    let (_, cookies) = server.get(&reqwest::Client::new(), "/insert").await;
    let cookie = format!("id={}", token(&cookies));
    let slow = {
        let server = Arc::clone(&server);
        let cookie = cookie.clone();
        tokio::spawn(async move { server.get_with("/slow_insert", &cookie).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, cookies) = server.get_with("/flush", &cookie).await;
    assert!(is_removal(&cookies));
    let (body, cookies) = slow.await.unwrap();
    assert_eq!(body, "ok");
    assert!(
        cookies.is_empty(),
        "the slow request sets no cookie (the logout already removed it): {cookies:?}"
    );
    assert_eq!(
        server.store.stored_records(),
        0,
        "the slow save did not bring it back"
    );
    assert_eq!(server.get_with("/get", &cookie).await.0, "none");
}

#[tokio::test]
async fn a_missing_layer_is_a_clear_500() {
    let server = plain_server().await;
    let response = reqwest::get(format!("{}/nolayer", server.base))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        reqwest::StatusCode::INTERNAL_SERVER_ERROR
    );
    let body = response.text().await.unwrap();
    assert!(body.contains("SessionLayer"), "{body}");
}

#[tokio::test]
async fn a_failing_store_is_a_500_not_a_lost_write() {
    struct Down;
    #[session_manager::async_trait]
    impl SessionStore for Down {
        fn capabilities(&self) -> session_manager::Capabilities {
            session_manager::Capabilities::new()
        }
        async fn create_opts(
            &self,
            _: &session_manager::SessionKey,
            _: session_manager::time::OffsetDateTime,
            _: session_manager::Bytes,
            _: &session_manager::WriteOptions,
        ) -> session_manager::Result<session_manager::CreateOutcome> {
            Err(
                session_manager::Error::new(session_manager::ErrorKind::Backend, "down")
                    .transient(true),
            )
        }
        async fn read(
            &self,
            _: &session_manager::SessionKey,
        ) -> session_manager::Result<Option<session_manager::Record>> {
            Ok(None)
        }
        async fn update_opts(
            &self,
            _: &session_manager::SessionKey,
            _: &session_manager::SessionKey,
            _: u64,
            _: session_manager::time::OffsetDateTime,
            _: session_manager::Bytes,
            _: &session_manager::WriteOptions,
        ) -> session_manager::Result<session_manager::UpdateOutcome> {
            Err(session_manager::Error::new(
                session_manager::ErrorKind::Backend,
                "down",
            ))
        }
        async fn touch(
            &self,
            _: &session_manager::SessionKey,
            _: session_manager::time::OffsetDateTime,
        ) -> session_manager::Result<bool> {
            Ok(false)
        }
        async fn delete(&self, _: &session_manager::SessionKey) -> session_manager::Result<()> {
            Ok(())
        }
        async fn delete_expired(&self) -> session_manager::Result<u64> {
            Ok(0)
        }
        async fn clear(&self) -> session_manager::Result<()> {
            Ok(())
        }
    }
    let app = Router::new()
        .route("/insert", get(insert))
        .layer(SessionLayer::new(Down).with_secure(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let response = reqwest::get(format!("{base}/insert")).await.unwrap();
    assert_eq!(
        response.status(),
        reqwest::StatusCode::INTERNAL_SERVER_ERROR
    );
    assert!(response.headers().get(SET_COOKIE).is_none());
}

/// A login (id rotation) while slow requests with the old cookie are in flight: neither the
/// slow reader nor the slow writer deletes the browser's new cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_request_does_not_log_out_after_login() {
    let server = Arc::new(plain_server().await);
    let client = jar_client();
    server.get(&client, "/insert").await;
    let slow: Vec<_> = ["/slow_get", "/slow_insert"]
        .into_iter()
        .map(|path| {
            let server = Arc::clone(&server);
            let client = client.clone();
            tokio::spawn(async move { server.get(&client, path).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, cookies) = server.get(&client, "/login").await;
    let new = token(&cookies);
    for task in slow {
        let (_, cookies) = task.await.unwrap();
        assert!(
            cookies.is_empty(),
            "a stale request sets no cookie: {cookies:?}"
        );
    }
    // The browser still holds the logged-in session.
    assert_eq!(server.get(&client, "/get").await.0, "42");
    assert_eq!(server.get_with("/get", &format!("id={new}")).await.0, "42");
    assert_eq!(server.store.live_records(), 1);
}

/// Duplicate cookie names: the first well-formed value is the session, whatever follows or
/// precedes it.
#[tokio::test]
async fn the_first_well_formed_cookie_wins() {
    let server = plain_server().await;
    let (_, cookies) = server.get(&reqwest::Client::new(), "/insert").await;
    let valid = token(&cookies);
    let other = SessionId::generate().expose();
    for header in [
        format!("id={valid}; id=junk"),
        format!("id=junk; id={valid}"),
        format!("id={valid}; id={other}"),
        format!("id=; other=1; id={valid}"),
    ] {
        let (body, cookies) = server.get_with("/get", &header).await;
        assert_eq!(body, "42", "{header}");
        assert!(cookies.is_empty(), "{header}: {cookies:?}");
    }
    assert_eq!(server.store.live_records(), 1);
}

/// The `__Host-` prefix: on by default when the cookie qualifies, off with
/// `with_host_prefix(false)`, and never on a cookie that cannot carry it.
#[tokio::test]
async fn host_prefix_by_default_when_the_cookie_qualifies() {
    for (layer, name) in [
        (
            SessionLayer::new as fn(Arc<MemoryStore>) -> SessionLayer,
            "__Host-id",
        ),
        (|s| SessionLayer::new(s).with_host_prefix(false), "id"),
        (|s| SessionLayer::new(s).with_name("sid"), "__Host-sid"),
        (|s| SessionLayer::new(s).with_path("/app"), "id"),
        (|s| SessionLayer::new(s).with_domain("example.test"), "id"),
        (|s| SessionLayer::new(s).with_secure(false), "id"),
    ] {
        let server = serve(layer).await;
        let (_, cookies) = server.get(&reqwest::Client::new(), "/insert").await;
        let cookie = cookies.iter().find(|c| c.name() == name);
        let cookie = cookie.unwrap_or_else(|| panic!("{name}: {cookies:?}"));
        // The layer reads the cookie back under the same name.
        let header = format!("{name}={}", cookie.value());
        assert_eq!(server.get_with("/get", &header).await.0, "42", "{name}");
    }
}

/// Two requests take the same one-time value: one gets it, the other's save is a 409 and
/// writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_time_value_is_taken_once() {
    let server = Arc::new(plain_server().await);
    let (_, cookies) = server.get(&reqwest::Client::new(), "/insert").await;
    let cookie = format!("id={}", token(&cookies));
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let server = Arc::clone(&server);
            let cookie = cookie.clone();
            tokio::spawn(async move {
                reqwest::Client::new()
                    .get(format!("{}/take_once", server.base))
                    .header(COOKIE, cookie)
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [reqwest::StatusCode::OK, reqwest::StatusCode::CONFLICT]
    );
    assert_eq!(server.get_with("/get", &cookie).await.0, "none");
}
