//! tower-sessions' own layer (`SessionManagerLayer`, tower-sessions 0.15) on axum over the
//! adapter: the route shapes of tower-sessions' HTTP tests (insert, get, remove, cycle id,
//! flush), adapted (not copied) from its `tests/common` suite, plus what its own stores get
//! wrong: a stale request saving after logout does not bring the session back.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use http_body_util::BodyExt;
use session_tower_sessions::TowerStore;
use tower::ServiceExt;
use tower_sessions::{Session, SessionManagerLayer};

type Store = TowerStore<Arc<session_memory::MemoryStore>>;

fn app(store: Store) -> Router {
    Router::new()
        .route(
            "/insert",
            get(|session: Session| async move {
                let n: u64 = session.get("n").await.unwrap().unwrap_or(0);
                session.insert("n", n + 1).await.unwrap();
                (n + 1).to_string()
            }),
        )
        .route(
            "/get",
            get(|session: Session| async move {
                let n: Option<u64> = session.get("n").await.unwrap();
                format!("{n:?}")
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
        .layer(SessionManagerLayer::new(store).with_secure(false))
}

/// GET `path` with `cookie`; the status, the body and the `id` cookie set, if any.
async fn call(
    app: &Router,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, String, Option<String>) {
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
    let set = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap(), set)
}

#[tokio::test]
async fn routes_of_a_session_life() {
    let store = TowerStore::new(Arc::new(session_memory::MemoryStore::new()));
    let app = app(store.clone());
    let (status, body, cookie) = call(&app, "/insert", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "1"));
    let cookie = cookie.expect("a session cookie");
    assert_eq!(call(&app, "/insert", Some(&cookie)).await.1, "2");
    assert_eq!(call(&app, "/get", Some(&cookie)).await.1, "Some(2)");

    // cycle_id: a new cookie, the data kept, the old id gone.
    let (_, _, cycled) = call(&app, "/cycle", Some(&cookie)).await;
    let cycled = cycled.expect("a new cookie after cycle_id");
    assert_ne!(cycled, cookie);
    assert_eq!(call(&app, "/get", Some(&cycled)).await.1, "Some(2)");
    assert_eq!(call(&app, "/get", Some(&cookie)).await.1, "None");

    // flush (logout): the session is gone; the old cookie starts from nothing.
    call(&app, "/flush", Some(&cycled)).await;
    assert_eq!(call(&app, "/get", Some(&cycled)).await.1, "None");
    assert_eq!(store.inner().live_records(), 0);
}

#[tokio::test]
async fn a_stale_save_after_logout_does_not_bring_the_session_back() {
    let store = TowerStore::new(Arc::new(session_memory::MemoryStore::new()));
    let app = app(store.clone());
    let (_, _, cookie) = call(&app, "/insert", None).await;
    let cookie = cookie.unwrap();
    // A slow request loads the session ...
    let id = cookie
        .split_once('=')
        .unwrap()
        .1
        .parse::<tower_sessions::session::Id>()
        .unwrap();
    let slow = Session::new(Some(id), Arc::new(store.clone()), None);
    let n: Option<u64> = slow.get("n").await.unwrap();
    assert_eq!(n, Some(1));
    // ... the user logs out meanwhile ...
    call(&app, "/flush", Some(&cookie)).await;
    // ... and the slow request saves afterwards: nothing comes back.
    slow.insert("n", 99u64).await.unwrap();
    slow.save().await.unwrap();
    assert_eq!(call(&app, "/get", Some(&cookie)).await.1, "None");
    assert_eq!(store.inner().live_records(), 0);
}
