//! libFuzzer target: any bytes through the shard reader's public entry point,
//! `reader::decode_shard`; no panic, and the decoded views agree (`steplog_fuzz::check`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    steplog_fuzz::decode_and_check(data);
});
