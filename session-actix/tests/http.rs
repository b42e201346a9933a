//! actix-session's middleware over the adapter, driven through actix-web's test service on
//! memory, SQLite, PostgreSQL, Redis and MySQL: a counter, login with `Session::renew`, logout with
//! `purge`, a stale cookie after logout, and the store-level rules (concurrent updates, no
//! resurrection, TTL through touch).

use std::collections::HashMap;
use std::sync::Arc;

use actix_session::storage::{SessionKey, SessionStore as _};
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::{Cookie, Key};
use actix_web::{App, HttpResponse, test, web};
use session_actix::{ActixStore, VERSION_ENTRY};
use session_manager::time::Duration;
use session_manager::{BackendConfig, SessionId, SessionStore, StoreAdmin};

async fn counter(session: Session) -> HttpResponse {
    let n: u64 = session.get("n").unwrap().unwrap_or(0) + 1;
    session.insert("n", n).unwrap();
    HttpResponse::Ok().body(n.to_string())
}

/// A counter whose request takes a while between reading and writing, so that concurrent
/// requests on one session overlap.
async fn slow_counter(session: Session) -> HttpResponse {
    let n: u64 = session.get("n").unwrap().unwrap_or(0) + 1;
    actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    session.insert("n", n).unwrap();
    HttpResponse::Ok().body(n.to_string())
}

async fn login(
    session: Session,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> HttpResponse {
    session.insert("user", &query["user"]).unwrap();
    session.renew();
    HttpResponse::Ok().body("welcome")
}

async fn whoami(session: Session) -> HttpResponse {
    let user: Option<String> = session.get("user").unwrap();
    HttpResponse::Ok().body(user.unwrap_or_else(|| "anonymous".into()))
}

async fn logout(session: Session) -> HttpResponse {
    session.purge();
    HttpResponse::Ok().body("bye")
}

fn session_cookie(response: &actix_web::dev::ServiceResponse) -> Option<Cookie<'static>> {
    response
        .response()
        .cookies()
        .find(|c| c.name() == "id")
        .map(|c| c.into_owned())
}

