//! `CookiePolicy::incoming`: the `Cookie` header values of any request (one value per line of
//! the input; HTTP/2 may split cookies over several header fields).
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_manager::cookie::{CookiePolicy, Incoming};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let headers: Vec<&str> = text.split('\n').collect();
    for policy in [
        CookiePolicy::new(),
        CookiePolicy::new().with_secure(false).with_name("sid"),
    ] {
        let name = policy.wire_name();
        match policy.incoming(headers.iter().copied()) {
            Incoming::Id(id) => {
                // The token came from this input, in a cookie of our name (the cookie parser
                // trims whitespace around names and values).
                assert!(text.contains(&id.expose()) && text.contains(&name));
            }
            Incoming::Malformed => assert!(text.contains(&name)),
            Incoming::None => {}
        }
    }
});
