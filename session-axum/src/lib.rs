#![doc = include_str!("../README.md")]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cookie::{Cookie, SameSite};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request, Response, StatusCode};
use session_core::{ErrorKind, Expiry, SessionId, SessionManager, SessionStore};
use tower_layer::Layer;
use tower_service::Service;

pub use cookie::SameSite as CookieSameSite;
pub use session_core::{Expiry as SessionExpiry, Session};

/// The manager type the layer works with.
pub type Manager = SessionManager<Arc<dyn SessionStore>>;

/// Cookie settings of a [`SessionLayer`].
#[derive(Debug, Clone)]
struct CookieConfig {
    name: String,
    path: String,
    domain: Option<String>,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    expiry: Option<Expiry>,
}

/// A tower [`Layer`] that gives every request a lazy [`Session`] (in its extensions, taken by
/// handlers as an argument) and, after the response, saves the session if it was used and sets,
/// refreshes or removes the session cookie.
///
/// - The cookie holds the session token; a malformed, unknown or expired cookie counts as no
///   session, and never causes a store write by itself. A session is created (under a fresh id)
///   only when a handler writes to it.
/// - Requests that never touch their session make no store call at all.
/// - Defaults: cookie `id`, path `/`, `HttpOnly`, `Secure`, `SameSite=Lax`, a browser-session
///   cookie (no `Max-Age`); with [`Expiry::OnInactivity`] or [`Expiry::AtDateTime`] the cookie
///   is persistent and follows the session's expiry.
/// - A save that fails with a store error turns the response into a 500 (the error is logged
///   with `tracing`); a save that finds the session gone (logged out or rotated elsewhere)
///   removes the cookie and writes nothing.
#[derive(Clone)]
pub struct SessionLayer {
    manager: Arc<Manager>,
    cookie: Arc<CookieConfig>,
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("manager", &self.manager)
            .field("cookie", &self.cookie)
            .finish()
    }
}

impl SessionLayer {
    /// A layer over `store` with a default [`SessionManager`].
    pub fn new(store: impl SessionStore) -> Self {
        let store: Arc<dyn SessionStore> = Arc::new(store);
        Self::with_manager(Arc::new(SessionManager::new(store)))
    }

    /// A layer over `manager` (its expiry policy, id generator, size limit).
    pub fn with_manager(manager: Arc<Manager>) -> Self {
        Self {
            manager,
            cookie: Arc::new(CookieConfig {
                name: "id".to_owned(),
                path: "/".to_owned(),
                domain: None,
                secure: true,
                http_only: true,
                same_site: SameSite::Lax,
                expiry: None,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut CookieConfig)) -> Self {
        f(Arc::make_mut(&mut self.cookie));
        self
    }

    /// Sets the cookie's name (default `id`).
    #[must_use]
    pub fn with_name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.edit(|c| c.name = name)
    }

    /// Sets the cookie's path (default `/`).
    #[must_use]
    pub fn with_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.edit(|c| c.path = path)
    }

    /// Sets the cookie's domain (default: none, the request's host).
    #[must_use]
    pub fn with_domain(self, domain: impl Into<String>) -> Self {
        let domain = domain.into();
        self.edit(|c| c.domain = Some(domain))
    }

    /// Sets `Secure` (default on: the cookie only travels over HTTPS; browsers treat
    /// `http://localhost` as secure too).
    #[must_use]
    pub fn with_secure(self, secure: bool) -> Self {
        self.edit(|c| c.secure = secure)
    }

    /// Sets `HttpOnly` (default on: scripts cannot read the token).
    #[must_use]
    pub fn with_http_only(self, http_only: bool) -> Self {
        self.edit(|c| c.http_only = http_only)
    }

    /// Sets `SameSite` (default `Lax`).
    #[must_use]
    pub fn with_same_site(self, same_site: SameSite) -> Self {
        self.edit(|c| c.same_site = same_site)
    }

