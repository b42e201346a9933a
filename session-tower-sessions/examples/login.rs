//! axum-login 0.18 over this workspace's stores through the adapter: log in, a protected
//! route, log out. Run it with any store URL:
//!
//! ```sh
//! SESSION_URL=sqlite://sessions.db cargo run -p session-tower-sessions --example login --features core-0-14
//! curl -c jar -X POST 'http://127.0.0.1:3000/login?user=alice&password=hunter2'
//! curl -b jar http://127.0.0.1:3000/protected
//! ```
//!
//! The users are two fixed accounts; a real application checks password hashes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum_login::{
    AuthManagerLayerBuilder, AuthSession, AuthUser, AuthnBackend, UserId, login_required,
};
use serde::{Deserialize, Serialize};
use session_manager::SessionStore;
use session_tower_sessions::TowerStore;
use tower_sessions_14::SessionManagerLayer;

/// A user of the example.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    name: String,
    password: String,
}

impl AuthUser for User {
    type Id = String;

    fn id(&self) -> String {
        self.name.clone()
    }

    /// Changing the password ends the user's sessions.
    fn session_auth_hash(&self) -> &[u8] {
        self.password.as_bytes()
    }
}

/// Who may log in.
#[derive(Debug, Clone)]
pub struct Users(Arc<HashMap<String, User>>);

impl Users {
    fn fixed() -> Self {
        let users = [("alice", "hunter2"), ("bob", "swordfish")]
            .into_iter()
            .map(|(name, password)| {
                let user = User {
                    name: name.to_owned(),
                    password: password.to_owned(),
                };
                (name.to_owned(), user)
            })
            .collect();
        Self(Arc::new(users))
    }
}

/// Credentials of the login route (query parameters, to keep the example small).
#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    user: String,
    password: String,
}

/// The fixed user list cannot fail.
#[derive(Debug)]
pub enum Never {}

impl std::fmt::Display for Never {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

impl std::error::Error for Never {}

impl AuthnBackend for Users {
    type User = User;
    type Credentials = Credentials;
    type Error = Never;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<User>, Never> {
        Ok(self
            .0
            .get(&creds.user)
            .filter(|user| user.password == creds.password)
            .cloned())
    }

    async fn get_user(&self, user_id: &UserId<Self>) -> Result<Option<User>, Never> {
        Ok(self.0.get(user_id).cloned())
    }
}

type Auth = AuthSession<Users>;

async fn login(mut auth: Auth, Query(creds): Query<Credentials>) -> impl IntoResponse {
    match auth.authenticate(creds).await {
        Ok(Some(user)) => match auth.login(&user).await {
            Ok(()) => (StatusCode::OK, format!("welcome {}", user.name)),
            Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "login failed".to_owned()),
        },
        Ok(None) => (
            StatusCode::UNAUTHORIZED,
            "wrong user or password".to_owned(),
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "session store failed".to_owned(),
        ),
    }
}

async fn protected(auth: Auth) -> impl IntoResponse {
    let name = auth.user.map(|user| user.name).unwrap_or_default();
    format!("hello {name}")
}

async fn logout(mut auth: Auth) -> impl IntoResponse {
    match auth.logout().await {
        Ok(_) => (StatusCode::OK, "bye"),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "logout failed"),
    }
}

/// The application over `store`.
pub fn app(store: Arc<dyn SessionStore>) -> Router {
    let sessions = SessionManagerLayer::new(TowerStore::new(store)).with_secure(false);
    let auth = AuthManagerLayerBuilder::new(Users::fixed(), sessions).build();
    Router::new()
        .route("/protected", get(protected))
        .route_layer(login_required!(Users))
        .route("/login", post(login))
        .route("/logout", get(logout))
        .layer(auth)
}

#[cfg_attr(test, allow(dead_code))]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("SESSION_URL").unwrap_or_else(|_| "sqlite::memory:".to_owned());
    let store = session_any::connect(&url).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "listening on http://127.0.0.1:3000, sessions in {}",
        session_manager::redact_url(&url)
    );
    axum::serve(listener, app(store)).await?;
    Ok(())
}
