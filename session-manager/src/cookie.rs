//! The cookie policy of a web layer, independent of any framework (feature `cookie`): which
//! request cookie names the session, and, after the handler ran, what to save and which
//! `Set-Cookie` the response needs. `session-axum` is this policy plus tower plumbing; a layer
//! for another framework reuses it rather than copying it.
//!
//! ```
//! use std::sync::Arc;
//! use session_manager::cookie::{CookiePolicy, Finish};
//! use session_manager::{SessionManager, SessionStore};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store: Arc<dyn SessionStore> = Arc::new(session_memory::MemoryStore::new());
//! let manager = Arc::new(SessionManager::new(store));
//! let policy = CookiePolicy::new().with_secure(false);
//!
//! // A request without a cookie; the handler writes to its session.
//! let incoming = policy.incoming(["theme=dark"]);
//! let session = policy.session(&incoming, Arc::clone(&manager));
//! session.insert("user", 42).await.unwrap();
//! match policy.finish(&session, &incoming).await {
//!     Finish::SetCookie(header) => assert!(header.starts_with("id=")),
//!     other => panic!("{other:?}"),
//! }
//! # }
//! ```

use std::sync::Arc;

use cookie::Cookie;
pub use cookie::SameSite;
use session_core::{Error, ErrorKind, SessionId, SessionStore};

use crate::{Expiry, Session, SessionManager};

/// The most bytes of `Cookie` header values one request may carry for its session cookie to
/// be read (16 KiB, over all its `Cookie` fields): browsers send at most a few KiB, servers
/// refuse headers of 8–16 KiB by default. A request over it counts as carrying no session
/// cookie (its cookie is left alone, never removed), without parsing any of it.
pub const MAX_COOKIE_HEADER_BYTES: usize = 16 * 1024;

/// Cookie settings, and the rules for reading and writing the session cookie:
///
/// - The cookie holds the session token; a malformed, unknown or expired cookie counts as no
///   session, and never causes a store write by itself. A session is created (under a fresh id)
///   only when a handler writes to it. When the request carries several cookies of that name
///   (a sibling subdomain can set one), the first well-formed one is used.
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
///   request) is [`Finish::Conflict`]; any other store error is [`Finish::Failed`] (the write's
///   outcome is unknown; no cookie is sent).
#[derive(Debug, Clone)]
pub struct CookiePolicy {
    name: String,
    path: String,
    domain: Option<String>,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    expiry: Option<Expiry>,
    host_prefix: bool,
}

/// What the request's cookie said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// No cookie of ours.
    None,
    /// Cookies of ours, none of them a well-formed token.
    Malformed,
    /// A well-formed token (the store may not know it).
    Id(SessionId),
}

impl Incoming {
    /// The token, if the request carried a well-formed one.
    pub fn id(&self) -> Option<&SessionId> {
        match self {
            Self::Id(id) => Some(id),
            Self::None | Self::Malformed => None,
        }
    }
}

/// What the response needs after [`CookiePolicy::finish`].
#[derive(Debug)]
#[must_use]
pub enum Finish {
    /// Nothing: leave the response as it is.
    Unchanged,
    /// Append this `Set-Cookie` header value.
    SetCookie(String),
    /// A value the handler read was changed by a concurrent request; nothing was written.
    /// Web layers answer 409 Conflict.
    Conflict(Error),
    /// The store failed; the write's outcome is unknown and no cookie is sent. Web layers
    /// answer 500 (the error is logged here).
    Failed(Error),
}

