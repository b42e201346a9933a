//! No secret leaves the crates: with a password in the user part of the URL or in a query
//! parameter, nothing that is logged (tracing and `log` records of every crate, captured at
//! TRACE), printed with `Debug` or `Display`, serialized, or returned in an error contains it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use session_any::{AnyStore, StoreAdmin, StoreConfig};
use session_core::{SessionId, SessionStore};
use tracing_subscriber::fmt::MakeWriter;

const SECRET: &str = "Hunter2SecretPw";

/// Everything written by the tracing subscriber.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `url` with `user:SECRET` as its user part.
fn with_password(url: &str, user: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_username(user).unwrap();
    parsed.set_password(Some(SECRET)).unwrap();
    parsed.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_logged_printed_serialized_or_returned() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .try_init()
        .expect("the only subscriber of this test binary");

    let postgres = session_test_support::server_url("SESSION_TEST_POSTGRES_URL");
    let redis = session_test_support::server_url("SESSION_TEST_REDIS_URL");
    let port = closed_port();
    let mut urls = vec![
        format!("postgres://app:{SECRET}@127.0.0.1:{port}/app"),
        format!("postgres://127.0.0.1:{port}/app?password={SECRET}"),
        format!("postgres://127.0.0.1:{port}/app?sslpassword={SECRET}"),
        format!("postgres://127.0.0.1:{port}/app?client_secret={SECRET}"),
        format!("redis://:{SECRET}@127.0.0.1:{port}"),
        format!("redis://user:{SECRET}@127.0.0.1:{port}/0"),
        format!("redis+unix:///nonexistent/redis.sock?pass={SECRET}"),
        format!("rediss://127.0.0.1:{port}?token={SECRET}"),
    ];
    if let Some(url) = &postgres {
        // Trust authentication: the password is accepted, so the store opens and is used.
        urls.push(with_password(url, "postgres"));
        let mut unknown_db = url::Url::parse(&with_password(url, "postgres")).unwrap();
        unknown_db.set_path("/no_such_database_here");
        urls.push(unknown_db.to_string());
        urls.push(format!(
            "{}?application_name=secrets&lazy=true",
            with_password(url, "postgres")
        ));
    }
    if let Some(url) = &redis {
        // A password sent to a server that has none: refused.
        urls.push(with_password(url, "default"));
    }

    let mut seen = Vec::new();
    for url in &urls {
        let config = StoreConfig::new(url);
        seen.push(format!("{config:?}"));
        seen.push(serde_json::to_string(&config).unwrap());
        seen.push(session_core::redact_url(url).into_owned());
        match AnyStore::open(&config.clone().isolated("secrets_check").unwrap_or(config)).await {
            Ok(store) => {
                seen.push(format!("{store:?}"));
                match store.read(&SessionId::generate().key()).await {
                    Ok(_) => {}
                    Err(error) => seen.push(format!("{error} / {error:?}")),
                }
                let _ = store.drop_namespace().await;
            }
            Err(error) => {
                seen.push(format!("{error}"));
                seen.push(format!("{error:?}"));
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    seen.push(format!("{cause} / {cause:?}"));
                    source = cause.source();
                }
            }
        }
    }
    let logged = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(
        !logged.contains(SECRET),
        "a log line holds the secret:\n{logged}"
    );
    for text in &seen {
        assert!(!text.contains(SECRET), "leaked: {text}");
    }
    assert!(seen.len() > urls.len() * 3, "every URL was tried");
}
