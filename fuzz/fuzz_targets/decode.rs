//! Any payload, on either side: decoding returns a message or a typed error, never panics,
//! and whatever decodes re-encodes to a payload that decodes to the same message.
#![no_main]

use fedreq_protocol::{Limits, NodeMessage, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(decoded) = Request::decode(data, &limits) {
        let again = Request::decode(&decoded.message.encode(), &limits).expect("re-encoded request decodes");
        assert_eq!(again.message, decoded.message);
    }
    if let Ok(decoded) = NodeMessage::decode(data, &limits) {
        let again = NodeMessage::decode(&decoded.message.encode(), &limits).expect("re-encoded message decodes");
        assert_eq!(again.message, decoded.message);
    }
});
