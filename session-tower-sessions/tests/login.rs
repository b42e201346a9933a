//! The axum-login example app (examples/login.rs) over the adapter, driven over HTTP: a
//! protected route refuses strangers, a login (axum-login cycles the session id) opens it, a
//! logout closes it again, and the pre-login and logged-out cookies stay dead.

#[path = "../examples/login.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod login;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn call(
    app: &Router,
    method: Method,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, String, Option<String>) {
    let mut request = Request::builder().method(method).uri(path);
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
async fn login_protected_logout() {
    let store = Arc::new(session_memory::MemoryStore::new());
    let app = login::app(store.clone());

    assert_eq!(
        call(&app, Method::GET, "/protected", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _, cookie) =
        call(&app, Method::POST, "/login?user=alice&password=nope", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none());

    let (status, body, cookie) = call(
        &app,
        Method::POST,
        "/login?user=alice&password=hunter2",
        None,
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "welcome alice"));
    let cookie = cookie.expect("a session cookie after login");
    let (status, body, _) = call(&app, Method::GET, "/protected", Some(&cookie)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello alice"));
    assert_eq!(store.live_records(), 1);

    let (status, _, _) = call(&app, Method::GET, "/logout", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        call(&app, Method::GET, "/protected", Some(&cookie)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        store.live_records(),
        0,
        "logout left the session in the store"
    );

    // A second login: a new id (axum-login cycles it), the logged-out cookie stays dead.
    let (_, _, second) = call(
        &app,
        Method::POST,
        "/login?user=bob&password=swordfish",
        Some(&cookie),
    )
    .await;
    let second = second.expect("a new session cookie");
    assert_ne!(second, cookie);
    assert_eq!(
        call(&app, Method::GET, "/protected", Some(&second)).await.1,
        "hello bob"
    );
    assert_eq!(
        call(&app, Method::GET, "/protected", Some(&cookie)).await.0,
        StatusCode::UNAUTHORIZED
    );
}
