use super::*;

/// Attack review 2 (a copy of the disk after retirement, L): with the TPM not found at
/// retirement (`--tpm` naming none, the device node gone), `destroy` returned `NoTpm` before
/// destroying the key's authorization value, so the state directory's removal only unlinked
/// it: recovered from the disk, it lets the TPM's key sign for the device again. The value is
/// now destroyed first, and the missing TPM still reported.
#[tokio::test]
async fn a_retirement_without_the_tpm_still_destroys_the_authorization_value() {
    let tmp = tempfile::tempdir().unwrap();
    let auth = crate::tpm_key::auth_file(tmp.path());
    std::fs::write(&auth, b"secret authorization value").unwrap();
    let store = DeviceKeyStore::Tpm {
        tpm: None,
        handle: 0x8101_0001,
        state_dir: tmp.path().to_path_buf(),
    };
    let result = store.destroy().await;
    assert!(
        matches!(result, Err(SecretError::NoTpm { .. })),
        "{result:?}"
    );
    assert!(
        !auth.exists(),
        "the authorization value is left for the state directory's unlink"
    );
}
