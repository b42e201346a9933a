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
    host_prefix: bool,
}

impl CookieConfig {
    /// The cookie's name on the wire: `__Host-` + name when the cookie qualifies for that prefix
    /// (Secure, `Path=/`, no `Domain`) and the prefix was not turned off.
    fn wire_name(&self) -> String {
        if self.host_prefix
            && self.secure
            && self.path == "/"
            && self.domain.is_none()
            && !self.name.starts_with("__Host-")
        {
            format!("__Host-{}", self.name)
        } else {
            self.name.clone()
        }
    }
}

/// A tower [`Layer`] that gives every request a lazy [`Session`] (in its extensions, taken by
/// handlers as an argument) and, after the response, saves the session if it was used and sets,
/// refreshes or removes the session cookie.
///
/// - The cookie holds the session token; a malformed, unknown or expired cookie counts as no
///   session, and never causes a store write by itself. A session is created (under a fresh id)
///   only when a handler writes to it. When the request carries several cookies of that name
///   (a sibling subdomain can set one), the first well-formed one is used.
/// - Requests that never touch their session make no store call at all.
/// - Defaults: cookie `__Host-id` (the name `id` with the `__Host-` prefix, which browsers only
///   accept from a secure origin for `Path=/` without `Domain`, so no subdomain can plant or
///   shadow it; the prefix is added whenever the cookie qualifies, and
///   [`with_host_prefix(false)`](Self::with_host_prefix) turns it off), path `/`, `HttpOnly`,
///   `Secure`, `SameSite=Lax`, a browser-session cookie (no `Max-Age`); with
///   [`Expiry::OnInactivity`] or [`Expiry::AtDateTime`] the cookie is persistent and follows
///   the session's expiry.
/// - The cookie is removed (`Max-Age=0`) only when the request's cookie is malformed or the
///   handler itself ended the session ([`Session::flush`], [`Session::delete`]). A well-formed
///   cookie whose session is unknown, or was rotated or deleted by another request, gets no
///   `Set-Cookie` at all: a slow request still holding the old cookie of a session that was
///   just rotated at login must not delete the browser's new cookie (same name, path and
///   domain).
/// - A save that finds the session gone (logged out or rotated elsewhere) writes nothing. A save
///   that meets [`ErrorKind::Conflict`] (a value the handler read was changed by a concurrent
///   request, see [`Session`]) turns the response into a 409 Conflict; any other store error
///   into a 500, logged with `tracing` (the write's outcome is unknown; no cookie is sent).
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
                host_prefix: true,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut CookieConfig)) -> Self {
        f(Arc::make_mut(&mut self.cookie));
        self
    }

    /// Sets the cookie's name (default `id`; on the wire `__Host-id` while the cookie qualifies
    /// for the prefix, see [`with_host_prefix`](Self::with_host_prefix)).
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

    /// Whether the `__Host-` prefix is added to the cookie's name when the cookie qualifies
    /// (Secure, `Path=/`, no `Domain`; default on). Turn it off to keep the exact name, for
    /// example to read cookies set by an earlier version of the application.
    #[must_use]
    pub fn with_host_prefix(self, host_prefix: bool) -> Self {
        self.edit(|c| c.host_prefix = host_prefix)
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

/// The first well-formed cookie `name` of the request; `Malformed` when there are only
/// malformed ones.
fn incoming<B>(request: &Request<B>, name: &str) -> Incoming {
    let mut found = Incoming::None;
    for header in request.headers().get_all(COOKIE) {
        let Ok(text) = header.to_str() else {
            continue;
        };
        for cookie in Cookie::split_parse(text).flatten() {
            if cookie.name() == name {
                match SessionId::parse(cookie.value()) {
                    Ok(id) => return Incoming::Id(id),
                    Err(_) => found = Incoming::Malformed,
                }
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
            let incoming = incoming(&request, &config.wire_name());
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
    if (session.is_modified() || session.is_loaded() || session.ended_here())
        && let Err(error) = session.save().await
    {
        match error.kind() {
            ErrorKind::NotFound => {
                tracing::debug!("the session ended elsewhere; nothing written, cookie left alone");
            }
            ErrorKind::Conflict => {
                tracing::info!(%error, "a concurrent request changed a session value this one read");
                *response = Response::default();
                *response.status_mut() = StatusCode::CONFLICT;
                return;
            }
            _ => {
                tracing::error!(%error, "saving the session failed");
                *response = Response::default();
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                return;
            }
        }
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
        // A well-formed cookie whose session ended elsewhere (or never existed): leave it alone,
        // it may already have been replaced in the browser by a newer one of the same name.
        (None, Incoming::Id(_)) if !session.ended_here() => return,
        (None, Incoming::Malformed | Incoming::Id(_)) => {
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
    let mut cookie = Cookie::build((config.wire_name(), value))
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
