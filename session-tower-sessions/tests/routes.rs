//! What a tower-sessions application relies on through `SessionManagerLayer` over the adapter,
//! on each backend (memory, SQLite, and PostgreSQL and Redis when their servers are there):
//! the cookie's attributes, the three expiry kinds, `cycle_id`, `flush`, a stale save after a
//! logout (what tower-sessions' own stores get wrong: it brings the session back), and
//! concurrent requests of one session (no success is ever reported for a change that is not
//! stored).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Query;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use http_body_util::BodyExt;
use session_manager::time::{Duration, OffsetDateTime};
use session_manager::{BackendConfig, SessionStore};
use session_tower_sessions::TowerStore;
use tower::ServiceExt;
use tower_cookies::cookie::{Cookie, SameSite};
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// The stores the routes run over. PostgreSQL and Redis share one namespace (`tower_routes`)
/// across runs, so runs leave no tables behind: every session has a random id, and the longest
/// expiry here is two days.
async fn backends() -> Vec<(&'static str, Arc<dyn SessionStore>)> {
    let mut stores: Vec<(&'static str, Arc<dyn SessionStore>)> = vec![
        ("memory", Arc::new(session_memory::MemoryStore::new())),
        (
            "sqlite",
            Arc::new(
                session_sqlite::SqliteConfig::temporary()
                    .unwrap()
                    .open()
                    .await
                    .unwrap(),
            ),
        ),
    ];
    let namespace = "tower_routes";
    if let Some(url) = session_test_support::server_url(session_test_support::POSTGRES) {
        let config = session_postgres::PostgresConfig::from_url(&url).unwrap();
        let store = config.isolated(namespace).unwrap().open().await.unwrap();
        stores.push(("postgres", Arc::new(store)));
    }
    if let Some(url) = session_test_support::server_url(session_test_support::REDIS) {
        let config = session_redis::RedisConfig::from_url(&url).unwrap();
        let store = config.isolated(namespace).unwrap().open().await.unwrap();
        stores.push(("redis", Arc::new(store)));
    }
    stores
}

#[derive(serde::Deserialize)]
struct Put {
    key: String,
}

fn routes() -> Router {
    Router::new()
        .route("/", get(|_: Session| async { "untouched" }))
        .route(
            "/count",
            get(|session: Session| async move {
                let n: u64 = session.get("n").await.unwrap().unwrap_or(0);
                session.insert("n", n + 1).await.unwrap();
                (n + 1).to_string()
            }),
        )
        .route(
            "/get",
            get(|session: Session| async move {
                format!("{:?}", session.get::<u64>("n").await.unwrap())
            }),
        )
        .route(
            "/put",
            get(|session: Session, Query(put): Query<Put>| async move {
                session.insert(&put.key, true).await.unwrap();
                "put"
            }),
        )
        .route(
            "/keys",
            get(|session: Session| async move {
                let mut keys = Vec::new();
                for i in 0..64 {
                    let key = format!("k{i}");
                    if session.get::<bool>(&key).await.unwrap().is_some() {
                        keys.push(key);
                    }
                }
                keys.join(",")
            }),
        )
        .route(
            "/cycle",
            get(|session: Session| async move {
                session.cycle_id().await.unwrap();
                "cycled"
            }),
        )
        .route(
            "/flush",
            get(|session: Session| async move {
                session.flush().await.unwrap();
                "flushed"
            }),
        )
        .route(
            "/expire_at",
            get(|session: Session| async move {
                let at = OffsetDateTime::now_utc() + Duration::days(2);
                session.set_expiry(Some(Expiry::AtDateTime(at)));
                session.insert("n", 1).await.unwrap();
                "set"
            }),
        )
        .route(
            "/expire_at_end",
            get(|session: Session| async move {
                session.set_expiry(Some(Expiry::OnSessionEnd));
                session.insert("n", 1).await.unwrap();
                "set"
            }),
        )
}

fn app(store: &Arc<dyn SessionStore>, expiry: Option<Expiry>) -> Router {
    let mut layer = SessionManagerLayer::new(TowerStore::new(Arc::clone(store)))
        .with_secure(true)
        .with_domain("app.example".to_owned());
    if let Some(expiry) = expiry {
        layer = layer.with_expiry(expiry);
    }
    routes().layer(layer)
}