    /// Sets the default expiry of new handles (default `None`: a browser-session cookie and the
    /// manager's policy in the store). Handlers may change it per session with
    /// [`Session::set_expiry`].
    #[must_use]
    pub fn with_expiry(self, expiry: Option<Expiry>) -> Self {
        self.edit(|c| c.expiry = expiry)
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The [`Service`] made by [`SessionLayer`].
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    layer: SessionLayer,
}

/// What the request's cookie said.
enum Incoming {
    /// No cookie of ours.
    None,
    /// A cookie of ours that is not a well-formed token.
    Malformed,
    /// A well-formed token (the store may not know it).
    Id(SessionId),
}

fn incoming<B>(request: &Request<B>, name: &str) -> Incoming {
    let mut found = Incoming::None;
    for header in request.headers().get_all(COOKIE) {
        let Ok(text) = header.to_str() else {
            continue;
        };
        for cookie in Cookie::split_parse(text).flatten() {
            if cookie.name() == name {
                found = match SessionId::parse(cookie.value()) {
                    Ok(id) => Incoming::Id(id),
                    Err(_) => Incoming::Malformed,
                };
            }
        }
    }
    found
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone is not ready; the instance polled ready goes into the future.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let config = &layer.cookie;
            let incoming = incoming(&request, &config.name);
            let id = match &incoming {
                Incoming::Id(id) => Some(id.clone()),
                Incoming::None | Incoming::Malformed => None,
            };
            let session = Session::with_manager(id, Arc::clone(&layer.manager), config.expiry);
            request.extensions_mut().insert(session.clone());
            let mut response = inner.call(request).await?;
            finish(&session, &incoming, config, &mut response).await;
            Ok(response)
        })
    }
}

/// Saves the session if it was used and sets the cookie the response needs.
async fn finish<B: Default>(
    session: &Session,
    incoming: &Incoming,
    config: &CookieConfig,
    response: &mut Response<B>,
) {
    if (session.is_modified() || session.is_loaded())
        && let Err(error) = session.save().await
    {
        if error.kind() != ErrorKind::NotFound {
            tracing::error!(%error, "saving the session failed");
            *response = Response::default();
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return;
        }
        tracing::debug!("the session ended elsewhere; removing the cookie");
    }
    let expiry = session.expiry();
    let persistent = matches!(
        expiry,
        Some(Expiry::OnInactivity(_) | Expiry::AtDateTime(_))
    );
    let cookie = match (session.id(), incoming) {
        (Some(id), incoming) => {
            let changed = match incoming {
                Incoming::Id(old) => *old != id,
                Incoming::None | Incoming::Malformed => true,
            };
            // A browser-session cookie carries nothing but the id: re-sent only when the id or
            // the kind of expiry changed. A persistent one slides with each use.
            let refresh = persistent && (session.is_modified() || session.is_loaded());
            if !(changed || refresh || expiry != config.expiry) {
                return;
            }
            let mut cookie = base_cookie(config, id.expose());
            match expiry {
                Some(Expiry::OnInactivity(_) | Expiry::AtDateTime(_)) => {
                    cookie.set_max_age(session.expiry_age());
                }
                Some(Expiry::OnSessionEnd) | None => {}
            }
            cookie
        }
        (None, Incoming::None) => return,
        (None, Incoming::Malformed | Incoming::Id(_)) => {
            if !session.is_loaded() && !session.is_modified() {
                // A well-formed cookie the handler never looked at: leave it alone.
                if matches!(incoming, Incoming::Id(_)) {
                    return;
                }
            }
            let mut cookie = base_cookie(config, String::new());
            cookie.make_removal();
            cookie
        }
    };
    match HeaderValue::from_str(&cookie.to_string()) {
        Ok(value) => {
            response.headers_mut().append(SET_COOKIE, value);
        }
        Err(error) => tracing::error!(%error, "the session cookie is not a valid header value"),
    }
}

fn base_cookie(config: &CookieConfig, value: String) -> Cookie<'static> {
    let mut cookie = Cookie::build((config.name.clone(), value))
        .path(config.path.clone())
        .secure(config.secure)
        .http_only(config.http_only)
        .same_site(config.same_site)
        .build();
    if let Some(domain) = &config.domain {
        cookie.set_domain(domain.clone());
    }
    cookie
}
