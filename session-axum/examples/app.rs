//! A small app over the session layer: an index page, login and logout as POST forms, a
//! counter. The store comes from `SESSION_STORE_URL` (default: an SQLite file
//! `sessions.sqlite`); the address from `ADDR` (default `127.0.0.1:3000`); logging from
//! `RUST_LOG` (default `info`; `RUST_LOG=session_manager=debug` shows a `session_store` span per
//! store operation); the store's operation counts and latencies in Prometheus' text format at
//! `GET /metrics` (`session_store_operations_total`, `session_store_operation_seconds`).
//!
//! ```sh
//! cargo run -p session-axum --example app      # then open http://127.0.0.1:3000/
//! curl -c jar -b jar -d user=ada http://127.0.0.1:3000/login
//! curl -c jar -b jar http://127.0.0.1:3000/counter
//! curl -c jar -b jar -X POST http://127.0.0.1:3000/logout
//! curl http://127.0.0.1:3000/metrics
//! ```

use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use session_axum::{Session, SessionLayer};
use session_manager::SessionStore;

#[derive(serde::Deserialize)]
struct Login {
    user: String,
}

/// A handler's failure: logged in full, answered with a generic 500 (store errors can name
/// hosts, tables and database messages; they are for the log, not for the client).
struct Internal(session_manager::Error);

impl From<session_manager::Error> for Internal {
    fn from(error: session_manager::Error) -> Self {
        Self(error)
    }
}

impl IntoResponse for Internal {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "request failed");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
    }
}

const INDEX: &str = r#"<!doctype html>
<title>session-axum example</title>
<h1>session-axum example</h1>
<ul>
  <li><code>GET /</code>: this page</li>
  <li><code>POST /login</code> (form field <code>user</code>): stores the user in the session and gives it a fresh id</li>
  <li><code>GET /counter</code>: counts this session's visits and says who is logged in</li>
  <li><code>POST /logout</code>: ends the session and removes its cookie</li>
</ul>
<form method="post" action="/login">
  <input name="user" placeholder="user name" required>
  <button>Log in</button>
</form>
<form method="post" action="/logout"><button>Log out</button></form>
<p><a href="/counter">Counter</a></p>
"#;

async fn index() -> Html<&'static str> {
    Html(INDEX)
}

async fn login(session: Session, Form(login): Form<Login>) -> Result<String, Internal> {
    session.insert("user", &login.user).await?;
    // A fresh id on login: a session id planted before login is worthless afterwards.
    session.cycle_id().await?;
    tracing::info!(user = %login.user, "logged in");
    Ok(format!("hello {}\n", login.user))
}

async fn counter(session: Session) -> Result<String, Internal> {
    let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
    session.insert("n", n).await?;
    let user: Option<String> = session.get("user").await?;
    Ok(format!("{} {n}\n", user.as_deref().unwrap_or("anonymous")))
}

async fn logout(session: Session) -> Result<&'static str, Internal> {
    session.flush().await?;
    Ok("bye\n")
}

/// The app's routes over `store`; `/metrics` renders `prometheus` (outside the session layer:
/// a scrape never touches a session).
fn app(store: Arc<dyn SessionStore>, prometheus: PrometheusHandle) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", post(login))
        .route("/counter", get(counter))
        .route("/logout", post(logout))
        .layer(SessionLayer::new(store).with_secure(false))
        .route("/metrics", get(move || async move { prometheus.render() }))
}

