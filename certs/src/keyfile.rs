//! Passphrase-protected private keys: PKCS#8 `EncryptedPrivateKeyInfo` (RFC 5208 §6) with
//! PBES2 (RFC 8018), scrypt (RFC 7914) deriving the key and AES-256-CBC encrypting. In PEM it is
//! an "ENCRYPTED PRIVATE KEY" block, which OpenSSL reads (`openssl pkcs8 -in FILE`).
//!
//! The scrypt cost is N = 2^14, r = 8, p = 5: about the work of the commonly recommended
//! N = 2^17, r = 8, p = 1, in 16 MiB of memory, because OpenSSL refuses scrypt parameters that
//! need more than 32 MiB (its default limit), and a key OpenSSL cannot read would lock its owner
//! in to Ward.
//!
//! CBC has no integrity check of its own: a wrong passphrase and an altered ciphertext both show
//! as [`KeyFileError::WrongPassphrase`] (bad padding, plaintext that is not a PKCS#8 key, or a
//! key whose private and public parts disagree).

use pkcs8::der::Decode;
use pkcs8::pkcs5::{self, pbes2};
use pkcs8::{EncryptedPrivateKeyInfo, PrivateKeyInfo};
use rand::TryRngCore;
use zeroize::Zeroizing;

use crate::{PemError, PrivateKeyDer};

/// The PEM label of an unencrypted PKCS#8 key.
pub const PLAIN_LABEL: &str = "PRIVATE KEY";
/// The PEM label of an encrypted PKCS#8 key.
pub const ENCRYPTED_LABEL: &str = "ENCRYPTED PRIVATE KEY";

/// log2 of scrypt's cost parameter N for keys Ward encrypts.
pub const SCRYPT_LOG_N: u8 = 14;
/// scrypt's block size r for keys Ward encrypts.
pub const SCRYPT_R: u32 = 8;
/// scrypt's parallelization p for keys Ward encrypts.
pub const SCRYPT_P: u32 = 5;

/// The most memory a key file's scrypt parameters may ask for when decrypting (128 · r · N
/// bytes): more is refused rather than attempted, since a failed allocation aborts.
const MAX_SCRYPT_MEMORY: u64 = 1 << 30;

/// The most scrypt work (N·r·p) a key file may ask for: 2^23, eight times the commonly
/// recommended N = 2^17, r = 8, p = 1 and about thirteen times what Ward writes (2^14 · 8 · 5).
const MAX_SCRYPT_WORK: u64 = 1 << 23;

/// The most PBKDF2 iterations a key file may ask for: ten million, sixteen times OWASP's
/// 600,000 for PBKDF2-HMAC-SHA256 (OpenSSL writes 2,048).
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    #[error("the passphrase does not decrypt the key (or the encrypted key was altered)")]
    WrongPassphrase,
    #[error("the encrypted private key is malformed")]
    Malformed,
    #[error(
        "the private key is encrypted with a scheme Ward does not read ({0}); Ward reads PKCS#8 PBES2 with scrypt or PBKDF2-HMAC-SHA2 and AES-CBC"
    )]
    Unsupported(String),
    #[error("the private key to encrypt is not a PKCS#8 key")]
    NotPkcs8,
    #[error("cannot encrypt the private key: {0}")]
    Encrypt(String),
}

/// An encrypted private key: the DER of a PKCS#8 `EncryptedPrivateKeyInfo`. Holds no secret,
/// but is only as strong as its passphrase.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedKey(Vec<u8>);

impl std::fmt::Debug for EncryptedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptedKey(..)")
    }
}

/// The private key block of a PEM document, as found: plain or encrypted.
#[derive(Debug)]
pub enum StoredKey {
    Plain(PrivateKeyDer),
    Encrypted(EncryptedKey),
}

impl StoredKey {
    pub fn is_encrypted(&self) -> bool {
        matches!(self, Self::Encrypted(_))
    }

    /// Reads the first "PRIVATE KEY" or "ENCRYPTED PRIVATE KEY" block of a PEM document.
    /// An encrypted block must parse as an `EncryptedPrivateKeyInfo`; nothing is decrypted.
    pub fn from_pem(text: &str) -> Result<Self, PemError> {
        let blocks = pem::parse_many(text).map_err(|_| PemError::Malformed)?;
        let block = blocks
            .into_iter()
            .find(|b| b.tag() == PLAIN_LABEL || b.tag() == ENCRYPTED_LABEL)
            .ok_or(PemError::Missing(PLAIN_LABEL))?;
        if block.tag() == PLAIN_LABEL {
            Ok(Self::Plain(PrivateKeyDer::new(block.into_contents())))
        } else {
            EncryptedKey::from_der(block.into_contents())
                .map(Self::Encrypted)
                .map_err(|_| PemError::Malformed)
        }
    }

