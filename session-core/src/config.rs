//! Helpers shared by the backends' configuration types.

use std::borrow::Cow;

use crate::error::{Error, ErrorKind, Result};

/// Checks that `name` is a plain SQL identifier: an ASCII letter or `_`, then letters, digits or
/// `_`, at most `max_len` characters. Backends also quote it wherever it is used.
pub fn validate_identifier(backend: &str, what: &str, name: &str, max_len: usize) -> Result<()> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= max_len;
    if valid {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Config,
        format!(
            "{backend}: {what} name {:?} is not a plain identifier (letters, digits, `_`, at most {max_len} characters, no leading digit)",
            name.chars().take(80).collect::<String>()
        ),
    ))
}

/// Whether a URL query parameter named `name` carries a secret: its name contains `pass`,
/// `secret` or `token` (any case): `password`, `sslpassword`, `pass`, `client_secret`, …
pub fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "secret", "token"]
        .iter()
        .any(|word| name.contains(word))
}

/// A connection URL fit for logs and errors: the password of its user part and the value of
/// every query parameter that carries a secret ([`is_secret_parameter`]) replaced by `***`; an
/// unparseable URL is hidden whole.
pub fn redact_url(url: &str) -> Cow<'static, str> {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return Cow::Borrowed("<unparseable url>");
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let value = if is_secret_parameter(&k) {
                "***".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), value)
        })
        .collect();
    if !pairs.is_empty() {
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    Cow::Owned(parsed.into())
}

/// `serde` support for `Duration` fields written as integer milliseconds
/// (`#[serde(with = "session_core::serde_millis")]`).
pub mod serde_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Reads milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }

    /// Writes milliseconds.
    pub fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(duration.as_millis().try_into().unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for good in ["sessions", "_s", "Sessions_2"] {
            assert!(
                validate_identifier("db", "table", good, 48).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "",
            "2x",
            "a-b",
            "a b",
            "a\"b",
            "t; DROP TABLE x",
            "é",
            &"a".repeat(49),
        ] {
            assert_eq!(
                validate_identifier("db", "table", bad, 48)
                    .unwrap_err()
                    .kind(),
                ErrorKind::Config,
                "{bad}"
            );
        }
    }

    #[test]
    fn passwords_are_redacted() {
        let shown = redact_url("postgres://app:s3cr3t@db:5432/app?sslmode=require&password=other");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("other") && shown.contains("db"),
            "{shown}"
        );
        assert_eq!(redact_url("not a url s3cr3t"), "<unparseable url>");
        for url in [
            "redis+unix:///run/redis.sock?pass=s3cr3t",
            "redis://h/0?PASSWORD=s3cr3t",
            "postgres://h/d?sslpassword=s3cr3t&application_name=web",
            "postgres://h/d?client_secret=s3cr3t",
            "rediss://h?auth_token=s3cr3t",
            "redis://:s3cr3t@h",
            "redis://user:s3cr3t@h?db=1",
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains("s3cr3t"), "{url} -> {shown}");
        }
        assert!(redact_url("postgres://h/d?application_name=web").contains("web"));
    }
}
