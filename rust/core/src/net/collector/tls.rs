//! TLS for the collector: loads `--tls-cert`/`--tls-key` PEM files into a rustls acceptor
//! (ring provider, TLS 1.2 and 1.3). Invariant: bad or missing key material is an error at
//! startup that names the file, never a per-connection failure.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::config::TlsFiles;
use crate::error::{Error, Result};

fn bad(name: &str, path: &std::path::Path, reason: String) -> Error {
    Error::Config {
        name: name.into(),
        value: path.display().to_string(),
        reason,
    }
}

/// Builds the acceptor from the PEM files.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            bad(
                "--tls-cert",
                &files.cert,
                format!("expected a PEM certificate chain: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(bad(
            "--tls-cert",
            &files.cert,
            "no CERTIFICATE block in the file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        bad(
            "--tls-key",
            &files.key,
            format!("expected a PEM private key: {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| {
            bad(
                "--tls-key",
                &files.key,
                format!("does not fit the certificate: {e}"),
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