    /// The block as PEM text ("PRIVATE KEY" or "ENCRYPTED PRIVATE KEY"), zeroized on drop.
    pub fn to_pem(&self) -> Zeroizing<String> {
        match self {
            Self::Plain(key) => key.to_pem(),
            Self::Encrypted(key) => Zeroizing::new(key.to_pem()),
        }
    }
}

/// Encrypts `key` (PKCS#8 DER) under `passphrase` with a fresh random salt and IV.
pub fn encrypt(key: &PrivateKeyDer, passphrase: &[u8]) -> Result<EncryptedKey, KeyFileError> {
    let cost = pkcs5::scrypt::Params::new(SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, 32)
        .map_err(|e| KeyFileError::Encrypt(e.to_string()))?;
    encrypt_with_cost(key, passphrase, cost)
}

fn encrypt_with_cost(
    key: &PrivateKeyDer,
    passphrase: &[u8],
    cost: pkcs5::scrypt::Params,
) -> Result<EncryptedKey, KeyFileError> {
    if passphrase.is_empty() {
        return Err(KeyFileError::EmptyPassphrase);
    }
    let info = PrivateKeyInfo::from_der(key.as_bytes()).map_err(|_| KeyFileError::NotPkcs8)?;
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    let mut rng = rand::rngs::OsRng;
    rng.try_fill_bytes(&mut salt)
        .and_then(|()| rng.try_fill_bytes(&mut iv))
        .map_err(|e| KeyFileError::Encrypt(format!("no randomness from the OS: {e}")))?;
    let params = pbes2::Parameters::scrypt_aes256cbc(cost, &salt, &iv)
        .map_err(|e| KeyFileError::Encrypt(e.to_string()))?;
    let doc = info
        .encrypt_with_params(params, passphrase)
        .map_err(|e| KeyFileError::Encrypt(e.to_string()))?;
    Ok(EncryptedKey(doc.as_bytes().to_vec()))
}

impl EncryptedKey {
    /// Checks that `der` is an `EncryptedPrivateKeyInfo`.
    pub fn from_der(der: Vec<u8>) -> Result<Self, KeyFileError> {
        EncryptedPrivateKeyInfo::from_der(&der).map_err(|_| KeyFileError::Malformed)?;
        Ok(Self(der))
    }

    pub fn as_der(&self) -> &[u8] {
        &self.0
    }

    /// "ENCRYPTED PRIVATE KEY" PEM.
    pub fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new(ENCRYPTED_LABEL, self.0.clone()))
    }

    /// Decrypts the key. The result is checked to be a PKCS#8 key.
    pub fn decrypt(&self, passphrase: &[u8]) -> Result<PrivateKeyDer, KeyFileError> {
        if passphrase.is_empty() {
            return Err(KeyFileError::EmptyPassphrase);
        }
        let info =
            EncryptedPrivateKeyInfo::from_der(&self.0).map_err(|_| KeyFileError::Malformed)?;
        let params = match &info.encryption_algorithm {
            pkcs5::EncryptionScheme::Pbes2(params) => params,
            other => {
                return Err(KeyFileError::Unsupported(format!("PKCS#5 {}", other.oid())));
            }
        };
        check_kdf(&params.kdf)?;
        let plain = info.decrypt(passphrase).map_err(|e| match e {
            pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::UnsupportedAlgorithm { oid }) => {
                KeyFileError::Unsupported(oid.to_string())
            }
            pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::AlgorithmParametersInvalid {
                ..
            }) => KeyFileError::Malformed,
            // Bad padding (reported as EncryptFailed or DecryptFailed), or plaintext that is
            // not DER: the passphrase is wrong or the ciphertext was changed.
            _ => KeyFileError::WrongPassphrase,
        })?;
        PrivateKeyInfo::from_der(plain.as_bytes()).map_err(|_| KeyFileError::WrongPassphrase)?;
        let key = PrivateKeyDer::new(plain.as_bytes().to_vec());
        // CBC garbles a block around any change to the ciphertext; the key's parts (private
        // scalar, embedded public key) must still agree, which garbled bytes do not.
        key.key_pair().map_err(|_| KeyFileError::WrongPassphrase)?;
        Ok(key)
    }
}