/// The Prometheus recorder: installed before any store is opened (stores register their
/// metric handles when they open).
fn prometheus() -> PrometheusHandle {
    PrometheusBuilder::new()
        .install_recorder()
        .expect("no other metrics recorder installed")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // A line per closed span: each store operation's `session_store` span (at DEBUG) with
        // its backend, operation, outcome and duration.
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .init();
    let url =
        std::env::var("SESSION_STORE_URL").unwrap_or_else(|_| "sqlite://sessions.sqlite".into());
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let prometheus = prometheus();
    let store = session_any::connect(&url).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(
        "listening on http://{addr} with the store {}",
        session_manager::redact_url(&url)
    );
    axum::serve(listener, app(store, prometheus)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_manager::time::OffsetDateTime;
    use session_manager::{CreateOutcome, Error, ErrorKind, Record, SessionKey, UpdateOutcome};

    /// The process's one recorder (tests may share a process).
    fn recorder() -> PrometheusHandle {
        static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
        HANDLE.get_or_init(prometheus).clone()
    }

    async fn serve(store: Arc<dyn SessionStore>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let prometheus = recorder();
        tokio::spawn(async move { axum::serve(listener, app(store, prometheus)).await.unwrap() });
        base
    }

    /// A store opened from a URL after the recorder is installed is counted and timed, and
    /// `/metrics` shows it (never a key or a token).
    #[tokio::test]
    async fn metrics_endpoint_counts_store_operations() {
        let _ = recorder();
        let base = serve(session_any::connect("memory://").await.unwrap()).await;
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let login = client
            .post(format!("{base}/login"))
            .form(&[("user", "ada")])
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200);
        let counter = client.get(format!("{base}/counter")).send().await.unwrap();
        assert_eq!(counter.status(), 200);
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let count = |operation: &str, outcome: &str| -> u64 {
            let prefix = format!(
                "session_store_operations_total{{backend=\"memory\",operation=\"{operation}\",outcome=\"{outcome}\"}} "
            );
            text.lines()
                .find_map(|line| line.strip_prefix(prefix.as_str()))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0)
        };
        assert!(count("create", "created") >= 1, "{text}");
        assert!(count("read", "found") >= 1, "{text}");
        assert!(
            text.contains("session_store_operation_seconds"),
            "no latency series: {text}"
        );
    }

    /// A store with a queue (SQLite) has its queue gauge sampled every second.
    #[tokio::test]
    async fn metrics_endpoint_shows_the_queue_gauge() {
        let _ = recorder();
        let base = serve(session_any::connect("sqlite::memory:").await.unwrap()).await;
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = client
                .get(format!("{base}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if text.contains("session_store_queued{backend=\"sqlite\"} 0") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no queue gauge: {text}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    #[tokio::test]
    async fn index_forms_login_counter_logout() {
        let base = serve(Arc::new(session_memory::MemoryStore::new())).await;
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let index = client.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(index.status(), 200);
        let page = index.text().await.unwrap();
        for route in ["POST /login", "GET /counter", "POST /logout", "<form"] {
            assert!(page.contains(route), "{route} missing from the index");
        }
        // State changes only by POST.
        for path in ["/login", "/logout"] {
            let response = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(response.status(), 405, "GET {path}");
        }
        let login = client
            .post(format!("{base}/login"))
            .form(&[("user", "ada")])
            .send()
            .await
            .unwrap();
        assert_eq!(login.text().await.unwrap(), "hello ada\n");
        for n in 1..=2 {
            let counter = client.get(format!("{base}/counter")).send().await.unwrap();
            assert_eq!(counter.text().await.unwrap(), format!("ada {n}\n"));
        }
        let logout = client.post(format!("{base}/logout")).send().await.unwrap();
        assert_eq!(logout.text().await.unwrap(), "bye\n");
        let counter = client.get(format!("{base}/counter")).send().await.unwrap();
        assert_eq!(counter.text().await.unwrap(), "anonymous 1\n");
    }

    /// Fails every call with a message that must stay in the log.
    struct Broken;

    fn broken() -> Error {
        Error::new(
            ErrorKind::Backend,
            "db.internal:5432 relation app_sessions: disk full",
        )
    }

    #[session_manager::async_trait]
    impl SessionStore for Broken {
        async fn create(
            &self,
            _: &SessionKey,
            _: OffsetDateTime,
            _: session_manager::Bytes,
        ) -> session_manager::Result<CreateOutcome> {
            Err(broken())
        }
        async fn read(&self, _: &SessionKey) -> session_manager::Result<Option<Record>> {
            Err(broken())
        }
        async fn update(
            &self,
            _: &SessionKey,
            _: &SessionKey,
            _: u64,
            _: OffsetDateTime,
            _: session_manager::Bytes,
        ) -> session_manager::Result<UpdateOutcome> {
            Err(broken())
        }
        async fn touch(&self, _: &SessionKey, _: OffsetDateTime) -> session_manager::Result<bool> {
            Err(broken())
        }
        async fn delete(&self, _: &SessionKey) -> session_manager::Result<()> {
            Err(broken())
        }
        async fn delete_expired(&self) -> session_manager::Result<u64> {
            Err(broken())
        }
        async fn clear(&self) -> session_manager::Result<()> {
            Err(broken())
        }
    }

    #[tokio::test]
    async fn store_errors_are_a_generic_500() {
        let base = serve(Arc::new(Broken)).await;
        let client = reqwest::Client::new();
        let cookie = format!("id={}", session_manager::SessionId::generate().expose());
        let responses = [
            client
                .get(format!("{base}/counter"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap(),
            client
                .post(format!("{base}/login"))
                .form(&[("user", "ada")])
                .send()
                .await
                .unwrap(),
        ];
        for response in responses {
            assert_eq!(response.status(), 500);
            let body = response.text().await.unwrap();
            assert!(
                !body.contains("db.internal") && !body.contains("disk"),
                "{body}"
            );
        }
    }
}
