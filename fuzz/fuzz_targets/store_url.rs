//! Store URLs and `StoreConfig` (session-any and every backend's URL parsing): from a string,
//! from a configuration file (JSON), and as URL plus named options. Nothing is opened.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_any::StoreConfig;
use session_core::{ErrorKind, is_secret_parameter};

/// The secrets of `config` worth looking for (the URL's password, secret query parameters,
/// secret options: at least 6 characters), each with the config without it.
fn secrets(config: &StoreConfig) -> Vec<(String, StoreConfig)> {
    let mut found = Vec::new();
    if let Ok(url) = url::Url::parse(&config.url) {
        if let Some(password) = url.password() {
            // Removed from the text as written when possible: a re-serialized URL is
            // normalized (leading control characters dropped...) and may take another path.
            let written = format!(":{password}@");
            let mut other = config.clone();
            if config.url.matches(&written).count() == 1 {
                other.url = config.url.replacen(&written, "@", 1);
                found.push((password.to_owned(), other));
            } else {
                let mut without = url.clone();
                if without.set_password(None).is_ok() {
                    other.url = without.into();
                    found.push((password.to_owned(), other));
                }
            }
        }
        for (name, value) in url.query_pairs() {
            if is_secret_parameter(&name) {
                let mut without = url.clone();
                let kept: Vec<(String, String)> = url
                    .query_pairs()
                    .filter(|(n, _)| n != &name)
                    .map(|(n, v)| (n.into_owned(), v.into_owned()))
                    .collect();
                without.query_pairs_mut().clear().extend_pairs(kept);
                let mut other = config.clone();
                other.url = without.into();
                found.push((value.into_owned(), other));
            }
        }
    }
    for (name, value) in &config.options {
        if is_secret_parameter(name) {
            let mut other = config.clone();
            other.options.remove(name);
            found.push((value.to_string(), other));
        }
    }
    found.retain(|(secret, _)| secret.len() >= 6 && secret != "***");
    found
}

/// Everything a config shows: `Debug`, its serialized form, and the error of its check.
fn shown(config: &StoreConfig) -> String {
    let error = config
        .check()
        .err()
        .map(|e| format!("{e} {e:?}"))
        .unwrap_or_default();
    format!(
        "{config:?} {} {error}",
        serde_json::to_string(config).expect("serializes")
    )
}

fn check(config: StoreConfig) {
    if let Err(error) = config.check() {
        assert!(
            matches!(error.kind(), ErrorKind::Config | ErrorKind::Unsupported),
            "{error:?}"
        );
    }
    let text = shown(&config);
    // Fixed text of the messages (the list of schemes) cannot leak anything.
    let vocabulary = shown(&StoreConfig::new("nosuch://x"));
    for (secret, without) in secrets(&config) {
        // A secret that also appears elsewhere in the input (the value `://h?x` of
        // `redis://h?token=://h?x`) is shown legitimately through that other place.
        let mut everywhere = config.url.clone();
        for (name, value) in &config.options {
            everywhere.push_str(&format!(" {name} {value}"));
        }
        if vocabulary.contains(&secret) || everywhere.matches(secret.as_str()).count() > 1 {
            continue;
        }
        // A leak: shown with the secret, absent when the secret is removed (so it is not a
        // piece of a fixed message that the fuzzer happened to pick as a password).
        assert!(
            !text.contains(&secret) || shown(&without).contains(&secret),
            "a secret leaked ({secret:?}): {text}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match mode % 3 {
        0 => match text.parse::<StoreConfig>() {
            Ok(config) => check(config),
            Err(error) => assert!(
                matches!(error.kind(), ErrorKind::Config | ErrorKind::Unsupported),
                "{error:?}"
            ),
        },
        1 => {
            if let Ok(config) = serde_json::from_str::<StoreConfig>(text) {
                check(config);
            }
        }
        _ => {
            let mut lines = text.split('\n');
            let mut config = StoreConfig::new(lines.next().unwrap_or_default());
            for line in lines {
                let (name, value) = line.split_once('=').unwrap_or((line, ""));
                config = match value.parse::<i64>() {
                    Ok(number) => config.option(name, number),
                    Err(_) => config.option(name, value),
                };
            }
            check(config);
        }
    }
});
