//! `Instrumented`: its spans (the whole suite runs through it in tests/conformance.rs) (fields and outcomes, never a key or
//! data), and its metrics (feature `metrics`).

use session_core::SessionStoreExt as _;
use std::sync::{Arc, Mutex};

use session_manager::time::{Duration, OffsetDateTime};
use session_manager::{Bytes, Instrumented, SessionId, SessionStore};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// One span's fields, as text (the first is its id).
type Fields0 = Vec<(String, String)>;

/// Every field value of every `session_store` span, as text.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Fields0>>>);

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S>
    for Spans
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = vec![("#id".to_owned(), id.into_u64().to_string())];
        attrs.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        let key = id.into_u64().to_string();
        if let Some(span) = spans.iter_mut().rev().find(|s| s[0].1 == key) {
            values.record(&mut Fields(span));
        }
    }
}

fn field<'a>(span: &'a [(String, String)], name: &str) -> Option<&'a str> {
    span.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn spans_name_the_backend_operation_and_outcome_and_nothing_secret() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let key = SessionId::generate().key();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let store = Instrumented::new(session_memory::MemoryStore::new(), "memory");
            let later = OffsetDateTime::now_utc() + Duration::hours(1);
            let data = Bytes::from_static(b"secret-data");
            let _ = store.create(&key, later, data.clone()).await.unwrap();
            let _ = store.create(&key, later, data.clone()).await.unwrap();
            store.read(&key).await.unwrap();
            let _ = store
                .update(&key, &key, 7, later, data.clone())
                .await
                .unwrap();
            let _ = store
                .update(&key, &key, 1, later, data.clone())
                .await
                .unwrap();
            store.touch(&key, later).await.unwrap();
            store.delete(&key).await.unwrap();
            store.read(&key).await.unwrap();
        })
    });
    let spans = spans.0.lock().unwrap().clone();
    let seen: Vec<(String, String, String)> = spans
        .iter()
        .map(|s| {
            (
                field(s, "backend").unwrap_or_default().to_owned(),
                field(s, "operation").unwrap_or_default().to_owned(),
                field(s, "outcome").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("create", "created"),
        ("create", "id_taken"),
        ("read", "found"),
        ("update", "conflict"),
        ("update", "updated"),
        ("touch", "touched"),
        ("delete", "deleted"),
        ("read", "absent"),
    ];
    assert_eq!(seen.len(), expected.len(), "{seen:?}");
    for ((backend, operation, outcome), (op, out)) in seen.iter().zip(expected) {
        assert_eq!(
            (backend.as_str(), operation.as_str(), outcome.as_str()),
            ("memory", op, out)
        );
    }
    assert!(spans.iter().all(|s| field(s, "duration_us").is_some()));
    let text = format!("{spans:?}");
    assert!(
        !text.contains(&key.to_hex()[..12]) && !text.contains("secret-data"),
        "{text}"
    );
}

#[cfg(feature = "metrics")]
#[test]
fn metrics_count_and_time_each_operation() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let store =
                Instrumented::new(session_memory::MemoryStore::new(), "memory").with_metrics();
            let later = OffsetDateTime::now_utc() + Duration::hours(1);
            for _ in 0..3 {
                let key = SessionId::generate().key();
                let _ = store.create(&key, later, Bytes::new()).await.unwrap();
                let _ = store
                    .update(&key, &key, 9, later, Bytes::new())
                    .await
                    .unwrap();
            }
        })
    });
    let mut created = 0;
    let mut conflicts = 0;
    let mut timings = 0;
    let mut create_series = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let labels: Vec<(String, String)> = key
            .key()
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        let has = |k: &str, v: &str| labels.iter().any(|(a, b)| a == k && b == v);
        if has("operation", "create") && matches!(value, DebugValue::Counter(_)) {
            let outcome = labels.iter().find(|(k, _)| k == "outcome").unwrap();
            create_series.push(outcome.1.clone());
        }
        match value {
            DebugValue::Counter(n) if has("operation", "create") && has("outcome", "created") => {
                created += n
            }
            DebugValue::Counter(n) if has("operation", "update") && has("outcome", "conflict") => {
                conflicts += n
            }
            DebugValue::Histogram(samples) if has("backend", "memory") => timings += samples.len(),
            _ => {}
        }
    }
    assert_eq!((created, conflicts, timings), (3, 3, 6));
    // Only the outcomes an operation can have are registered (no empty impossible series).
    create_series.sort();
    assert_eq!(
        create_series,
        ["created", "error", "id_taken", "transient_error"]
    );
}

/// Metrics are opt-in: without `with_metrics` nothing reaches an installed recorder (and
/// nothing is timed when no subscriber wants the span).
#[cfg(feature = "metrics")]
#[test]
fn without_with_metrics_nothing_is_recorded() {
    use metrics_util::debugging::DebuggingRecorder;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let store = Instrumented::new(session_memory::MemoryStore::new(), "memory");
            let later = OffsetDateTime::now_utc() + Duration::hours(1);
            let key = SessionId::generate().key();
            let _ = store.create(&key, later, Bytes::new()).await.unwrap();
            assert!(store.read(&key).await.unwrap().is_some());
        })
    });
    assert!(snapshotter.snapshot().into_vec().is_empty());
}
