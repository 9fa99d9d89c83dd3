//! libFuzzer target: the input with every frame's checksums made valid, then the shard
//! reader (`reader::decode_shard`), so that mutations reach payload decoding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    steplog_fuzz::fix_checksums(&mut buf);
    steplog_fuzz::decode_and_check(&buf);
});
