//! Helpers shared by the backends' configuration types (feature `config`): [`Options`], the
//! named settings of a store read from its URL and an options map, identifier validation and
//! the redaction of secrets.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// The most bytes a store URL and its options may have together (16 KiB): far more than any
/// real configuration (a cluster URL with a hundred seeds is under 4 KiB), and a bound on what
/// parsing one may allocate.
pub const MAX_CONFIG_BYTES: usize = 16 * 1024;

/// The named settings of one store: its URL's query parameters, then an options map (whose
/// values win). A backend takes each setting it knows by name; [`finish`](Self::finish) refuses
/// whatever is left, naming the settings the backend took, so a typo is an error rather than a
/// silent default. Each setting's name is written once, where the backend takes it.
#[derive(Debug)]
pub struct Options {
    backend: &'static str,
    pairs: Vec<(String, String)>,
    known: Vec<&'static str>,
}

impl Options {
    /// The settings of `query` (a URL's query string, without `?`, percent-encoded) followed
    /// by `extra` (which win over the query's).
    pub fn new(backend: &'static str, query: &str, extra: &[(String, String)]) -> Self {
        let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        pairs.extend(extra.iter().cloned());
        Self {
            backend,
            pairs,
            known: Vec::new(),
        }
    }

    /// Splits `url` at its `?`: the part before it, and the settings of its query followed by
    /// `extra`. A `Config` error, before anything is parsed or copied, when the URL and the
    /// options together are longer than [`MAX_CONFIG_BYTES`].
    pub fn split_url<'u>(
        backend: &'static str,
        url: &'u str,
        extra: &[(String, String)],
    ) -> Result<(&'u str, Self)> {
        let size = extra.iter().fold(url.len(), |sum, (k, v)| {
            sum.saturating_add(k.len() + v.len())
        });
        if size > MAX_CONFIG_BYTES {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{backend}: the store URL and its options are {size} bytes, more than the \
                     {MAX_CONFIG_BYTES} a store configuration may have"
                ),
            ));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        Ok((base, Self::new(backend, query, extra)))
    }

    /// Takes every value of the repeatable setting `name`, in order (none when not given).
    pub fn take_all(&mut self, name: &'static str) -> Vec<String> {
        self.known.push(name);
        let mut values = Vec::new();
        self.pairs.retain(|(k, v)| {
            if k == name {
                values.push(v.clone());
                false
            } else {
                true
            }
        });
        values
    }

    /// Takes the setting `name` (its last value), if given.
    pub fn take(&mut self, name: &'static str) -> Option<String> {
        self.known.push(name);
        let mut value = None;
        self.pairs.retain(|(k, v)| {
            if k == name {
                value = Some(v.clone());
                false
            } else {
                true
            }
        });
        value
    }

    /// Takes the setting `name` parsed as `T`; `what` says what it must be (`"a whole
    /// number"`) in the error.
    pub fn take_parsed<T: FromStr>(&mut self, name: &'static str, what: &str) -> Result<Option<T>> {
        let backend = self.backend;
        self.take(name)
            .map(|value| {
                value.parse().map_err(|_| {
                    Error::new(
                        ErrorKind::Config,
                        format!(
                            "{backend}: option `{name}` must be {what}, not {:?}",
                            value.chars().take(32).collect::<String>()
                        ),
                    )
                })
            })
            .transpose()
    }

    /// Takes a `true`/`false` (or `1`/`0`) setting.
    pub fn take_bool(&mut self, name: &'static str) -> Result<Option<bool>> {
        let backend = self.backend;
        self.take(name)
            .map(|value| match value.as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{backend}: option `{name}` must be true or false, not {:?}",
                        value.chars().take(32).collect::<String>()
                    ),
                )),
            })
            .transpose()
    }

    /// Takes a duration in the one form every setting uses ([`parse_duration`]): `250ms`,
    /// `5s`, `2m`, `1h`, or a whole number of milliseconds.
    pub fn take_duration(&mut self, name: &'static str) -> Result<Option<Duration>> {
        let backend = self.backend;
        self.take(name)
            .map(|value| {
                parse_duration(&value).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Config,
                        format!(
                            "{backend}: option `{name}` must be a duration (`250ms`, `5s`, `2m`, `1h`, or whole milliseconds), not {:?}",
                            value.chars().take(32).collect::<String>()
                        ),
                    )
                })
            })
            .transpose()
    }

    /// The settings nobody took, in order (for a driver that takes its own parameters).
    pub fn into_rest(self) -> Vec<(String, String)> {
        self.pairs
    }

    /// The URL the driver gets: `base` with the settings nobody took as its query, each of
    /// which must be one of `driver` (the parameters the driver reads). Any other is a `Config`
    /// error naming it (never its value, which could be a secret), the driver's parameters and
    /// this store's; `url` (redacted) says where it was found.
    pub fn into_driver_url(self, base: &str, driver: &[&str], url: &str) -> Result<String> {
        let ours = self.known();
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        let mut any = false;
        for (name, value) in &self.pairs {
            if !driver.contains(&name.as_str()) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{}: unknown URL parameter `{}` in {} (the driver takes {}; this store takes {ours})",
                        self.backend,
                        name.chars().take(32).collect::<String>(),
                        redact_url(url),
                        driver.join(", "),
                    ),
                ));
            }
            query.append_pair(name, value);
            any = true;
        }
        Ok(if any {
            format!("{base}?{}", query.finish())
        } else {
            base.to_owned()
        })
    }

    /// The names of the settings nobody took.
    pub fn unknown(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(name, _)| name.as_str())
    }

    /// The settings the backend took so far, comma-separated.
    pub fn known(&self) -> String {
        if self.known.is_empty() {
            "no options".to_owned()
        } else {
            self.known.join(", ")
        }
    }

    /// `Ok` when every setting was taken; otherwise a `Config` error naming the first unknown
    /// one (never its value, which could be a secret) and the settings this backend takes.
    pub fn finish(self) -> Result<()> {
        match self.pairs.first() {
            None => Ok(()),
            Some((name, _)) => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{}: unknown option `{}` (it takes: {})",
                    self.backend,
                    name.chars().take(32).collect::<String>(),
                    self.known()
                ),
            )),
        }
    }
}

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

