//! `SessionSnapshot` deserialized from any JSON (a resumed handle's saved state), then used.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use session_core::SessionStore;
use session_fuzz::block_on;
use session_manager::{Session, SessionManager, SessionSnapshot};
use session_memory::MemoryStore;

fuzz_target!(|data: &[u8]| {
    let Ok(snapshot) = serde_json::from_slice::<SessionSnapshot>(data) else {
        return;
    };
    // A snapshot that deserializes serializes back to one that deserializes to the same state.
    let json = serde_json::to_vec(&snapshot).expect("serializes");
    let again: SessionSnapshot = serde_json::from_slice(&json).expect("round trip");
    assert_eq!(serde_json::to_vec(&again).expect("serializes"), json);
    block_on(async {
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let manager = Arc::new(SessionManager::new(store));
        let session = Session::restore(snapshot, manager);
        // Any outcome but a panic: the store knows nothing of the snapshot's session.
        let _ = session.get_value("a").await;
        let _ = session.insert("b", 2).await;
        let _ = session.save().await;
        let _ = session.cycle_id().await;
        let _ = session.delete().await;
        let _ = session.expiry_date();
        let _ = session.expiry_age();
    });
});
