//! Login, counter, logout. The store comes from `SESSION_STORE_URL` (default: an SQLite file
//! `sessions.sqlite`); the address from `ADDR` (default `127.0.0.1:3000`).
//!
//! ```sh
//! cargo run -p session-axum --example app
//! curl -c jar -b jar 'http://127.0.0.1:3000/login?user=ada'
//! curl -c jar -b jar http://127.0.0.1:3000/counter
//! curl -c jar -b jar http://127.0.0.1:3000/logout
//! ```

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;
use session_axum::{Session, SessionLayer};

#[derive(serde::Deserialize)]
struct Login {
    user: String,
}

type Reply = Result<String, (StatusCode, String)>;

fn internal(error: session_core::Error) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

async fn login(session: Session, Query(login): Query<Login>) -> Reply {
    session
        .insert("user", &login.user)
        .await
        .map_err(internal)?;
    // A fresh id on login: a session id planted before login is worthless afterwards.
    session.cycle_id().await.map_err(internal)?;
    Ok(format!("hello {}\n", login.user))
}

async fn counter(session: Session) -> Reply {
    let n: u64 = session.get("n").await.map_err(internal)?.unwrap_or(0) + 1;
    session.insert("n", n).await.map_err(internal)?;
    let user: Option<String> = session.get("user").await.map_err(internal)?;
    Ok(format!("{} {n}\n", user.as_deref().unwrap_or("anonymous")))
}

async fn logout(session: Session) -> Reply {
    session.flush().await.map_err(internal)?;
    Ok("bye\n".to_owned())
}

/// The app's routes over `store`.
fn app(store: std::sync::Arc<dyn session_core::SessionStore>) -> Router {
    Router::new()
        .route("/login", get(login))
        .route("/counter", get(counter))
        .route("/logout", get(logout))
        .layer(SessionLayer::new(store).with_secure(false))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url =
        std::env::var("SESSION_STORE_URL").unwrap_or_else(|_| "sqlite://sessions.sqlite".into());
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let store = session_any::connect(&url).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "listening on http://{addr} with the store {}",
        session_core::redact_url(&url)
    );
    axum::serve(listener, app(store)).await?;
    Ok(())
}
