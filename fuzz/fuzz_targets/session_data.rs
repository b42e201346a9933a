//! The `Session` handle reading a stored session whose bytes are anything (another writer, a
//! corrupt store): the envelope, then the JSON object of values.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use session_core::{CreateOutcome, ErrorKind, SessionId, SessionStore, SessionStoreExt};
use session_fuzz::block_on;
use session_manager::{Session, SessionManager, envelope};
use session_memory::MemoryStore;
use time::{Duration, OffsetDateTime};

fuzz_target!(|data: &[u8]| {
    let Some((&wrap, body)) = data.split_first() else {
        return;
    };
    // Mostly a well-formed envelope around fuzzed JSON, sometimes raw bytes.
    let stored = if wrap & 1 == 0 {
        envelope::encode(None, body)
    } else {
        body.to_vec()
    };
    block_on(async {
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let manager = Arc::new(SessionManager::new(Arc::clone(&store)));
        let id = SessionId::generate();
        let later = OffsetDateTime::now_utc() + Duration::minutes(5);
        let outcome = store
            .create(&id.key(), later, Bytes::from(stored))
            .await
            .expect("create");
        assert_eq!(outcome, CreateOutcome::Created);
        let session = Session::with_manager(Some(id.clone()), Arc::clone(&manager), None);
        match session.get_value("a").await {
            Ok(_) => {
                // Decoded: the handle can change and save it, and what it saved reads back.
                session.insert("fuzz", 1).await.expect("insert");
                match session.save().await {
                    Ok(()) => {
                        let again = Session::with_manager(session.id(), manager, None);
                        assert_eq!(again.get::<i32>("fuzz").await.expect("reads"), Some(1));
                    }
                    // A decoded session may be larger than the manager's limit, or past the
                    // absolute deadline its envelope carries.
                    Err(error) => assert!(
                        matches!(error.kind(), ErrorKind::TooLarge | ErrorKind::NotFound),
                        "{error:?}"
                    ),
                }
            }
            Err(error) => {
                assert_eq!(error.kind(), ErrorKind::Decode, "{error:?}");
                // Nothing was changed: the stored bytes are still there.
                assert!(store.read(&id.key()).await.expect("read").is_some());
            }
        }
    });
});
