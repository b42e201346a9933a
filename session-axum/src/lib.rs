#![doc = include_str!("../README.md")]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request, Response, StatusCode};
use session_manager::cookie::{CookiePolicy, Finish, SameSite};
use session_manager::{Expiry, SessionManager, SessionStore};
use tower_layer::Layer;
use tower_service::Service;

pub use session_manager::cookie::SameSite as CookieSameSite;
pub use session_manager::{Expiry as SessionExpiry, Session};

/// The manager type the layer works with.
pub type Manager = SessionManager<Arc<dyn SessionStore>>;

/// A tower [`Layer`] that gives every request a lazy [`Session`] (in its extensions, taken by
/// handlers as an argument) and, after the response, saves the session if it was used and sets,
/// refreshes or removes the session cookie.
///
/// - Requests that never touch their session make no store call at all.
/// - The cookie rules (which cookie counts, when a session is created, when the cookie is set,
///   refreshed or removed, what happens when the session ended elsewhere) are those of
///   [`CookiePolicy`]; its defaults are a `__Host-id` cookie, `Secure`, `HttpOnly`,
///   `SameSite=Lax`, browser-session.
/// - A save that meets [`ErrorKind::Conflict`](session_manager::ErrorKind::Conflict) (a value
///   the handler read was changed by a concurrent request, see [`Session`]) turns the response
///   into a 409 Conflict; any other store error into a 500, logged with `tracing` (the write's
///   outcome is unknown; no cookie is sent).
#[derive(Clone)]
pub struct SessionLayer {
    manager: Arc<Manager>,
    cookie: Arc<CookiePolicy>,
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
            cookie: Arc::new(CookiePolicy::new()),
        }
    }

    fn edit(mut self, f: impl FnOnce(CookiePolicy) -> CookiePolicy) -> Self {
        self.cookie = Arc::new(f((*self.cookie).clone()));
        self
    }

    /// Sets the cookie's name (default `id`; on the wire `__Host-id` while the cookie qualifies
    /// for the prefix, see [`with_host_prefix`](Self::with_host_prefix)).
    #[must_use]
    pub fn with_name(self, name: impl Into<String>) -> Self {
        self.edit(|c| c.with_name(name))
    }

    /// Sets the cookie's path (default `/`).
    #[must_use]
    pub fn with_path(self, path: impl Into<String>) -> Self {
        self.edit(|c| c.with_path(path))
    }

    /// Sets the cookie's domain (default: none, the request's host).
    #[must_use]
    pub fn with_domain(self, domain: impl Into<String>) -> Self {
        self.edit(|c| c.with_domain(domain))
    }

    /// Sets `Secure` (default on: the cookie only travels over HTTPS; browsers treat
    /// `http://localhost` as secure too).
    #[must_use]
    pub fn with_secure(self, secure: bool) -> Self {
        self.edit(|c| c.with_secure(secure))
    }

    /// Sets `HttpOnly` (default on: scripts cannot read the token).
    #[must_use]
    pub fn with_http_only(self, http_only: bool) -> Self {
        self.edit(|c| c.with_http_only(http_only))
    }

    /// Sets `SameSite` (default `Lax`).
    #[must_use]
    pub fn with_same_site(self, same_site: SameSite) -> Self {
        self.edit(|c| c.with_same_site(same_site))
    }

    /// Whether the `__Host-` prefix is added to the cookie's name when the cookie qualifies
    /// (Secure, `Path=/`, no `Domain`; default on). Turn it off to keep the exact name, for
    /// example to read cookies set by an earlier version of the application.
    #[must_use]
    pub fn with_host_prefix(self, host_prefix: bool) -> Self {
        self.edit(|c| c.with_host_prefix(host_prefix))
    }

    /// Sets the default expiry of new handles (default `None`: a browser-session cookie and the
    /// manager's policy in the store). Handlers may change it per session with
    /// [`Session::set_expiry`].
    #[must_use]
    pub fn with_expiry(self, expiry: Option<Expiry>) -> Self {
        self.edit(|c| c.with_expiry(expiry))
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
            let policy = &layer.cookie;
            let headers = request.headers().get_all(COOKIE);
            let incoming = policy.incoming(headers.iter().filter_map(|h| h.to_str().ok()));
            let session = policy.session(&incoming, Arc::clone(&layer.manager));
            request.extensions_mut().insert(session.clone());
            let mut response = inner.call(request).await?;
            match policy.finish(&session, &incoming).await {
                Finish::Unchanged => {}
                Finish::SetCookie(cookie) => match HeaderValue::from_str(&cookie) {
                    Ok(value) => {
                        response.headers_mut().append(SET_COOKIE, value);
                    }
                    Err(error) => {
                        tracing::error!(%error, "the session cookie is not a valid header value");
                    }
                },
                Finish::Conflict(_) => {
                    response = Response::default();
                    *response.status_mut() = StatusCode::CONFLICT;
                }
                Finish::Failed(_) => {
                    response = Response::default();
                    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                }
            }
            Ok(response)
        })
    }
}
