//! TLS material: PEM files to rustls server configs (ALPN `h2`, `http/1.1`), and development
//! certificates (a CA, and a server certificate for localhost signed by it) made with rcgen.
//!
//! The ingest certificate sits behind a [`CertReloader`]: SIGHUP swaps in a freshly read
//! certificate and key for new handshakes, open connections keep theirs, and a bad pair is
//! refused while the old one stays. Only rustls; no OpenSSL anywhere.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS material could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the certificate/key pair.
    #[error("TLS certificate and key do not form a usable server identity: {0}")]
    Rustls(#[from] rustls::Error),
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing generated files failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Builds the ingest server config from a PEM certificate chain and a PEM private key; the
/// returned [`CertReloader`] re-reads both files on demand.
pub fn server_config(
    cert: &Path,
    key: &Path,
) -> Result<(Arc<ServerConfig>, Arc<CertReloader>), TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = Arc::new(CertReloader {
        current: RwLock::new(Arc::new(load_certified_key(cert, key, &provider)?)),
        cert: cert.to_owned(),
        key: key.to_owned(),
        provider: provider.clone(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certs.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), certs))
}

fn load_certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let pem_error = |path: &Path, message: String| TlsError::Pem {
        path: path.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(cert, "no CERTIFICATE block found".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e.to_string()))?;
    Ok(CertifiedKey::from_der(chain, key_der, provider)?)
}

/// The ingest certificate and key, swapped atomically on reload; handshakes read the current
/// pair (connections already open keep theirs).
#[derive(Debug)]
pub struct CertReloader {
    current: RwLock<Arc<CertifiedKey>>,
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
}

impl CertReloader {
    /// Re-reads the certificate and key files; on error the current pair stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(load_certified_key(&self.cert, &self.key, &self.provider)?);
        match self.current.write() {
            Ok(mut current) => *current = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    /// The pair handshakes use now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Files written by [`generate_dev_certs`].
#[derive(Debug, Clone)]
pub struct DevCerts {
    /// The CA certificate clients trust (mount it as `/etc/lightstep/cacert.pem`).
    pub ca_cert: PathBuf,
    /// The server certificate chain (server certificate, then the CA).
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
}

/// Makes a development CA and a server certificate for `hosts` (DNS names or IPs) signed by it,
/// writing `cacert.pem`, `server.pem` and `server-key.pem` into `dir`.
pub fn generate_dev_certs(dir: &Path, hosts: &[String]) -> Result<DevCerts, TlsError> {
    let now = time_now();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cubesat development CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - rcgen_days(1);
    ca_params.not_after = now + rcgen_days(3650);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(hosts.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        hosts.first().map_or("localhost", String::as_str),
    );
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - rcgen_days(1);
    params.not_after = now + rcgen_days(825);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let files = DevCerts {
        ca_cert: dir.join("cacert.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
    };
    write(&files.ca_cert, &ca_cert.pem())?;
    write(
        &files.server_cert,
        &format!("{}{}", cert.pem(), ca_cert.pem()),
    )?;
    write(&files.server_key, &key.serialize_pem())?;
    Ok(files)
}

fn write(path: &Path, contents: &str) -> Result<(), TlsError> {
    std::fs::write(path, contents).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn rcgen_days(days: i64) -> time::Duration {
    time::Duration::days(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certs_load_as_server_config() {
        let dir = tempfile::tempdir().unwrap();
        let files =
            generate_dev_certs(dir.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
        let (config, _) = server_config(&files.server_cert, &files.server_key).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let ca = std::fs::read_to_string(&files.ca_cert).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn reload_swaps_the_pair_and_a_bad_one_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate_dev_certs(dir.path(), &["localhost".into()]).unwrap();
        let (_, certs) = server_config(&files.server_cert, &files.server_key).unwrap();
        let first = certs.current();
        // New files in place (a renewed certificate): the next handshake gets them.
        generate_dev_certs(dir.path(), &["localhost".into()]).unwrap();
        certs.reload().unwrap();
        let second = certs.current();
        assert_ne!(first.cert, second.cert);
        // A key that does not match, or a broken file: refused, the current pair stays.
        let other = tempfile::tempdir().unwrap();
        let stray = generate_dev_certs(other.path(), &["localhost".into()]).unwrap();
        std::fs::copy(&stray.server_key, &files.server_key).unwrap();
        assert!(certs.reload().is_err());
        std::fs::write(&files.server_cert, "garbage").unwrap();
        assert!(certs.reload().is_err());
        assert_eq!(certs.current().cert, second.cert);
    }

    #[test]
    fn missing_or_empty_pem_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = server_config(&empty, &empty).unwrap_err().to_string();
        assert!(err.contains("empty.pem"), "{err}");
        let err = server_config(&dir.path().join("nope.pem"), &empty)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.pem"), "{err}");
    }
}
