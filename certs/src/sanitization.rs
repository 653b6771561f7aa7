//! What a wipe receipt states for a certificate of sanitization in the sense of NIST SP 800-88
//! Rev. 2 (September 2025): what was sanitized, the category and method, where the key was
//! held and how it was destroyed, the tool, how the result was verified, and when. The device
//! states these in its signed receipt; which command and which admin asked for the wipe is the
//! controller's record and is added when the certificate is shown.

use serde::{Deserialize, Serialize};

/// The guidance the receipt's terms come from.
pub const STANDARD: &str = "NIST SP 800-88 Rev. 2";

/// The category where the key was held in a TPM and destroyed there: the data is infeasible to
/// recover with any technique, which SP 800-88 calls purge.
pub const CATEGORY_PURGE: &str = "purge";

/// The category where the key was held in a file or the OS secret store: its destruction is
/// itself only an overwrite, which flash and copy-on-write storage do not guarantee, so the
/// cryptographic erase is claimed no stronger than a clear.
pub const CATEGORY_CLEAR: &str = "clear";

/// The category a receipt may state for where its key was held: purge only for a key
/// destroyed inside a TPM, clear otherwise (and for receipts that do not say).
pub fn category_for(protection: Option<&crate::receipt::KeyProtection>) -> &'static str {
    if protection == Some(&crate::receipt::KeyProtection::Tpm) {
        CATEGORY_PURGE
    } else {
        CATEGORY_CLEAR
    }
}

/// The technique.
pub const METHOD: &str = "cryptographic erase";

/// What the files themselves went through, after the key was gone: a clear (one overwrite),
/// which flash and copy-on-write storage do not guarantee to reach every copy.
pub const FILES_METHOD: &str = "clear: each file overwritten once with zeros, synced, and deleted, through file descriptors that follow no symbolic link (best effort on SSDs and copy-on-write filesystems; the key's destruction is what makes the data unrecoverable)";

/// The verification method: every step checked, not a sample.
pub const VERIFICATION_METHOD: &str = "full";

/// The certificate fields the device signs, inside the receipt body (`"sanitization"`).
/// Absent in receipts from agents before version 0.2.0's certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sanitization {
    /// [`STANDARD`].
    pub standard: String,
    /// The device's host name when it wiped (the device id is the receipt's `device_id`).
    pub hostname: String,
    /// The media sanitized: the messaging data directory, as an absolute path.
    pub messaging_dir: String,
    /// What the directory held when the deletion began: files and bytes.
    pub files_found: u64,
    pub bytes_found: u64,
    /// [`CATEGORY_PURGE`] (key in a TPM) or [`CATEGORY_CLEAR`], and [`METHOD`].
    pub category: String,
    pub method: String,
    /// Where the data key was held, e.g. "TPM 2.0 NV index 0x01300057".
    pub key_location: String,
    /// How the key was destroyed there.
    pub key_destruction: String,
    /// [`FILES_METHOD`].
    pub files_method: String,
    /// The program that sanitized, and its version.
    pub tool: String,
    pub tool_version: String,
    /// [`VERIFICATION_METHOD`], and what was checked with what result.
    pub verification_method: String,
    pub verification: String,
    /// When the wipe began (RFC 3339, the device's clock); the receipt's `completed_at` is when
    /// it ended. Absent for a wipe begun by an agent that did not record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Base64 of the DER SubjectPublicKeyInfo of the key that signed this receipt: the
    /// device's key, which the controller checks against the key it enrolled. With it anyone
    /// can check the signature with OpenSSL alone.
    pub signer_public_key: String,
}