impl Default for CookiePolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl CookiePolicy {
    /// The defaults: `__Host-id`, `/`, `Secure`, `HttpOnly`, `SameSite=Lax`, browser-session.
    pub fn new() -> Self {
        Self {
            name: "id".to_owned(),
            path: "/".to_owned(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            expiry: None,
            host_prefix: true,
        }
    }

    /// Sets the cookie's name (default `id`; on the wire `__Host-id` while the cookie qualifies
    /// for the prefix, see [`with_host_prefix`](Self::with_host_prefix)).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the cookie's path (default `/`).
    #[must_use]
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets the cookie's domain (default: none, the request's host).
    #[must_use]
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Sets `Secure` (default on: the cookie only travels over HTTPS; browsers treat
    /// `http://localhost` as secure too).
    #[must_use]
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Sets `HttpOnly` (default on: scripts cannot read the token).
    #[must_use]
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// Sets `SameSite` (default `Lax`).
    #[must_use]
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Whether the `__Host-` prefix is added to the cookie's name when the cookie qualifies
    /// (Secure, `Path=/`, no `Domain`; default on). Turn it off to keep the exact name, for
    /// example to read cookies set by an earlier version of the application.
    #[must_use]
    pub fn with_host_prefix(mut self, host_prefix: bool) -> Self {
        self.host_prefix = host_prefix;
        self
    }

    /// Sets the default expiry of new handles (default `None`: a browser-session cookie and the
    /// manager's policy in the store). Handlers may change it per session with
    /// [`Session::set_expiry`].
    #[must_use]
    pub fn with_expiry(mut self, expiry: Option<Expiry>) -> Self {
        self.expiry = expiry;
        self
    }

    /// The cookie's name on the wire: `__Host-` + name when the cookie qualifies for that prefix
    /// (Secure, `Path=/`, no `Domain`) and the prefix was not turned off.
    pub fn wire_name(&self) -> String {
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

    /// Reads the request's `Cookie` header values: the first well-formed cookie of ours;
    /// `Malformed` when there are only malformed ones; `None` when there is none, or when the
    /// values are longer than [`MAX_COOKIE_HEADER_BYTES`] together (nothing of them is read).
    pub fn incoming<'a>(&self, cookie_headers: impl IntoIterator<Item = &'a str>) -> Incoming {
        let headers: Vec<&str> = cookie_headers.into_iter().collect();
        let size = headers
            .iter()
            .fold(0usize, |sum, text| sum.saturating_add(text.len()));
        if size > MAX_COOKIE_HEADER_BYTES {
            tracing::debug!(
                bytes = size,
                "Cookie headers over the limit: the request counts as carrying no session cookie"
            );
            return Incoming::None;
        }
        let name = self.wire_name();
        let mut found = Incoming::None;
        for text in headers {
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

    /// The lazy session handle of a request whose cookie said `incoming`.
    pub fn session(
        &self,
        incoming: &Incoming,
        manager: Arc<SessionManager<Arc<dyn SessionStore>>>,
    ) -> Session {
        Session::with_manager(incoming.id().cloned(), manager, self.expiry)
    }

    /// After the handler: saves the session if it was used, and says what the response needs.
    pub async fn finish(&self, session: &Session, incoming: &Incoming) -> Finish {
        if (session.is_modified() || session.is_loaded() || session.ended_here())
            && let Err(error) = session.save().await
        {
            match error.kind() {
                ErrorKind::NotFound => {
                    tracing::debug!(
                        "the session ended elsewhere; nothing written, cookie left alone"
                    );
                }
                ErrorKind::Conflict => {
                    tracing::info!(%error, "a concurrent request changed a session value this one read");
                    return Finish::Conflict(error);
                }
                _ => {
                    tracing::error!(%error, "saving the session failed");
                    return Finish::Failed(error);
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
                // A browser-session cookie carries nothing but the id: re-sent only when the id
                // or the kind of expiry changed. A persistent one slides with each use.
                let refresh = persistent && (session.is_modified() || session.is_loaded());
                if !(changed || refresh || expiry != self.expiry) {
                    return Finish::Unchanged;
                }
                let mut cookie = self.base_cookie(id.expose());
                match expiry {
                    Some(Expiry::OnInactivity(_) | Expiry::AtDateTime(_)) => {
                        cookie.set_max_age(session.expiry_age());
                    }
                    Some(Expiry::OnSessionEnd) | None => {}
                }
                cookie
            }
            (None, Incoming::None) => return Finish::Unchanged,
            // A well-formed cookie whose session ended elsewhere (or never existed): leave it
            // alone, it may already have been replaced in the browser by a newer one of the
            // same name.
            (None, Incoming::Id(_)) if !session.ended_here() => return Finish::Unchanged,
            (None, Incoming::Malformed | Incoming::Id(_)) => {
                let mut cookie = self.base_cookie(String::new());
                cookie.make_removal();
                cookie
            }
        };
        Finish::SetCookie(cookie.to_string())
    }

    fn base_cookie(&self, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::build((self.wire_name(), value))
            .path(self.path.clone())
            .secure(self.secure)
            .http_only(self.http_only)
            .same_site(self.same_site)
            .build();
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_headers_over_the_limit_are_not_read() {
        let policy = CookiePolicy::new();
        let id = SessionId::generate();
        let ours = format!("__Host-id={}", id.expose());
        // Just under the limit, spread over two fields: read.
        let filler = format!(
            "pad={}",
            "x".repeat(MAX_COOKIE_HEADER_BYTES - ours.len() - 10)
        );
        assert_eq!(
            policy.incoming([filler.as_str(), ours.as_str()]),
            Incoming::Id(id.clone())
        );
        // Over it: none, whatever it holds (and nothing of it parsed).
        let filler = format!("pad={}", "x".repeat(MAX_COOKIE_HEADER_BYTES));
        assert_eq!(
            policy.incoming([ours.as_str(), filler.as_str()]),
            Incoming::None
        );
        let one = format!("{ours}; pad={}", "x".repeat(MAX_COOKIE_HEADER_BYTES));
        assert_eq!(policy.incoming([one.as_str()]), Incoming::None);
    }
}
