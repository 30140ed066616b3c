//! Any SQS message body: parsing returns a message or a typed error, never panics, and an error
//! names what was wrong without echoing unbounded input.
#![no_main]

use imgfleet_shared::envelope::{Message, parse_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else { return };
    match parse_message(body) {
        Ok(Message::Requests(requests)) => assert!(!requests.is_empty()),
        Ok(Message::Test) => {}
        Err(e) => assert!(e.to_string().len() <= 2048, "error message longer than 2 KB"),
    }
});
