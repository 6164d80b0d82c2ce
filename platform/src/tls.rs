//! TLS client settings for the backing services (PostgreSQL, Redis): rustls, as everywhere in
//! the workspace, with aws-lc-rs as the crypto provider (already built for reqwest).

use std::{path::Path, sync::Arc};

use anyhow::Context;
use rustls::pki_types::{CertificateDer, pem::PemObject};

/// A client configuration that verifies the server's certificate and host name against the
/// CAs in `ca_file` when given (like libpq's `sslrootcert`), the system's otherwise. `key`
/// names the setting in error messages, e.g. `POSTGRES_TLS_CA_FILE`.
pub fn client_config(ca_file: Option<&Path>, key: &str) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("{key} {} is not a PEM file", path.display()))?;
            for cert in certs {
                roots.add(cert).with_context(|| {
                    format!("{key} {} holds an unusable certificate", path.display())
                })?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "no CA certificates to verify TLS servers with: set {key} or install the system's (ca-certificates)"
    );
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_that_is_not_pem_is_named_in_the_error() {
        let path = std::env::temp_dir().join(format!("not-pem-{}", std::process::id()));
        std::fs::write(&path, "hello").unwrap();
        let error = client_config(Some(&path), "SOME_CA_FILE").unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(format!("{error:#}").contains("SOME_CA_FILE"), "{error:#}");
    }
}
