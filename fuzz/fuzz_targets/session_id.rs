//! `SessionId::parse`: a cookie value from any client.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_core::{ErrorKind, SessionId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match SessionId::parse(text) {
        Ok(id) => {
            // parse → expose is the identity (only the canonical form parses), and parsing the
            // exposed form gives the same id and the same key.
            assert_eq!(id.expose(), text);
            let again = SessionId::parse(&id.expose()).expect("the exposed form parses");
            assert_eq!(again, id);
            assert_eq!(again.key(), id.key());
            // Debug/Display never show the whole token.
            assert!(!format!("{id:?}").contains(text));
            assert!(!format!("{id}").contains(text));
        }
        Err(error) => {
            assert_eq!(error.kind(), ErrorKind::InvalidId);
            // The error never echoes the input (only inputs of the right length get past the
            // length check; shorter ones could be pieces of the fixed message).
            if text.len() == session_core::ID_LEN {
                assert!(!format!("{error:?}").contains(text));
            }
        }
    }
});