/// What one request answered: its status, body and the cookie it set (whole, parsed).
struct Answer {
    status: StatusCode,
    body: String,
    cookie: Option<Cookie<'static>>,
}

impl Answer {
    /// `name=value` of the cookie set, for the next request.
    fn pair(&self) -> String {
        let cookie = self.cookie.as_ref().expect("a session cookie was set");
        format!("{}={}", cookie.name(), cookie.value())
    }
}

async fn call(app: &Router, path: &str, cookie: Option<&str>) -> Answer {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let mut set = response.headers().get_all(header::SET_COOKIE).iter();
    let cookie = set
        .next()
        .map(|v| Cookie::parse(v.to_str().unwrap().to_owned()).unwrap());
    assert!(set.next().is_none(), "{path}: more than one Set-Cookie");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        body: String::from_utf8(body.to_vec()).unwrap(),
        cookie,
    }
}

#[tokio::test]
async fn the_cookie_has_the_layers_attributes_and_is_set_only_when_needed() {
    for (name, store) in backends().await {
        let app = app(&store, None);
        let untouched = call(&app, "/", None).await;
        assert_eq!(untouched.status, StatusCode::OK, "{name}");
        assert!(untouched.cookie.is_none(), "{name}: no session, no cookie");

        let first = call(&app, "/count", None).await;
        assert_eq!(first.body, "1", "{name}");
        let cookie = first.cookie.clone().expect("a cookie");
        assert_eq!(cookie.name(), "id", "{name}");
        assert_eq!(cookie.http_only(), Some(true), "{name}");
        assert_eq!(cookie.secure(), Some(true), "{name}");
        assert_eq!(cookie.same_site(), Some(SameSite::Strict), "{name}");
        assert_eq!(cookie.path(), Some("/"), "{name}");
        assert_eq!(cookie.domain(), Some("app.example"), "{name}");
        assert!(
            cookie.max_age().is_none() && cookie.expires().is_none(),
            "{name}: a session cookie by default: {cookie}"
        );

        // A request that only reads sends no cookie back; the data is there.
        let read = call(&app, "/get", Some(&first.pair())).await;
        assert_eq!(read.body, "Some(1)", "{name}");
        assert!(
            read.cookie.is_none(),
            "{name}: an unchanged session sets no cookie"
        );
        // A cookie naming no stored session starts from nothing, and is not adopted.
        let bogus = call(&app, "/count", Some("id=AAAAAAAAAAAAAAAAAAAAAA")).await;
        assert_eq!(bogus.body, "1", "{name}");
        assert_ne!(
            bogus.cookie.unwrap().value(),
            "AAAAAAAAAAAAAAAAAAAAAA",
            "{name}"
        );
    }
}

#[tokio::test]
async fn the_three_expiry_kinds_reach_the_cookie() {
    for (name, store) in backends().await {
        let idle = app(&store, Some(Expiry::OnInactivity(Duration::minutes(10))));
        let answer = call(&idle, "/count", None).await;
        let cookie = answer.cookie.clone().unwrap();
        assert_eq!(
            cookie.max_age(),
            Some(Duration::minutes(10)),
            "{name}: OnInactivity"
        );
        // A write moves the deadline again (a read alone does not, unless the layer is built
        // `with_always_save`: tower-sessions' rule, which the adapter keeps).
        let again = call(&idle, "/count", Some(&answer.pair())).await;
        assert_eq!(again.body, "2", "{name}");
        assert_eq!(
            again.cookie.unwrap().max_age(),
            Some(Duration::minutes(10)),
            "{name}"
        );

        let plain = app(&store, None);
        let at = call(&plain, "/expire_at", None).await;
        let max_age = at.cookie.clone().unwrap().max_age().expect("a max age");
        assert!(
            (Duration::days(2) - max_age).abs() < Duration::minutes(1),
            "{name}: AtDateTime two days ahead gave {max_age}"
        );
        assert_eq!(
            call(&plain, "/get", Some(&at.pair())).await.body,
            "Some(1)",
            "{name}: a session with a fixed deadline is stored"
        );
        let end = call(&idle, "/expire_at_end", None).await;
        let cookie = end.cookie.clone().unwrap();
        assert!(
            cookie.max_age().is_none() && cookie.expires().is_none(),
            "{name}: OnSessionEnd set on the session wins over the layer: {cookie}"
        );
        assert_eq!(
            call(&idle, "/get", Some(&end.pair())).await.body,
            "Some(1)",
            "{name}"
        );
    }
}

