//! The front's envelope (`session_manager::envelope`): bytes read back from any store.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use session_core::ErrorKind;
use session_manager::envelope;

fuzz_target!(|data: &[u8]| {
    match envelope::decode(Bytes::copy_from_slice(data)) {
        Ok((deadline, body)) => {
            // decode → encode is the identity.
            let encoded = envelope::encode(deadline, &body);
            assert_eq!(encoded, data);
            let (again, body_again) = envelope::decode(Bytes::from(encoded)).expect("re-decodes");
            assert_eq!((again, body_again), (deadline, body));
        }
        Err(error) => assert_eq!(error.kind(), ErrorKind::Decode),
    }
});
