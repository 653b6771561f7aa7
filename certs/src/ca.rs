//! The certificate authority: creating it, loading it, and issuing certificates.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::csr::VerifiedCsr;
use crate::identity::Identity;
use crate::pin::CaHash;
use crate::{CertError, PemError, PrivateKeyDer};

/// Certificates are valid from this long before their issue time, so a verifier whose clock
/// runs slightly behind the controller's still accepts a fresh certificate. It counts inside
/// the lifetime: a 7-day certificate spans exactly 7 days.
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The CA and the server certificate are valid from a day before their issue time: a device
/// whose clock runs behind (by up to a day) can still reach a controller set up today.
pub const INFRA_BACKDATE: Duration = Duration::from_secs(24 * 3600);

/// Default lifetimes.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
pub const SERVER_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
pub const DEVICE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Admin certificates: 30 days, renewed by `wardctl admin renew` (a leaked or forgotten bundle
/// stops working within a month even if nobody revokes it).
pub const ADMIN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// A certificate the CA just signed.
#[derive(Clone, Debug)]
pub struct IssuedCertificate {
    pub der: Vec<u8>,
    /// Lower-case hex of the serial number's bytes.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl IssuedCertificate {
    pub fn pem(&self) -> String {
        crate::certificate_to_pem(&self.der)
    }
}

/// Ward's CA: its certificate and signing key.
pub struct CertificateAuthority {
    cert_der: Vec<u8>,
    key: PrivateKeyDer,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("hash", &self.hash())
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Creates a new CA with an ECDSA P-256 key.
    pub fn create(name: &str, now: OffsetDateTime) -> Result<Self, CertError> {
        let key = PrivateKeyDer::generate()?;
        let key_pair = key.key_pair()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, now, CA_LIFETIME, INFRA_BACKDATE)?;
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key_pair)?;
        let cert_der = cert.der().to_vec();
        Self::from_der(cert_der, key)
    }

    /// Loads a CA from its certificate and key (PEM), checking that they belong together.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, LoadError> {
        let cert_der = crate::certificates_from_pem(cert_pem)?
            .into_iter()
            .next()
            .ok_or(PemError::Missing("CERTIFICATE"))?;
        let key = PrivateKeyDer::from_pem(key_pem)?;
        Self::from_der(cert_der, key).map_err(LoadError::Cert)
    }

    fn from_der(cert_der: Vec<u8>, key: PrivateKeyDer) -> Result<Self, CertError> {
        let key_pair = key.key_pair()?;
        let issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(cert_der.as_slice()), key_pair)?;
        let ca = Self {
            cert_der,
            key,
            issuer,
        };
        ca.check_key_matches()?;
        Ok(ca)
    }

    fn check_key_matches(&self) -> Result<(), CertError> {
        use x509_parser::prelude::FromDer;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&self.cert_der)
            .map_err(|_| CertError::Invalid("the CA certificate does not parse".into()))?;
        let key_pair = self.key.key_pair()?;
        if cert.public_key().raw
            != rcgen::PublicKeyData::subject_public_key_info(&key_pair).as_slice()
        {
            return Err(CertError::Invalid(
                "the CA key does not belong to the CA certificate".into(),
            ));
        }
        if !cert.is_ca() {
            return Err(CertError::Invalid(
                "the CA certificate is not a CA (CA:FALSE)".into(),
            ));
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn cert_pem(&self) -> String {
        crate::certificate_to_pem(&self.cert_der)
    }

    pub fn key(&self) -> &PrivateKeyDer {
        &self.key
    }

    /// The CA's DER SubjectPublicKeyInfo, to verify what the controller signs with the CA key.
    pub fn public_key_der(&self) -> Vec<u8> {
        use x509_parser::prelude::FromDer;
        x509_parser::certificate::X509Certificate::from_der(&self.cert_der)
            .map(|(_, c)| c.public_key().raw.to_vec())
            .unwrap_or_default()
    }

    pub fn hash(&self) -> CaHash {
        CaHash::of_certificate(&self.cert_der)
    }

    /// Issues the controller's TLS server certificate (and a fresh key for it) for the given
    /// DNS names and IP addresses. Its URI SAN names the controller by the first host name.
    pub fn issue_server(
        &self,
        hostnames: &[String],
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<(IssuedCertificate, PrivateKeyDer), CertError> {
        let first = hostnames
            .first()
            .ok_or_else(|| CertError::Invalid("a server certificate needs a host name".into()))?;
        let key = PrivateKeyDer::generate()?;
        let key_pair = key.key_pair()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(first);
        for host in hostnames {
            let invalid =
                || CertError::Invalid(format!("{host:?} is not a valid DNS name or IP address"));
            let san = match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) if is_dns_name(host) => {
                    SanType::DnsName(host.as_str().try_into().map_err(|_| invalid())?)
                }
                Err(_) => return Err(invalid()),
            };
            params.subject_alt_names.push(san);
        }
        let controller = Identity::Controller(first.clone()).to_uri();
        params.subject_alt_names.push(SanType::URI(
            controller
                .as_str()
                .try_into()
                .map_err(|_| CertError::Invalid(format!("{first:?} is not a valid host name")))?,
        ));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issued = self.sign(params, &key_pair, now, lifetime, INFRA_BACKDATE)?;
        Ok((issued, key))
    }

    /// Issues a client certificate for the CSR's public key. The identity comes from the caller
    /// (the enrollment record or the admin registry); nothing the CSR asks for is used.
    pub fn issue_client(
        &self,
        csr: &VerifiedCsr,
        identity: &Identity,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<IssuedCertificate, CertError> {
        let common_name = match identity {
            Identity::Device(id) => id.to_string(),
            Identity::Admin(name) => name.to_string(),
            Identity::Controller(_) => {
                return Err(CertError::Invalid(
                    "controller identities get server certificates, not client certificates".into(),
                ));
            }
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&common_name);
        params.subject_alt_names = vec![SanType::URI(
            identity
                .to_uri()
                .as_str()
                .try_into()
                .map_err(|_| CertError::Invalid("identity URI is not IA5".into()))?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, &csr.public_key()?, now, lifetime, BACKDATE)
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        public_key: &impl rcgen::PublicKeyData,
        now: OffsetDateTime,
        lifetime: Duration,
        backdate: Duration,
    ) -> Result<IssuedCertificate, CertError> {
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial();
        let serial_hex = hex::encode(serial.as_ref());
        params.serial_number = Some(serial);
        set_validity(&mut params, now, lifetime, backdate)?;
        let (not_before, not_after) = (params.not_before, params.not_after);
        let cert = params.signed_by(public_key, &self.issuer)?;
        Ok(IssuedCertificate {
            der: cert.der().to_vec(),
            serial: serial_hex,
            not_before,
            not_after,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error(transparent)]
    Cert(#[from] CertError),
}

/// A DNS host name: dot-separated labels of letters, digits and inner hyphens.
pub fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Ward");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn set_validity(
    params: &mut CertificateParams,
    now: OffsetDateTime,
    lifetime: Duration,
    backdate: Duration,
) -> Result<(), CertError> {
    if lifetime <= backdate {
        return Err(CertError::Invalid(format!(
            "a certificate lifetime must be longer than {} minutes",
            backdate.as_secs() / 60
        )));
    }
    // X.509 times have second precision; drop the fraction so what we record is what is signed.
    let now = now
        .replace_nanosecond(0)
        .map_err(|e| CertError::Invalid(e.to_string()))?;
    params.not_before = now - backdate;
    params.not_after = params.not_before + lifetime;
    Ok(())
}

/// 16 random bytes with the top bit cleared: a positive serial, unique with overwhelming odds.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // no leading zero byte, so the DER encoding keeps all 16 bytes
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::FromDer;

    use super::*;
    use crate::csr::make_csr;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn csr_asking_for_another_device_id_and_extensions_is_ignored() {
        let ca = CertificateAuthority::create("test", now()).unwrap();
        let (assigned, requested) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        // The CSR asks for another device's URI, a DNS name, CA:TRUE and serverAuth.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, requested.to_string());
        params.subject_alt_names = vec![
            SanType::URI(
                format!("ward://device/{requested}")
                    .as_str()
                    .try_into()
                    .unwrap(),
            ),
            SanType::DnsName("evil.example".try_into().unwrap()),
        ];
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let csr_der = params.serialize_request(&key).unwrap().der().to_vec();

        let csr = VerifiedCsr::from_der(&csr_der).unwrap();
        let issued = ca
            .issue_client(&csr, &Identity::Device(assigned), now(), DEVICE_LIFETIME)
            .unwrap();

        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&issued.der).unwrap();
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(sans.value.general_names.len(), 1);
        assert_eq!(
            crate::validate::identity_of(&cert).unwrap(),
            Identity::Device(assigned)
        );
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(cert.public_key().raw, csr.public_key_der());
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(cn, assigned.to_string());
    }

    #[test]
    fn device_certificate_lifetime_is_exactly_the_configured_one() {
        let ca = CertificateAuthority::create("test", now()).unwrap();
        let key = PrivateKeyDer::generate().unwrap();
        let csr = VerifiedCsr::from_der(&make_csr(&key, "x").unwrap()).unwrap();
        let issued = ca
            .issue_client(
                &csr,
                &Identity::Device(uuid::Uuid::new_v4()),
                now(),
                DEVICE_LIFETIME,
            )
            .unwrap();
        assert_eq!(issued.not_after - issued.not_before, DEVICE_LIFETIME);
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&issued.der).unwrap();
        assert_eq!(cert.validity().not_after.to_datetime(), issued.not_after);
        assert_eq!(hex::encode(cert.raw_serial()), issued.serial);
    }

    #[test]
    fn ca_round_trips_through_pem_and_refuses_a_foreign_key() {
        let ca = CertificateAuthority::create("test", now()).unwrap();
        let loaded = CertificateAuthority::from_pem(&ca.cert_pem(), &ca.key().to_pem()).unwrap();
        assert_eq!(loaded.hash(), ca.hash());
        let other = PrivateKeyDer::generate().unwrap();
        assert!(CertificateAuthority::from_pem(&ca.cert_pem(), &other.to_pem()).is_err());
    }

    #[test]
    fn server_certificate_covers_names_and_addresses() {
        let ca = CertificateAuthority::create("test", now()).unwrap();
        let hosts = vec!["ward.example.org".to_owned(), "127.0.0.1".to_owned()];
        let (issued, _key) = ca.issue_server(&hosts, now(), SERVER_LIFETIME).unwrap();
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&issued.der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        assert_eq!(
            crate::validate::identity_of(&cert).unwrap(),
            Identity::Controller("ward.example.org".into())
        );
        assert!(
            ca.issue_server(&["bad name!".to_owned()], now(), SERVER_LIFETIME)
                .is_err()
        );
    }
}
