//! The admin credential bundle: one 0600 PEM file holding the admin certificate, the CA
//! certificate it chains to, and the admin's private key.

use std::path::Path;

use ward_certs::{PrivateKeyDer, certificate_to_pem, certificates_from_pem};
use zeroize::Zeroizing;

pub struct AdminBundle {
    pub certificate_der: Vec<u8>,
    pub ca_der: Vec<u8>,
    pub key: PrivateKeyDer,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read the admin bundle {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the admin bundle {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} is not an admin bundle: expected the admin certificate, the CA certificate and a private key in PEM"
    )]
    Malformed { path: String },
}

impl AdminBundle {
    /// The mutual-TLS client configuration that speaks as this admin to its controller.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, ward_certs::tls::TlsError> {
        ward_certs::tls::client_config(
            &self.ca_der,
            Some((std::slice::from_ref(&self.certificate_der), &self.key)),
        )
    }

    pub fn to_pem(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::new());
        text.push_str(&certificate_to_pem(&self.certificate_der));
        text.push_str(&certificate_to_pem(&self.ca_der));
        text.push_str(&self.key.to_pem());
        text
    }

    /// Writes the bundle with mode 0600. Refuses to replace an existing file.
    pub fn write_new(&self, path: &Path) -> Result<(), BundleError> {
        ward_certs::files::create_secret_file(path, self.to_pem().as_bytes()).map_err(|source| {
            BundleError::Write {
                path: path.display().to_string(),
                source,
            }
        })
    }

    pub fn read(path: &Path) -> Result<Self, BundleError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| BundleError::Read {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        Self::from_pem(&text, path)
    }

    /// Parses the bundle's PEM text; `path` only names it in the error.
    pub fn from_pem(text: &str, path: &Path) -> Result<Self, BundleError> {
        let malformed = || BundleError::Malformed {
            path: path.display().to_string(),
        };
        let certs = certificates_from_pem(text).map_err(|_| malformed())?;
        let key = PrivateKeyDer::from_pem(text).map_err(|_| malformed())?;
        match certs.as_slice() {
            [leaf, ca] => Ok(Self {
                certificate_der: leaf.clone(),
                ca_der: ca.clone(),
                key,
            }),
            _ => Err(malformed()),
        }
    }
}
