//! Where a network sink sends its frames: the `sink` URL, the token and the TLS trust
//! settings, parsed and checked once when a run starts (keyword arguments, then
//! `STEPLOG_SINK`, `STEPLOG_TOKEN`, `STEPLOG_TLS_CA`).
//!
//! Invariant: the token never appears in `Debug` output or in an error message.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::net::protocol;

/// Where a network sink sends its frames, and how it proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given (`tcp://host:port` or `tls://host:port`), for messages.
    pub url: String,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Whether to speak TLS.
    pub tls: bool,
    /// The shared secret.
    pub token: Vec<u8>,
    /// PEM bundle of certificate authorities to trust for TLS (else the built-in roots).
    pub tls_ca: Option<PathBuf>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // NOTE: never the token.
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("tls_ca", &self.tls_ca)
            .finish_non_exhaustive()
    }
}

fn bad(name: &str, value: &str, reason: &str) -> Error {
    Error::Config {
        name: name.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

impl Target {
    /// Parses `tcp://HOST:PORT` or `tls://HOST:PORT` (IPv6 hosts in brackets).
    pub fn parse(url: &str, token: &[u8], tls_ca: Option<PathBuf>) -> Result<Self> {
        let expected = "expected tcp://HOST:PORT or tls://HOST:PORT";
        let (tls, rest) = if let Some(r) = url.strip_prefix("tcp://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("tls://") {
            (true, r)
        } else {
            return Err(bad("sink", url, expected));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad("sink", url, expected))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("sink", url, "the port must be a number from 1 to 65535"))?;
        if host.is_empty() {
            return Err(bad("sink", url, expected));
        }
        if token.is_empty() || token.len() > protocol::MAX_TOKEN {
            return Err(bad(
                "token",
                "",
                "a network sink needs a token of 1 to 255 bytes: pass token= or set \
                 STEPLOG_TOKEN to the collector's token",
            ));
        }
        Ok(Target {
            url: url.to_string(),
            host: host.to_string(),
            port,
            tls,
            token: token.to_vec(),
            tls_ca,
        })
    }
}

/// The network target chosen by the `sink`, `token` and `tls_ca` settings (keyword arguments,
/// then `STEPLOG_SINK`, `STEPLOG_TOKEN`, `STEPLOG_TLS_CA`); `None` for the file sink (no
/// `sink`, or `sink="file"`).
pub fn target_from(
    given: &[(String, crate::config::Setting)],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Target>> {
    use crate::config::Setting;
    let text = |name: &str| -> Result<Option<String>> {
        match given.iter().find(|(n, _)| n == name) {
            Some((_, Setting::Text(s))) => Ok(Some(s.clone())),
            Some((_, Setting::Num(n))) => Err(bad(name, &n.to_string(), "expected a string")),
            None => Ok(env(&crate::config::env_name(name)).filter(|s| !s.is_empty())),
        }
    };
    let Some(url) = text("sink")? else {
        return Ok(None);
    };
    let url = url.trim().to_string();
    if url == "file" {
        return Ok(None);
    }
    let token = text("token")?.unwrap_or_default();
    let ca = text("tls_ca")?.map(PathBuf::from);
    Target::parse(&url, token.trim().as_bytes(), ca).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Setting;

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, Setting)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Setting::Text(v.to_string())))
            .collect()
    }

    #[test]
    fn urls_parse_and_bad_ones_name_the_setting() {
        let t = Target::parse("tcp://127.0.0.1:7777", b"t", None).unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("127.0.0.1", 7777, false));
        let t = Target::parse("tls://[::1]:9/", b"t", None).unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("::1", 9, true));
        for bad in [
            "http://h:1",
            "tcp://h",
            "tcp://:1",
            "tcp://h:0",
            "tcp://h:99999",
        ] {
            let e = Target::parse(bad, b"t", None).unwrap_err().to_string();
            assert!(e.starts_with("sink="), "{bad}: {e}");
        }
        let e = Target::parse("tcp://h:1", b"", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("STEPLOG_TOKEN"), "{e}");
        assert!(!format!("{t:?}").contains('t') || !format!("{t:?}").contains("token: "));
    }

    #[test]
    fn settings_then_environment() {
        let none = |_: &str| None;
        assert!(target_from(&[], none).unwrap().is_none());
        assert!(target_from(&given(&[("sink", "file")]), none)
            .unwrap()
            .is_none());
        let env = |k: &str| match k {
            "STEPLOG_SINK" => Some("tcp://envhost:1".to_string()),
            "STEPLOG_TOKEN" => Some(" envtoken\n".to_string()),
            _ => None,
        };
        let t = target_from(&[], env).unwrap().unwrap();
        assert_eq!(
            (t.host.as_str(), t.token.as_slice()),
            ("envhost", &b"envtoken"[..])
        );
        let t = target_from(&given(&[("sink", "tcp://kw:2"), ("token", "kwt")]), env)
            .unwrap()
            .unwrap();
        assert_eq!((t.host.as_str(), t.token.as_slice()), ("kw", &b"kwt"[..]));
        let e = target_from(&given(&[("sink", "tcp://kw:2")]), none).unwrap_err();
        assert!(e.to_string().contains("token"), "{e}");
    }
}