/// Every rule of the adapter over `store` (a fresh namespace of some backend).
async fn rules(store: Arc<dyn StoreAdmin>) {
    let inner: Arc<dyn SessionStore> = store.clone();
    let adapter = ActixStore::new(Arc::clone(&inner));
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(
                SessionMiddleware::builder(adapter.clone(), key.clone())
                    .cookie_secure(false)
                    .build(),
            )
            .route("/counter", web::get().to(counter))
            .route("/slow", web::get().to(slow_counter))
            .route("/login", web::post().to(login))
            .route("/whoami", web::get().to(whoami))
            .route("/logout", web::post().to(logout)),
    )
    .await;
    let get = |path: &str, cookie: Option<&Cookie<'static>>| {
        let mut request = test::TestRequest::get().uri(path);
        if let Some(cookie) = cookie {
            request = request.cookie(cookie.clone());
        }
        request.to_request()
    };

    // A counter across requests.
    let response = test::call_service(&app, get("/counter", None)).await;
    let cookie = session_cookie(&response).expect("a session cookie");
    assert_eq!(test::read_body(response).await, "1");
    let response = test::call_service(&app, get("/counter", Some(&cookie))).await;
    assert_eq!(test::read_body(response).await, "2");

    // Concurrent requests on one session: all read 2, exactly one write lands (a compare-and-swap
    // on the version they loaded); the others fail (500) and write nothing: no lost update
    // passes as a success.
    let requests = (0..8).map(|_| test::try_call_service(&app, get("/slow", Some(&cookie))));
    let outcomes = futures::future::join_all(requests).await;
    let mut succeeded = 0;
    for outcome in outcomes {
        match outcome {
            Ok(response) if response.status().is_success() => {
                assert_eq!(test::read_body(response).await, "3");
                succeeded += 1;
            }
            Ok(response) => assert!(response.status().is_server_error()),
            Err(error) => assert!(error.error_response().status().is_server_error()),
        }
    }
    assert_eq!(succeeded, 1, "exactly one of the concurrent saves may land");
    let response = test::call_service(&app, get("/counter", Some(&cookie))).await;
    assert_eq!(
        test::read_body(response).await,
        "4",
        "the stored counter is 3"
    );
    let response = test::call_service(&app, get("/counter", Some(&cookie))).await;
    assert_eq!(test::read_body(response).await, "5");

    // Login renews the id: the state moves, the old cookie names nothing any more.
    let request = test::TestRequest::post()
        .uri("/login?user=alice")
        .cookie(cookie.clone())
        .to_request();
    let response = test::call_service(&app, request).await;
    let logged_in = session_cookie(&response).expect("a new cookie after renew");
    assert_ne!(logged_in.value(), cookie.value());
    let response = test::call_service(&app, get("/whoami", Some(&logged_in))).await;
    assert_eq!(test::read_body(response).await, "alice");
    let response = test::call_service(&app, get("/counter", Some(&logged_in))).await;
    assert_eq!(test::read_body(response).await, "6", "renew kept the state");
    let response = test::call_service(&app, get("/whoami", Some(&cookie))).await;
    assert_eq!(
        test::read_body(response).await,
        "anonymous",
        "the pre-login id still works"
    );

    // Logout: the session is gone from the store; the stale cookie is anonymous and starts over.
    let request = test::TestRequest::post()
        .uri("/logout")
        .cookie(logged_in.clone())
        .to_request();
    test::call_service(&app, request).await;
    let response = test::call_service(&app, get("/whoami", Some(&logged_in))).await;
    assert_eq!(test::read_body(response).await, "anonymous");
    let response = test::call_service(&app, get("/counter", Some(&logged_in))).await;
    assert_eq!(test::read_body(response).await, "1");

    // Store-level rules, as a slow request would meet them.
    let ttl = Duration::hours(1);
    let mut state = std::collections::HashMap::new();
    state.insert("user".to_owned(), "\"bob\"".to_owned());
    let key = adapter.save(state, &ttl).await.unwrap();
    let id = SessionId::parse(key.as_ref()).unwrap();
    let first = adapter.load(&key).await.unwrap().unwrap();
    let second = adapter.load(&key).await.unwrap().unwrap();
    assert!(first.contains_key(VERSION_ENTRY));
    let mut a = first.clone();
    a.insert("a".into(), "1".into());
    let mut b = second.clone();
    b.insert("b".into(), "1".into());
    let key = adapter.update(key, a.clone(), &ttl).await.unwrap();
    // The same request updating again goes through; another one that loaded the same version
    // is refused and writes nothing.
    a.insert("a".into(), "2".into());
    let key = adapter.update(key, a, &ttl).await.unwrap();
    let again = || SessionKey::try_from(id.expose()).unwrap();
    assert!(adapter.update(again(), b, &ttl).await.is_err());
    let now = adapter.load(&key).await.unwrap().unwrap();
    assert_eq!(
        (now.get("a").map(String::as_str), now.get("b")),
        (Some("2"), None)
    );
    // Stored as the Session handle stores it: its envelope around a JSON map of JSON values.
    let record = inner.read(&id.key()).await.unwrap().unwrap();
    let (_, json) = session_manager::envelope::decode(record.data).unwrap();
    let map: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(map, serde_json::json!({"user": "bob", "a": 2}));
    // TTL through touch, and no resurrection after logout.
    let before = record.expires_at;
    adapter.update_ttl(&key, &Duration::hours(2)).await.unwrap();
    assert!(inner.read(&id.key()).await.unwrap().unwrap().expires_at > before);
    adapter.delete(&key).await.unwrap();
    adapter.update(again(), now, &ttl).await.unwrap();
    adapter.update_ttl(&key, &ttl).await.unwrap();
    assert!(
        adapter.load(&key).await.unwrap().is_none(),
        "an update brought the session back"
    );
    // Cookies that are not our ids never reach the store.
    let foreign = SessionKey::try_from("x".repeat(64)).unwrap();
    assert!(adapter.load(&foreign).await.unwrap().is_none());
    // The size limit of the Session handle holds here too: a larger session writes nothing.
    let small = ActixStore::new(Arc::clone(&inner)).with_max_data_size(64);
    let big: HashMap<String, String> =
        [("blob".to_owned(), format!("{:?}", "x".repeat(100)))].into();
    assert!(small.save(big.clone(), &ttl).await.is_err());
    let fits = small
        .save([("n".to_owned(), "1".to_owned())].into(), &ttl)
        .await
        .unwrap();
    let mut grown = small.load(&fits).await.unwrap().unwrap();
    grown.extend(big);
    let again = SessionKey::try_from(fits.as_ref().to_owned()).unwrap();
    assert!(small.update(again, grown, &ttl).await.is_err());
    let stored = small.load(&fits).await.unwrap().unwrap();
    assert_eq!(stored.get("n").map(String::as_str), Some("1"));
    assert!(!stored.contains_key("blob"), "a refused update wrote");

    // Values come back as the JSON text actix-session wrote: integers beyond 64 bits exactly
    // (the store keeps the text, it does not parse it into a 64-bit or floating number).
    let exact: HashMap<String, String> = [
        ("u128_max", u128::MAX.to_string()),
        ("i128_min", i128::MIN.to_string()),
        ("two_to_64", (1u128 << 64).to_string()),
        ("nested", format!("{{\"id\":{}}}", 1u128 << 100)),
        ("float", "0.30000000000000004".to_owned()),
        ("text", "\"plain\"".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let key = adapter.save(exact.clone(), &ttl).await.unwrap();
    let back = adapter.load(&key).await.unwrap().unwrap();
    for (name, text) in &exact {
        assert_eq!(back.get(name), Some(text), "{name}");
    }
    let n: u128 = serde_json::from_str(&back["u128_max"]).unwrap();
    assert_eq!(n, u128::MAX);

    store.drop_namespace().await.unwrap();
}

#[actix_web::test]
async fn memory() {
    rules(Arc::new(session_memory::MemoryStore::new())).await;
}

#[actix_web::test]
async fn sqlite() {
    rules(Arc::new(
        session_sqlite::SqliteConfig::temporary()
            .unwrap()
            .open()
            .await
            .unwrap(),
    ))
    .await;
}

#[actix_web::test]
async fn postgres() {
    let factory = session_test_support::factory_from_env(
        session_test_support::POSTGRES,
        session_postgres::testing::factory,
    );
    if factory.base().is_none() {
        return;
    }
    rules(factory.open_fresh().await.unwrap()).await;
}

#[actix_web::test]
async fn redis() {
    let factory = session_test_support::factory_from_env(
        session_test_support::REDIS,
        session_redis::testing::factory,
    );
    if factory.base().is_none() {
        return;
    }
    rules(factory.open_fresh().await.unwrap()).await;
}

#[actix_web::test]
async fn mysql() {
    let factory = session_test_support::factory_from_env(
        session_test_support::MYSQL,
        session_mysql::testing::factory,
    );
    if factory.base().is_none() {
        return;
    }
    rules(factory.open_fresh().await.unwrap()).await;
}
