//! Reading one integer series back out of a shard's bytes, for tests that log `i64` rows.

use steplog_core::batch::DType;
use steplog_core::reader::{decode_shard, Scalars};

/// The values of the `i64` series `key` in the shard `bytes` (empty when it has none).
pub fn i64s(bytes: &[u8], key: &str) -> Vec<i64> {
    match decode_shard(bytes)
        .series
        .get(&(key.to_string(), DType::I64))
        .map(|s| &s.values)
    {
        Some(Scalars::I64(v)) => v.clone(),
        _ => Vec::new(),
    }
}
