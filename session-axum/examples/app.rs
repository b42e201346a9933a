//! A small app over the session layer: an index page, login and logout as POST forms, a
//! counter, and a "your sessions" page listing the user's sessions on every device (through the
//! store's owner index) with "log out other devices". The store comes from `SESSION_STORE_URL` (default: an SQLite file
//! `sessions.sqlite`); the address from `ADDR` (default `127.0.0.1:3000`); logging from
//! `RUST_LOG` (default `info`; `RUST_LOG=session_manager=debug` shows a `session_store` span per
//! store operation); the store's operation counts and latencies in Prometheus' text format at
//! `GET /metrics` (`session_store_operations_total`, `session_store_operation_seconds`).
//!
//! ```sh
//! cargo run -p session-axum --example app      # then open http://127.0.0.1:3000/
//! curl -c jar -b jar -d user=ada http://127.0.0.1:3000/login
//! curl -c jar -b jar http://127.0.0.1:3000/counter
//! curl -c jar -b jar http://127.0.0.1:3000/sessions
//! curl -c jar -b jar -X POST http://127.0.0.1:3000/sessions/revoke-others
//! curl -c jar -b jar -X POST http://127.0.0.1:3000/logout
//! curl http://127.0.0.1:3000/metrics
//! ```

use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use session_axum::{Manager, Session, SessionLayer};
use session_manager::{ErrorKind, Owner, Ownership, SessionManager};

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
        if self.0.kind() == ErrorKind::InvalidInput {
            // A user name that cannot be an owner: the client's mistake, said as such.
            return (StatusCode::BAD_REQUEST, format!("{}\n", self.0)).into_response();
        }
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
  <li><code>GET /sessions</code>: your sessions on every device</li>
  <li><code>POST /sessions/revoke-others</code>: logs out every other device</li>
  <li><code>POST /logout</code>: ends the session and removes its cookie</li>
</ul>
<form method="post" action="/login">
  <input name="user" placeholder="user name" required>
  <button>Log in</button>
</form>
<form method="post" action="/logout"><button>Log out</button></form>
<p><a href="/counter">Counter</a> · <a href="/sessions">Your sessions</a></p>
"#;

/// The longest label kept: a user agent cut at a character boundary.
fn device_label(headers: &HeaderMap) -> String {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("unknown device");
    let mut label: String = agent.chars().filter(|c| !c.is_control()).collect();
    while label.len() > session_manager::MAX_LABEL_BYTES {
        label.pop();
    }
    label
}

/// `text` safe inside HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn index() -> Html<&'static str> {
    Html(INDEX)
}

async fn login(
    session: Session,
    headers: HeaderMap,
    Form(login): Form<Login>,
) -> Result<String, Internal> {
    let owner = Ownership::new(Owner::new(&login.user)?, device_label(&headers))?;
    session.insert("user", &login.user).await?;
    // The session now belongs to the user (listed on their sessions page, revoked with the
    // others); the owner and a fresh id are one store write: a session id planted before login
    // is worthless afterwards.
    session.set_owner(Some(&owner));
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

/// The logged-in user of `session`, as an owner.
async fn user(session: &Session) -> Result<Option<Owner>, Internal> {
    let user: Option<String> = session.get("user").await?;
    Ok(user.map(Owner::new).transpose()?)
}

async fn sessions(session: Session) -> Result<Response, Internal> {
    let Some(user) = user(&session).await? else {
        return Ok((StatusCode::UNAUTHORIZED, "log in first\n").into_response());
    };
    let this = session.id().map(|id| id.key());
    let mut page = format!(
        "<!doctype html>\n<title>Your sessions</title>\n<h1>Sessions of {}</h1>\n<ul>\n",
        escape(user.as_str())
    );
    for listed in session.sessions_of(&user).await? {
        let marker = if Some(listed.key) == this {
            " (this device)"
        } else {
            ""
        };
        page.push_str(&format!(
            "  <li>{}{marker}, expires {}</li>\n",
            escape(&listed.label),
            listed.expires_at
        ));
    }
    page.push_str(
        "</ul>\n<form method=\"post\" action=\"/sessions/revoke-others\"><button>Log out other devices</button></form>\n",
    );
    Ok(Html(page).into_response())
}

async fn revoke_others(session: Session) -> Result<Response, Internal> {
    let Some(user) = user(&session).await? else {
        return Ok((StatusCode::UNAUTHORIZED, "log in first\n").into_response());
    };
    let revoked = session.revoke_other_sessions(&user).await?;
    tracing::info!(user = %user, revoked, "logged out other devices");
    Ok(format!("logged out {revoked} other session(s)\n").into_response())
}

async fn logout(session: Session) -> Result<&'static str, Internal> {
    session.flush().await?;
    Ok("bye\n")
}

