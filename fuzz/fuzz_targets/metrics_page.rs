//! Arbitrary bytes as a model server pod's `/metrics` page: the text parser, the canary
//! analysis and the request-rate scaler must neither panic nor break their invariants
//! (operator/src/fuzzing.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    operator::fuzzing::metrics_page(data);
});
