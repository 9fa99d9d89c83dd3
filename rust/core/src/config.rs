//! Writer settings: keyword arguments first, then `STEPLOG_*` environment variables, then the
//! documented defaults, validated once when a run starts. Units are in the names.

use std::time::Duration;

use crate::error::{Error, Result};

/// What `log()` does when the ring is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Wait for the writer (bounded by `block_timeout_s`), then drop and count.
    Block,
    /// Drop the new row and count it.
    DropNew,
    /// Drop the oldest queued row and count it.
    DropOldest,
}

impl OverflowPolicy {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "block" => Some(Self::Block),
            "drop_new" => Some(Self::DropNew),
            "drop_oldest" => Some(Self::DropOldest),
            _ => None,
        }
    }

    /// The setting's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::DropNew => "drop_new",
            Self::DropOldest => "drop_oldest",
        }
    }
}

/// A setting's value as given by the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    /// A number.
    Num(f64),
    /// Text (also how environment variables arrive).
    Text(String),
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setting::Num(n) => write!(f, "{n}"),
            Setting::Text(s) => f.write_str(s),
        }
    }
}

/// Everything the writer can be tuned with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriterConfig {
    /// Rows the ring holds before the overflow policy applies.
    pub queue_capacity: usize,
    /// A batch is written once it holds this many rows.
    pub batch_max_rows: usize,
    /// ... or this many bytes of values (before compression).
    pub batch_max_bytes: usize,
    /// ... or once its first row is this old. Bounds what a SIGKILL can lose.
    pub flush_interval_s: f64,
    /// zstd level for batches (1..=22; negative levels are faster).
    pub zstd_level: i32,
    /// Ring-full behaviour.
    pub overflow: OverflowPolicy,
    /// Longest wait for ring space under `block` before a row is dropped.
    pub block_timeout_s: f64,
    /// How often the writer fsyncs the shard file (never on the caller's thread).
    pub fsync_interval_s: f64,
    /// Longest `finish()` waits for the writer.
    pub finish_timeout_s: f64,
    /// Written in place of NaN (scalars and list elements); `None` keeps NaN as is, unless
    /// the process-wide setting ([`crate::nonfinite::set_global_nan`]) says otherwise.
    pub nan_value: Option<f64>,
    /// Written in place of +Inf, negated for -Inf; `None` keeps them.
    pub inf_value: Option<f64>,
    /// Network sink: bytes of frames kept in memory, unacknowledged, before they spill to a
    /// local file.
    pub net_buffer_bytes: usize,
    /// Network sink: timeout of each connect and send, and how long `finish()` and
    /// `run.sync()` wait for the collector's last acknowledgement.
    pub net_timeout_s: f64,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_capacity: 65_536,
            batch_max_rows: 65_536,
            batch_max_bytes: 4 << 20,
            flush_interval_s: 1.0,
            zstd_level: 3,
            overflow: OverflowPolicy::Block,
            block_timeout_s: 10.0,
            fsync_interval_s: 10.0,
            finish_timeout_s: 30.0,
            nan_value: None,
            inf_value: None,
            net_buffer_bytes: 64 << 20,
            net_timeout_s: 10.0,
        }
    }
}

/// Names of all settings, as keyword arguments (`STEPLOG_` + upper case in the environment).
pub const SETTING_NAMES: [&str; 13] = [
    "queue_capacity",
    "batch_max_rows",
    "batch_max_bytes",
    "flush_interval_s",
    "zstd_level",
    "overflow",
    "block_timeout_s",
    "fsync_interval_s",
    "finish_timeout_s",
    "nan_value",
    "inf_value",
    "net_buffer_bytes",
    "net_timeout_s",
];

/// Settings that choose the sink rather than tune the writer (`crate::net::client`); the
/// writer's resolution passes over them.
pub const SINK_SETTING_NAMES: [&str; 3] = ["sink", "token", "tls_ca"];

