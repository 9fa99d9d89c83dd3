//! Row timestamps. The caller's side reads a raw counter (the TSC where it is invariant,
//! through `quanta`, a few nanoseconds); the writer turns it into Unix microseconds against a
//! base taken when the shard started.

use std::time::{SystemTime, UNIX_EPOCH};

/// A raw clock plus the Unix time at one of its readings.
#[derive(Debug, Clone)]
pub struct Timebase {
    clock: quanta::Clock,
    raw0: u64,
    /// Unix time at `raw0`, in nanoseconds since the epoch.
    unix0_nanos: u64,
}

impl Timebase {
    /// Reads both clocks now.
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let raw0 = clock.raw();
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timebase {
            clock,
            raw0,
            unix0_nanos: u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// A raw reading, cheap enough for every row.
    #[inline]
    pub fn raw(&self) -> u64 {
        self.clock.raw()
    }

    /// Unix time at raw reading `raw` in whole microseconds, rounded to the nearest (what the
    /// `_timestamp` column stores), in integers: no float rounding on the writer's per-row path.
    pub fn unix_micros(&self, raw: u64) -> i64 {
        let nanos = self
            .unix0_nanos
            .saturating_add(self.clock.delta_as_nanos(self.raw0, raw));
        i64::try_from(nanos.saturating_add(500) / 1000).unwrap_or(i64::MAX)
    }
}

impl Default for Timebase {
    fn default() -> Self {
        Self::new()
    }
}

/// Seconds since the Unix epoch as a float.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_readings_map_to_unix_time() {
        let tb = Timebase::new();
        let before = unix_now();
        let r = tb.raw();
        let after = unix_now();
        let micros = tb.unix_micros(r);
        let t = micros as f64 * 1e-6;
        assert!(
            t >= before - 0.01 && t <= after + 0.01,
            "{before} {t} {after}"
        );
        let later = tb.raw();
        assert!(tb.unix_micros(later) >= micros);
    }
}