/// A duration setting: a whole number with a unit (`ms`, `s`, `m`, `h`) or a whole number of
/// milliseconds (`250ms`, `5s`, `2m`, `1h`, `250`). The one form of every duration setting, in
/// URLs and in serde alike; `None` for anything else (no fractions, no negative values).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    let number: u64 = number.parse().ok()?;
    let millis_per = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(millis_per).map(Duration::from_millis)
}

/// A duration as [`parse_duration`] reads it: in milliseconds, `250ms`.
pub fn format_duration(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// `serde` support for `Duration` settings in the one form of [`parse_duration`] (a string with
/// a unit, or an integer number of milliseconds); written as `"250ms"`
/// (`#[serde(with = "session_core::serde_duration")]`).
pub mod serde_duration {
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration: `250ms`, `5s`, `2m`, `1h`, or whole milliseconds")
        }

        fn visit_u64<E: de::Error>(self, millis: u64) -> Result<Duration, E> {
            Ok(Duration::from_millis(millis))
        }

        fn visit_i64<E: de::Error>(self, millis: i64) -> Result<Duration, E> {
            u64::try_from(millis)
                .map(Duration::from_millis)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(millis), &self))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            super::parse_duration(text)
                .ok_or_else(|| E::invalid_value(de::Unexpected::Str(text), &self))
        }
    }

    /// Reads a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    /// Writes `"<milliseconds>ms"`.
    pub fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_one_form() {
        for (text, millis) in [
            ("250", 250),
            ("250ms", 250),
            ("5s", 5_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            (" 7s ", 7_000),
        ] {
            assert_eq!(
                parse_duration(text),
                Some(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for bad in [
            "",
            "ms",
            "1.5s",
            "-1",
            "5 s",
            "5d",
            "s5",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        let shown = format_duration(Duration::from_millis(1_500));
        assert_eq!(parse_duration(&shown), Some(Duration::from_millis(1_500)));
    }

    #[test]
    fn options_are_taken_by_name() {
        let extra = [("b".to_owned(), "from_map".to_owned())];
        let (base, mut options) =
            Options::split_url("db", "db://h/x?a=1&b=from_url&flag=true&t=5&c=%3A", &extra)
                .unwrap();
        assert_eq!(base, "db://h/x");
        assert_eq!(
            options.take_parsed::<u32>("a", "a number").unwrap(),
            Some(1)
        );
        assert_eq!(options.take("b").as_deref(), Some("from_map"));
        assert_eq!(options.take_bool("flag").unwrap(), Some(true));
        assert_eq!(
            options.take_duration("t").unwrap(),
            Some(Duration::from_millis(5))
        );
        assert_eq!(options.take("missing"), None);
        let error = options.finish().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(
            error.to_string().contains("unknown option `c`")
                && error.to_string().contains("a, b, flag, t, missing"),
            "{error}"
        );
        let (base, options) =
            Options::split_url("db", "db://u:pw@h/d?ssl=on&tabel=x", &[]).unwrap();
        let error = options.into_driver_url(base, &["ssl"], "db://u:pw@h/d?ssl=on&tabel=x");
        let message = error.unwrap_err().to_string();
        assert!(
            message.contains("unknown URL parameter `tabel`") && !message.contains("pw@"),
            "{message}"
        );
        let (base, options) = Options::split_url("db", "db://h/d?ssl=on", &[]).unwrap();
        assert_eq!(
            options.into_driver_url(base, &["ssl"], "").unwrap(),
            "db://h/d?ssl=on"
        );
        let (_, mut options) = Options::split_url("db", "db://h?n=x&f=maybe", &[]).unwrap();
        let error = options.take_parsed::<u32>("n", "a number").unwrap_err();
        assert!(
            error.to_string().contains("`n` must be a number"),
            "{error}"
        );
        assert!(options.take_bool("f").is_err());
        assert!(options.finish().is_ok());
        let extra = [("seed".to_owned(), "c:3".to_owned())];
        let (_, mut options) =
            Options::split_url("db", "db://h?seed=a:1&x=1&seed=b:2", &extra).unwrap();
        assert_eq!(options.take_all("seed"), ["a:1", "b:2", "c:3"]);
        assert!(options.take_all("seed").is_empty());
        assert_eq!(options.take("x").as_deref(), Some("1"));
        assert!(options.finish().is_ok());
    }

    #[test]
    fn oversized_configurations_are_refused_before_parsing() {
        let long = format!("db://h/d?a={}", "x".repeat(MAX_CONFIG_BYTES));
        let error = Options::split_url("db", &long, &[]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains("more than the 16384"), "{error}");
        // The options map counts too, and exactly at the limit is fine.
        let extra = [("a".to_owned(), "x".repeat(MAX_CONFIG_BYTES))];
        assert!(Options::split_url("db", "db://h", &extra).is_err());
        let exact = format!("db://h?a={}", "x".repeat(MAX_CONFIG_BYTES - 9));
        assert_eq!(exact.len(), MAX_CONFIG_BYTES);
        assert!(Options::split_url("db", &exact, &[]).is_ok());
    }

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