/// Whether a setting takes text (`overflow` and the sink's settings); the others take numbers
/// (given as numbers or as text).
pub fn is_text_setting(name: &str) -> bool {
    name == "overflow" || SINK_SETTING_NAMES.contains(&name)
}

/// The environment variable for a setting.
pub fn env_name(setting: &str) -> String {
    format!("STEPLOG_{}", setting.to_ascii_uppercase())
}

impl WriterConfig {
    /// Resolves every setting from `given` (keyword arguments), then `env`, then the default.
    /// Unknown names and unusable values fail with an error naming the setting.
    pub fn resolve(
        given: &[(String, Setting)],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        for (name, value) in given {
            if !SETTING_NAMES.contains(&name.as_str())
                && !SINK_SETTING_NAMES.contains(&name.as_str())
            {
                return Err(Error::Config {
                    name: name.clone(),
                    value: value.to_string(),
                    reason: format!(
                        "unknown setting; known: {}, {}",
                        SETTING_NAMES.join(", "),
                        SINK_SETTING_NAMES.join(", ")
                    ),
                });
            }
        }
        let lookup = |name: &str| -> Option<(String, Setting)> {
            if let Some((_, v)) = given.iter().find(|(n, _)| n == name) {
                return Some((name.to_string(), v.clone()));
            }
            let var = env_name(name);
            env(&var).map(|v| (var, Setting::Text(v)))
        };
        let d = WriterConfig::default();
        let cfg = WriterConfig {
            queue_capacity: int(
                lookup("queue_capacity"),
                d.queue_capacity as i64,
                2,
                1 << 26,
            )? as usize,
            batch_max_rows: int(
                lookup("batch_max_rows"),
                d.batch_max_rows as i64,
                1,
                1 << 24,
            )? as usize,
            batch_max_bytes: int(
                lookup("batch_max_bytes"),
                d.batch_max_bytes as i64,
                1024,
                1 << 28,
            )? as usize,
            flush_interval_s: secs(lookup("flush_interval_s"), d.flush_interval_s, 0.001)?,
            zstd_level: int(lookup("zstd_level"), i64::from(d.zstd_level), -7, 22)? as i32,
            overflow: match lookup("overflow") {
                None => d.overflow,
                Some((name, v)) => {
                    let text = match &v {
                        Setting::Text(s) => s.trim().to_string(),
                        Setting::Num(n) => n.to_string(),
                    };
                    OverflowPolicy::parse(&text).ok_or_else(|| Error::Config {
                        name,
                        value: text,
                        reason: "expected one of block, drop_new, drop_oldest".into(),
                    })?
                }
            },
            block_timeout_s: secs(lookup("block_timeout_s"), d.block_timeout_s, 0.0)?,
            fsync_interval_s: secs(lookup("fsync_interval_s"), d.fsync_interval_s, 0.0)?,
            finish_timeout_s: secs(lookup("finish_timeout_s"), d.finish_timeout_s, 0.0)?,
            nan_value: lookup("nan_value")
                .map(|f| number(f, "a finite number"))
                .transpose()?
                .map(|(_, v)| v),
            inf_value: lookup("inf_value")
                .map(|f| number(f, "a finite number"))
                .transpose()?
                .map(|(_, v)| v),
            net_buffer_bytes: int(
                lookup("net_buffer_bytes"),
                d.net_buffer_bytes as i64,
                0,
                1 << 40,
            )? as usize,
            net_timeout_s: secs(lookup("net_timeout_s"), d.net_timeout_s, 0.0)?,
        };
        Ok(cfg)
    }

    /// `flush_interval_s` as a duration.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_secs_f64(self.flush_interval_s)
    }
}

fn number(found: (String, Setting), what: &str) -> Result<(String, f64)> {
    let (name, v) = found;
    let n = match &v {
        Setting::Num(n) => *n,
        Setting::Text(s) => s.trim().parse::<f64>().map_err(|_| Error::Config {
            name: name.clone(),
            value: s.clone(),
            reason: format!("expected {what}"),
        })?,
    };
    if !n.is_finite() {
        return Err(Error::Config {
            name,
            value: n.to_string(),
            reason: format!("expected {what}"),
        });
    }
    Ok((name, n))
}