#[tokio::test]
async fn cycle_id_moves_the_session_and_the_old_id_stops_working() {
    for (name, store) in backends().await {
        let app = app(&store, None);
        let old = call(&app, "/count", None).await.pair();
        assert_eq!(call(&app, "/count", Some(&old)).await.body, "2", "{name}");
        let cycled = call(&app, "/cycle", Some(&old)).await;
        let new = cycled.pair();
        assert_ne!(new, old, "{name}: cycle_id sets a new id");
        assert_eq!(
            call(&app, "/get", Some(&new)).await.body,
            "Some(2)",
            "{name}"
        );
        assert_eq!(
            call(&app, "/get", Some(&old)).await.body,
            "None",
            "{name}: the old id is gone"
        );
        // A late request with the old id writes a fresh session, never the cycled one.
        let late = call(&app, "/count", Some(&old)).await;
        assert_eq!(late.body, "1", "{name}");
        assert_eq!(
            call(&app, "/get", Some(&new)).await.body,
            "Some(2)",
            "{name}"
        );
    }
}

#[tokio::test]
async fn flush_removes_the_session_and_the_cookie() {
    for (name, store) in backends().await {
        let app = app(&store, None);
        let cookie = call(&app, "/count", None).await.pair();
        let flushed = call(&app, "/flush", Some(&cookie)).await;
        let removal = flushed.cookie.expect("a removal cookie");
        assert_eq!(removal.max_age(), Some(Duration::ZERO), "{name}: {removal}");
        assert_eq!(removal.value(), "", "{name}");
        assert_eq!(
            call(&app, "/get", Some(&cookie)).await.body,
            "None",
            "{name}: the flushed session is gone"
        );
    }
}

/// A slow request that loaded the session saves after the user logged out (flush) elsewhere:
/// the session does not come back, under its old id or any other.
#[tokio::test]
async fn a_stale_save_after_logout_does_not_bring_the_session_back() {
    for (name, store) in backends().await {
        let app = app(&store, None);
        let answer = call(&app, "/count", None).await;
        let cookie = answer.pair();
        let id = answer
            .cookie
            .unwrap()
            .value()
            .parse::<tower_sessions::session::Id>()
            .unwrap();
        let tower = Arc::new(TowerStore::new(Arc::clone(&store)));
        let slow = Session::new(Some(id), tower, None);
        assert_eq!(slow.get::<u64>("n").await.unwrap(), Some(1), "{name}");
        call(&app, "/flush", Some(&cookie)).await;
        slow.insert("n", 99u64).await.unwrap();
        slow.save().await.unwrap();
        assert_eq!(
            call(&app, "/get", Some(&cookie)).await.body,
            "None",
            "{name}: the logged-out session came back"
        );
        assert_eq!(
            slow.id(),
            Some(id),
            "{name}: the stale save minted no new id"
        );
    }
}

/// Sixteen requests of one session, each writing its own key at once: every request answered
/// 200 has its key stored (a change reported as saved is never lost), and the others answer 500
/// (the adapter's compare-and-swap refused a stale save) with nothing of theirs stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_lose_a_change_reported_as_saved() {
    for (name, store) in backends().await {
        let app = app(&store, None);
        let cookie = call(&app, "/count", None).await.pair();
        let requests: Vec<_> = (0..16)
            .map(|i| {
                let (app, cookie) = (app.clone(), cookie.clone());
                tokio::spawn(async move {
                    let answer = call(&app, &format!("/put?key=k{i}"), Some(&cookie)).await;
                    (format!("k{i}"), answer.status)
                })
            })
            .collect();
        let mut saved = BTreeSet::new();
        let mut refused = BTreeSet::new();
        for request in requests {
            let (key, status) = request.await.unwrap();
            match status {
                StatusCode::OK => saved.insert(key),
                StatusCode::INTERNAL_SERVER_ERROR => refused.insert(key),
                other => panic!("{name}: {key} answered {other}"),
            };
        }
        assert!(!saved.is_empty(), "{name}: no request saved");
        let stored: BTreeSet<String> = call(&app, "/keys", Some(&cookie))
            .await
            .body
            .split(',')
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        assert_eq!(
            stored, saved,
            "{name}: stored keys vs requests answered 200"
        );
        assert!(stored.is_disjoint(&refused), "{name}");
    }
}