/// The app's routes over `manager`; `/metrics` renders `prometheus` (outside the session layer:
/// a scrape never touches a session).
fn app(manager: Arc<Manager>, prometheus: PrometheusHandle) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", post(login))
        .route("/counter", get(counter))
        .route("/sessions", get(sessions))
        .route("/sessions/revoke-others", post(revoke_others))
        .route("/logout", post(logout))
        .layer(SessionLayer::with_manager(manager).with_secure(false))
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
    // Every backend keeps an owner index: the manager lists and revokes a user's sessions.
    let store = session_any::connect(&url).await?;
    let manager = Arc::new(SessionManager::new(store));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(
        "listening on http://{addr} with the store {}",
        session_manager::redact_url(&url)
    );
    axum::serve(listener, app(manager, prometheus)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_manager::time::OffsetDateTime;
    use session_manager::{
        CreateOutcome, Error, ErrorKind, Record, SessionKey, SessionStore, UpdateOutcome,
    };

    /// The process's one recorder (tests may share a process).
    fn recorder() -> PrometheusHandle {
        static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
        HANDLE.get_or_init(prometheus).clone()
    }

    /// Serves the app over `store`, used as its owner index too.
    async fn serve(store: Arc<dyn SessionStore>) -> String {
        serve_with(Arc::new(SessionManager::new(store))).await
    }

    async fn serve_with(manager: Arc<Manager>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let prometheus = recorder();
        tokio::spawn(async move {
            axum::serve(listener, app(manager, prometheus))
                .await
                .unwrap()
        });
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

    fn client(agent: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .user_agent(agent)
            .build()
            .unwrap()
    }

    async fn text(response: reqwest::Response) -> (u16, String) {
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The "your sessions" page over HTTP, on every backend the environment offers: two
    /// devices log in as one user and each sees both (labelled with its user agent, its own
    /// marked); "log out other devices" on one ends the other's session (its next request is
    /// anonymous) and keeps its own; another user sees nothing of them.
    #[tokio::test]
    async fn sessions_page_lists_devices_and_logs_out_the_others() {
        let mut urls = vec!["memory://".to_owned(), "sqlite::memory:".to_owned()];
        for var in [
            "SESSION_TEST_POSTGRES_URL",
            "SESSION_TEST_REDIS_URL",
            "SESSION_TEST_MYSQL_URL",
        ] {
            urls.extend(std::env::var(var).ok());
        }
        for url in urls {
            let namespace = format!("app_{:016x}", rand_suffix());
            let config = session_any::StoreConfig::new(&url)
                .isolated(&namespace)
                .unwrap();
            let store = Arc::new(
                session_any::AnyStore::open(&config)
                    .await
                    .unwrap_or_else(|e| panic!("{url}: {e}")),
            );
            let base = serve(Arc::clone(&store) as Arc<dyn SessionStore>).await;
            let (laptop, phone, other) = (
                client("Laptop <Firefox>"),
                client("Phone"),
                client("Elsewhere"),
            );
            for (device, user) in [(&laptop, "ada"), (&phone, "ada"), (&other, "bob")] {
                let login = device
                    .post(format!("{base}/login"))
                    .form(&[("user", user)])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(text(login).await, (200, format!("hello {user}\n")), "{url}");
            }
            let (status, page) =
                text(laptop.get(format!("{base}/sessions")).send().await.unwrap()).await;
            assert_eq!(status, 200, "{url}: {page}");
            assert!(page.contains("Sessions of ada"), "{url}: {page}");
            assert!(
                page.contains("Laptop &lt;Firefox&gt; (this device)"),
                "{url}: {page}"
            );
            assert!(page.contains("<li>Phone, expires"), "{url}: {page}");
            assert!(
                !page.contains("Elsewhere") && !page.contains("<Firefox>"),
                "{url}: {page}"
            );
            let (_, bob) = text(other.get(format!("{base}/sessions")).send().await.unwrap()).await;
            assert_eq!(bob.matches("<li>").count(), 1, "{url}: {bob}");
            let revoke = laptop
                .post(format!("{base}/sessions/revoke-others"))
                .send()
                .await
                .unwrap();
            assert_eq!(
                text(revoke).await,
                (200, "logged out 1 other session(s)\n".into()),
                "{url}"
            );
            let (_, phone_counter) =
                text(phone.get(format!("{base}/counter")).send().await.unwrap()).await;
            assert_eq!(
                phone_counter, "anonymous 1\n",
                "{url}: the phone is still logged in"
            );
            let (_, laptop_counter) =
                text(laptop.get(format!("{base}/counter")).send().await.unwrap()).await;
            assert_eq!(laptop_counter, "ada 1\n", "{url}");
            let (_, page) =
                text(laptop.get(format!("{base}/sessions")).send().await.unwrap()).await;
            assert_eq!(page.matches("<li>").count(), 1, "{url}: {page}");
            let (_, bob) = text(other.get(format!("{base}/counter")).send().await.unwrap()).await;
            assert_eq!(bob, "bob 1\n", "{url}");
            // Not logged in: no page; a user name that cannot be an owner: 400.
            let anonymous = client("Anonymous");
            let (status, _) = text(
                anonymous
                    .get(format!("{base}/sessions"))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, 401, "{url}");
            let bad = anonymous
                .post(format!("{base}/login"))
                .form(&[("user", "x".repeat(300))])
                .send()
                .await
                .unwrap();
            assert_eq!(bad.status(), 400, "{url}");
            session_any::StoreAdmin::drop_namespace(&*store)
                .await
                .unwrap();
        }
    }

    fn rand_suffix() -> u64 {
        let id = session_manager::SessionId::generate();
        u64::from_le_bytes(id.key().as_bytes()[..8].try_into().unwrap())
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
        fn capabilities(&self) -> session_manager::Capabilities {
            session_manager::Capabilities::new()
        }
        async fn create_opts(
            &self,
            _: &SessionKey,
            _: OffsetDateTime,
            _: session_manager::Bytes,
            _options: &session_manager::WriteOptions,
        ) -> session_manager::Result<CreateOutcome> {
            Err(broken())
        }
        async fn read(&self, _: &SessionKey) -> session_manager::Result<Option<Record>> {
            Err(broken())
        }
        async fn update_opts(
            &self,
            _: &SessionKey,
            _: &SessionKey,
            _: u64,
            _: OffsetDateTime,
            _: session_manager::Bytes,
            _options: &session_manager::WriteOptions,
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
        let store: Arc<dyn session_manager::SessionStore> = Arc::new(Broken);
        let base = serve_with(Arc::new(SessionManager::new(store))).await;
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