/// Refuses key-derivation parameters that are invalid or that ask for more work than a key
/// Ward or OpenSSL writes ever needs: a key file is input, and one crafted to ask for hours of
/// scrypt or PBKDF2 would otherwise hang `wardctl` before the passphrase is even checked.
/// scrypt: N a power of two above 1, r and p not zero, 128·r·N bytes of memory at most 1 GiB
/// and N·r·p at most [`MAX_SCRYPT_WORK`]. PBKDF2: 1 to [`MAX_PBKDF2_ITERATIONS`] iterations.
fn check_kdf(kdf: &pbes2::Kdf<'_>) -> Result<(), KeyFileError> {
    if let Some(pbkdf2) = kdf.pbkdf2() {
        let iterations = pbkdf2.iteration_count;
        if iterations == 0 {
            return Err(KeyFileError::Malformed);
        }
        if iterations > MAX_PBKDF2_ITERATIONS {
            return Err(KeyFileError::Unsupported(format!(
                "PBKDF2 with {iterations} iterations, more than the {MAX_PBKDF2_ITERATIONS} Ward accepts"
            )));
        }
        return Ok(());
    }
    let Some(scrypt) = kdf.scrypt() else {
        return Ok(());
    };
    let n = scrypt.cost_parameter;
    let (r, p) = (scrypt.block_size, scrypt.parallelization);
    if n < 2 || !n.is_power_of_two() || r == 0 || p == 0 {
        return Err(KeyFileError::Malformed);
    }
    let memory = 128u64.saturating_mul(u64::from(r)).saturating_mul(n);
    if memory > MAX_SCRYPT_MEMORY {
        return Err(KeyFileError::Unsupported(format!(
            "scrypt with N={n}, r={r} needs more than 1 GiB"
        )));
    }
    let work = n.saturating_mul(u64::from(r)).saturating_mul(u64::from(p));
    if work > MAX_SCRYPT_WORK {
        return Err(KeyFileError::Unsupported(format!(
            "scrypt with N={n}, r={r}, p={p} asks for more work than Ward accepts (N·r·p at most {MAX_SCRYPT_WORK})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const PASS: &[u8] = b"correct horse battery staple";

    fn sealed() -> (PrivateKeyDer, EncryptedKey) {
        let key = PrivateKeyDer::generate().unwrap();
        let sealed = encrypt(&key, PASS).unwrap();
        (key, sealed)
    }

    #[test]
    fn round_trip_through_pem() {
        let (key, sealed) = sealed();
        let pem = sealed.to_pem();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let StoredKey::Encrypted(read) = StoredKey::from_pem(&pem).unwrap() else {
            panic!("not read as encrypted");
        };
        assert_eq!(read, sealed);
        assert_eq!(read.decrypt(PASS).unwrap().as_bytes(), key.as_bytes());
        // The DER holds no plaintext key.
        assert!(
            !sealed
                .as_der()
                .windows(key.as_bytes().len())
                .any(|w| w == key.as_bytes())
        );
    }

    #[test]
    fn uses_scrypt_and_aes_256_cbc_with_fresh_salt_and_iv() {
        let (key, sealed) = sealed();
        let info = EncryptedPrivateKeyInfo::from_der(sealed.as_der()).unwrap();
        let params = info.encryption_algorithm.pbes2().unwrap();
        let scrypt = params.kdf.scrypt().expect("scrypt");
        assert_eq!(scrypt.cost_parameter, 1 << SCRYPT_LOG_N);
        assert_eq!(u32::from(scrypt.block_size), SCRYPT_R);
        assert_eq!(u32::from(scrypt.parallelization), SCRYPT_P);
        assert!(matches!(
            params.encryption,
            pbes2::EncryptionScheme::Aes256Cbc { .. }
        ));
        let again = encrypt(&key, PASS).unwrap();
        assert_ne!(again, sealed, "salt and IV must differ per encryption");
    }

    #[test]
    fn wrong_passphrase_is_a_clear_error() {
        let (_, sealed) = sealed();
        for wrong in [
            &b"correct horse battery stapler"[..],
            b"x",
            b"CORRECT HORSE BATTERY STAPLE",
        ] {
            let err = sealed.decrypt(wrong).unwrap_err();
            assert!(matches!(err, KeyFileError::WrongPassphrase), "{err:?}");
            assert!(err.to_string().contains("passphrase does not decrypt"));
        }
        assert!(matches!(
            sealed.decrypt(b"").unwrap_err(),
            KeyFileError::EmptyPassphrase
        ));
        assert!(matches!(
            encrypt(&PrivateKeyDer::generate().unwrap(), b"").unwrap_err(),
            KeyFileError::EmptyPassphrase
        ));
    }

    #[test]
    fn tampered_ciphertext_is_refused() {
        // A cheap scrypt cost: this decrypts some 170 times.
        let key = PrivateKeyDer::generate().unwrap();
        let cost = pkcs5::scrypt::Params::new(4, 8, 1, 32).unwrap();
        let sealed = encrypt_with_cost(&key, PASS, cost).unwrap();
        assert_eq!(sealed.decrypt(PASS).unwrap().as_bytes(), key.as_bytes());
        let der = sealed.as_der();
        // Flip a bit in every byte of the ciphertext and of the IV: every change is refused,
        // none yields a (corrupted) key.
        let info = EncryptedPrivateKeyInfo::from_der(der).unwrap();
        let ct_start = der.len() - info.encrypted_data.len();
        let pbes2::EncryptionScheme::Aes256Cbc { iv } =
            info.encryption_algorithm.pbes2().unwrap().encryption
        else {
            panic!("not AES-256-CBC");
        };
        let iv_start = der
            .windows(16)
            .position(|w| w == iv)
            .expect("the IV is in the DER");
        let positions = (ct_start..der.len()).chain(iv_start..iv_start + 16);
        for pos in positions {
            let mut bad = der.to_vec();
            bad[pos] ^= 0x01;
            let err = EncryptedKey::from_der(bad)
                .and_then(|k| k.decrypt(PASS))
                .err()
                .unwrap_or_else(|| panic!("a change at byte {pos} was not detected"));
            assert!(
                matches!(err, KeyFileError::WrongPassphrase | KeyFileError::Malformed),
                "{err:?}"
            );
        }
        // A truncated document is malformed, not a crash.
        assert!(matches!(
            EncryptedKey::from_der(der[..der.len() - 5].to_vec()).unwrap_err(),
            KeyFileError::Malformed
        ));
    }

    #[test]
    fn an_unencrypted_key_is_detected_as_such() {
        let key = PrivateKeyDer::generate().unwrap();
        let text = format!("junk before\n{}", key.to_pem().as_str());
        let stored = StoredKey::from_pem(&text).unwrap();
        assert!(!stored.is_encrypted());
        let StoredKey::Plain(read) = stored else {
            unreachable!()
        };
        assert_eq!(read.as_bytes(), key.as_bytes());
        let sealed = encrypt(&key, PASS).unwrap();
        assert!(
            StoredKey::from_pem(&sealed.to_pem())
                .unwrap()
                .is_encrypted()
        );
        assert!(matches!(
            StoredKey::from_pem("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"),
            Err(PemError::Missing(_))
        ));
        // An "encrypted" block that is not an EncryptedPrivateKeyInfo.
        let bogus = pem::encode(&pem::Pem::new(ENCRYPTED_LABEL, vec![0x30, 0x03, 1, 2, 3]));
        assert!(matches!(
            StoredKey::from_pem(&bogus),
            Err(PemError::Malformed)
        ));
    }

    /// A key file with these parameters, made by hand with a small ciphertext: deriving with
    /// them would take gigabytes or hours, so nothing may try.
    fn document(params: pbes2::Parameters<'_>) -> EncryptedKey {
        let doc = EncryptedPrivateKeyInfo {
            encryption_algorithm: params.into(),
            encrypted_data: &[0u8; 48],
        };
        EncryptedKey::from_der(pkcs8::der::Encode::to_der(&doc).unwrap()).unwrap()
    }

    #[test]
    fn absurd_scrypt_parameters_are_refused_before_deriving() {
        let salt = [7u8; 16];
        let iv = [9u8; 16];
        // N = 2^24, r = 8: 16 GiB.
        let cost = pkcs5::scrypt::Params::new(24, 8, 1, 32).unwrap();
        let huge = document(pbes2::Parameters::scrypt_aes256cbc(cost, &salt, &iv).unwrap());
        let err = huge.decrypt(PASS).unwrap_err();
        assert!(matches!(err, KeyFileError::Unsupported(_)), "{err:?}");

        for n in [0, 1, 3, 1000] {
            let cost = pkcs5::scrypt::Params::new(10, 8, 1, 32).unwrap();
            let mut params = pbes2::Parameters::scrypt_aes256cbc(cost, &salt, &iv).unwrap();
            let pbes2::Kdf::Scrypt(scrypt) = &mut params.kdf else {
                unreachable!()
            };
            scrypt.cost_parameter = n;
            let err = document(params).decrypt(PASS).unwrap_err();
            assert!(matches!(err, KeyFileError::Malformed), "N={n}: {err:?}");
        }
    }

    /// A key file is input an attacker can craft: its scrypt parallelization and its PBKDF2
    /// iteration count are bounded like scrypt's memory, so decrypting never runs for hours.
    #[test]
    fn key_files_asking_for_hours_of_work_are_refused_before_deriving() {
        let salt = [7u8; 16];
        let iv = [9u8; 16];
        // scrypt N = 2^14, r = 8 (16 MiB, within the memory bound), p = 65535: 13,000 times
        // the work of a key Ward writes.
        let cost = pkcs5::scrypt::Params::new(14, 8, 1, 32).unwrap();
        let mut params = pbes2::Parameters::scrypt_aes256cbc(cost, &salt, &iv).unwrap();
        let pbes2::Kdf::Scrypt(scrypt) = &mut params.kdf else {
            unreachable!()
        };
        scrypt.parallelization = u16::MAX;
        let err = document(params).decrypt(PASS).unwrap_err();
        assert!(matches!(err, KeyFileError::Unsupported(_)), "{err:?}");
        assert!(err.to_string().contains("p=65535"), "{err}");

        // PBKDF2 with 2^32 - 1 iterations.
        let pbkdf2 = |iterations: u32| {
            let mut params = pbes2::Parameters::pbkdf2_sha256_aes256cbc(1, &salt, &iv).unwrap();
            let pbes2::Kdf::Pbkdf2(pbkdf2) = &mut params.kdf else {
                unreachable!()
            };
            pbkdf2.iteration_count = iterations;
            document(params)
        };
        let err = pbkdf2(u32::MAX).decrypt(PASS).unwrap_err();
        assert!(matches!(err, KeyFileError::Unsupported(_)), "{err:?}");
        assert!(err.to_string().contains("iterations"), "{err}");
        // PBKDF2 with no iterations at all is malformed.
        let err = pbkdf2(0).decrypt(PASS).unwrap_err();
        assert!(matches!(err, KeyFileError::Malformed), "{err:?}");
    }

    /// OpenSSL reads what Ward writes, and Ward reads what OpenSSL writes (scrypt, and its
    /// default PBKDF2-HMAC-SHA256). Skipped when no `openssl` is installed.
    #[test]
    fn openssl_interoperates_both_ways() {
        use std::process::Command;
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("openssl is not installed; skipping");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, b"correct horse battery staple\n").unwrap();
        let passin = format!("file:{}", pw.display());
        let (key, sealed) = sealed();
        let sealed_file = dir.path().join("sealed.pem");
        // As in a bundle: certificates first, then the key.
        let cert = crate::certificate_to_pem(&[0x30, 0x00]);
        std::fs::write(&sealed_file, format!("{cert}{cert}{}", sealed.to_pem())).unwrap();
        let out = Command::new("openssl")
            .args(["pkcs8", "-passin", &passin, "-in"])
            .arg(&sealed_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // OpenSSL may encode the same key differently: compare the public keys.
        let spki = |k: &PrivateKeyDer| {
            rcgen::PublicKeyData::subject_public_key_info(&k.key_pair().unwrap())
        };
        let theirs = PrivateKeyDer::from_pem(&String::from_utf8(out.stdout).unwrap()).unwrap();
        assert_eq!(spki(&theirs), spki(&key));
        let wrong = dir.path().join("wrong");
        std::fs::write(&wrong, b"not the passphrase\n").unwrap();
        let out = Command::new("openssl")
            .args(["pkcs8", "-in"])
            .arg(&sealed_file)
            .arg("-passin")
            .arg(format!("file:{}", wrong.display()))
            .output()
            .unwrap();
        assert!(!out.status.success());

        let plain_file = dir.path().join("plain.pem");
        std::fs::write(&plain_file, key.to_pem().as_bytes()).unwrap();
        for extra in [&["-scrypt"][..], &["-v2", "aes-256-cbc"][..]] {
            let out = Command::new("openssl")
                .args(["pkcs8", "-topk8", "-passout", &passin])
                .args(extra)
                .arg("-in")
                .arg(&plain_file)
                .output()
                .unwrap();
            assert!(out.status.success(), "{extra:?}");
            let text = String::from_utf8(out.stdout).unwrap();
            let StoredKey::Encrypted(theirs) = StoredKey::from_pem(&text).unwrap() else {
                panic!("{extra:?}: not encrypted");
            };
            assert_eq!(theirs.decrypt(PASS).unwrap().as_bytes(), key.as_bytes());
            assert!(matches!(
                theirs.decrypt(b"wrong").unwrap_err(),
                KeyFileError::WrongPassphrase
            ));
        }
    }
}
