//! The tiered front's entries (`Tiered`): whatever bytes the front store holds for a key, a
//! read still answers from the back when the front entry is not a tiered entry.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use session_core::{CreateOutcome, SessionId, SessionStore, SessionStoreExt};
use session_fuzz::block_on;
use session_manager::Tiered;
use session_memory::MemoryStore;
use time::{Duration, OffsetDateTime};

fuzz_target!(|data: &[u8]| {
    block_on(async {
        let tiered = Tiered::new(MemoryStore::new(), MemoryStore::new());
        let key = SessionId::generate().key();
        let later = OffsetDateTime::now_utc() + Duration::minutes(5);
        let outcome = tiered
            .back()
            .create(&key, later, Bytes::from_static(b"back"))
            .await
            .expect("create");
        assert_eq!(outcome, CreateOutcome::Created);
        let outcome = tiered
            .front()
            .create(&key, later, Bytes::copy_from_slice(data))
            .await
            .expect("create");
        assert_eq!(outcome, CreateOutcome::Created);
        let read = tiered
            .read(&key)
            .await
            .expect("a front entry never fails a read");
        let record = read.expect("the back holds the session");
        if data.len() < 16 {
            assert_eq!(&record.data[..], b"back");
        }
        // Writes go through whatever the front held.
        session_fuzz::exercise(&tiered, &key, record.version, 7).await;
    });
});