fn int(found: Option<(String, Setting)>, default: i64, lo: i64, hi: i64) -> Result<i64> {
    let Some(found) = found else {
        return Ok(default);
    };
    let what = format!("an integer from {lo} to {hi}");
    let (name, n) = number(found, &what)?;
    if n.fract() != 0.0 || n < lo as f64 || n > hi as f64 {
        return Err(Error::Config {
            name,
            value: n.to_string(),
            reason: format!("expected {what}"),
        });
    }
    Ok(n as i64)
}

fn secs(found: Option<(String, Setting)>, default: f64, lo: f64) -> Result<f64> {
    let Some(found) = found else {
        return Ok(default);
    };
    let what = format!("seconds as a number of at least {lo}");
    let (name, n) = number(found, &what)?;
    if n < lo || n > 1e9 {
        return Err(Error::Config {
            name,
            value: n.to_string(),
            reason: format!("expected {what}"),
        });
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_then_env_then_keywords() {
        assert_eq!(
            WriterConfig::resolve(&[], no_env).unwrap(),
            WriterConfig::default()
        );
        let env = |k: &str| (k == "STEPLOG_FLUSH_INTERVAL_S").then(|| "0.25".to_string());
        let cfg = WriterConfig::resolve(&[], env).unwrap();
        assert_eq!(cfg.flush_interval_s, 0.25);
        let given = [("flush_interval_s".to_string(), Setting::Num(2.0))];
        assert_eq!(
            WriterConfig::resolve(&given, env).unwrap().flush_interval_s,
            2.0
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let env = |k: &str| (k == "STEPLOG_FLUSH_INTERVAL_S").then(|| "ten".to_string());
        let msg = WriterConfig::resolve(&[], env).unwrap_err().to_string();
        assert_eq!(
            msg,
            "STEPLOG_FLUSH_INTERVAL_S=\"ten\": expected seconds as a number of at least 0.001"
        );
        let given = [("queue_capacity".to_string(), Setting::Num(1.5))];
        let msg = WriterConfig::resolve(&given, no_env)
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("queue_capacity="), "{msg}");
        let given = [("overflow".to_string(), Setting::Text("lossy".into()))];
        let msg = WriterConfig::resolve(&given, no_env)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("block, drop_new, drop_oldest"), "{msg}");
        let given = [("flush_interval".to_string(), Setting::Num(1.5))];
        let msg = WriterConfig::resolve(&given, no_env)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("flush_interval=\"1.5\": unknown setting"),
            "{msg}"
        );
        let given = [("notes".to_string(), Setting::Text("hi".into()))];
        let msg = WriterConfig::resolve(&given, no_env)
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("notes=\"hi\": unknown setting"), "{msg}");
    }

    #[test]
    fn text_settings_are_the_policy_and_the_sink() {
        for name in ["overflow", "sink", "token", "tls_ca"] {
            assert!(is_text_setting(name), "{name}");
        }
        assert!(!SETTING_NAMES
            .iter()
            .any(|n| *n != "overflow" && is_text_setting(n)));
    }

    #[test]
    fn env_names_are_pinned() {
        assert_eq!(env_name("flush_interval_s"), "STEPLOG_FLUSH_INTERVAL_S");
        assert_eq!(env_name("queue_capacity"), "STEPLOG_QUEUE_CAPACITY");
    }

    #[test]
    fn zstd_levels_include_negative_fast_levels() {
        let given = [("zstd_level".to_string(), Setting::Num(-5.0))];
        assert_eq!(
            WriterConfig::resolve(&given, no_env).unwrap().zstd_level,
            -5
        );
        let given = [("zstd_level".to_string(), Setting::Num(23.0))];
        assert!(WriterConfig::resolve(&given, no_env).is_err());
    }
}
