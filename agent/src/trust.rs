//! The CAs the agent trusts for the controller's certificate (`STATE/ca.pem`), and the trust
//! bundle a CA rotation sends at check-in.
//!
//! Enrollment pins one CA by hash. When the controller's operator rotates the CA, every
//! check-in answer carries the new bundle (the new CA beside the current one) until the agent
//! reports trusting it; the controller signs with the new CA only once every active device
//! does, so no agent ever meets a certificate it cannot verify. Retiring the old CA sends a
//! bundle without it.
//!
//! A bundle came over a connection verified under a CA this agent trusts, from a controller
//! that authenticated this device. It is still checked before it replaces `ca.pem`: it must
//! keep at least one CA trusted now (so a faulty bundle cannot cut the agent off from the
//! controller that sent it), add at most one CA (a rotation introduces one), hold only CA
//! certificates valid today, and be small. A bundle that both adds a CA and leaves one out
//! is taken only for its addition: a CA is dropped only by a bundle that adds none (a
//! retirement). So whoever answers one check-in with a CA key still trusted (the key a
//! rotation may be replacing) cannot swap the new CA for theirs: the controller's next
//! answer removes theirs, and the new CA was never dropped.

use ward_certs::CaHash;

use crate::state::StateDir;

/// At most this many CAs in a bundle (a rotation has two).
pub const MAX_BUNDLE: usize = 8;

/// The hashes of `cas`, sorted, as the check-in reports them.
pub fn hashes(cas: &[Vec<u8>]) -> Vec<String> {
    let mut hashes: Vec<String> = cas
        .iter()
        .map(|c| CaHash::of_certificate(c).to_string())
        .collect();
    hashes.sort();
    hashes.dedup();
    hashes
}

/// Checks `bundle` against the CAs trusted now and, when it differs, writes it to `ca.pem`.
/// True when the trust changed (the caller reconnects under it).
pub fn accept_bundle(
    dir: &StateDir,
    current: &[Vec<u8>],
    bundle: &[Vec<u8>],
    now: time::OffsetDateTime,
) -> Result<bool, String> {
    if bundle.is_empty() || hashes(bundle) == hashes(current) {
        return Ok(false);
    }
    check_bundle(current, bundle, now)?;
    let (now_trusted, offered) = (hashes(current), hashes(bundle));
    let added: Vec<&Vec<u8>> = bundle
        .iter()
        .filter(|c| !now_trusted.contains(&CaHash::of_certificate(c).to_string()))
        .collect();
    if added.len() > 1 {
        return Err(format!(
            "the trust bundle adds {} CAs at once; a rotation adds one",
            added.len()
        ));
    }
    let removes = now_trusted.iter().any(|h| !offered.contains(h));
    // Both at once: the addition only, every CA trusted now kept.
    let taken: Vec<Vec<u8>> = if removes && !added.is_empty() {
        current.iter().chain(added).cloned().collect()
    } else {
        bundle.to_vec()
    };
    let pem: String = taken
        .iter()
        .map(|c| ward_certs::certificate_to_pem(c))
        .collect();
    ward_files::replace_file(&dir.ca(), pem.as_bytes(), 0o644)
        .map_err(|e| format!("cannot write {}: {e}", dir.ca().display()))?;
    Ok(true)
}

fn check_bundle(
    current: &[Vec<u8>],
    bundle: &[Vec<u8>],
    now: time::OffsetDateTime,
) -> Result<(), String> {
    if bundle.len() > MAX_BUNDLE {
        return Err(format!(
            "{} CAs in the trust bundle; at most {MAX_BUNDLE}",
            bundle.len()
        ));
    }
    let now_trusted = hashes(current);
    if !hashes(bundle).iter().any(|h| now_trusted.contains(h)) {
        return Err(
            "the trust bundle keeps none of the CAs trusted now; refused (it would cut this agent off)"
                .into(),
        );
    }
    for ca in bundle {
        let hash = CaHash::of_certificate(ca);
        if !ward_certs::validate::is_ca_certificate(ca) {
            return Err(format!(
                "{hash} in the trust bundle is not a CA certificate"
            ));
        }
        match ward_certs::live::Validity::of(ca) {
            Some(v) if v.not_before <= now + crate::AGENT_CLOCK_TOLERANCE && now < v.not_after => {}
            _ => return Err(format!("{hash} in the trust bundle is not valid today")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ward_certs::CertificateAuthority;

    use super::*;

    fn now() -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }

    fn ca() -> Vec<u8> {
        CertificateAuthority::create("t", now())
            .unwrap()
            .cert_der()
            .to_vec()
    }

    #[test]
    fn a_bundle_is_taken_only_when_it_keeps_a_trusted_ca_and_holds_only_valid_cas() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let (old, new, stranger) = (ca(), ca(), ca());
        let current = vec![old.clone()];
        // The same set again changes nothing.
        assert_eq!(
            accept_bundle(&state, &current, std::slice::from_ref(&old), now()),
            Ok(false)
        );
        assert!(!state.ca().exists());
        // A bundle without any CA trusted now is refused, nothing written.
        assert!(accept_bundle(&state, &current, std::slice::from_ref(&stranger), now()).is_err());
        assert!(!state.ca().exists());
        // A leaf certificate is no CA.
        let issuer = CertificateAuthority::create("t", now()).unwrap();
        let (leaf, _) = issuer
            .issue_server(
                &["x.example".into()],
                now(),
                ward_certs::ca::SERVER_LIFETIME,
            )
            .unwrap();
        assert!(accept_bundle(&state, &current, &[old.clone(), leaf.der], now()).is_err());
        // An expired CA is refused.
        let later = now() + time::Duration::days(11 * 365);
        assert!(accept_bundle(&state, &current, &[old.clone(), new.clone()], later).is_err());
        // A rotation's bundle is taken and written.
        assert_eq!(
            accept_bundle(&state, &current, &[new.clone(), old.clone()], now()),
            Ok(true)
        );
        let written = state.read_pem_certificates(&state.ca()).unwrap();
        assert_eq!(hashes(&written), hashes(&[old.clone(), new.clone()]));

        // Two new CAs at once are refused.
        let (a, b) = (ca(), ca());
        let both = vec![old.clone(), new.clone()];
        assert!(accept_bundle(&state, &both, &[old.clone(), a, b], now()).is_err());
        // The retirement drops the old CA (a bundle that adds nothing).
        assert_eq!(
            accept_bundle(&state, &both, std::slice::from_ref(&new), now()),
            Ok(true)
        );
        let after = vec![new.clone()];
        let written = state.read_pem_certificates(&state.ca()).unwrap();
        assert_eq!(hashes(&written), hashes(std::slice::from_ref(&new)));
        // The next rotation's CA is taken.
        assert_eq!(
            accept_bundle(&state, &after, &[new, stranger], now()),
            Ok(true)
        );
    }

    /// Review finding (agent trust bundle, M): whoever holds the key of a CA still trusted
    /// (the old CA a rotation is meant to retire, e.g. taken from a controller backup of
    /// `ca.key`) and answers one check-in can swap the real new CA for one of their own:
    /// the bundle keeps `old` (so "keeps a trusted CA" holds), adds one CA (theirs) and
    /// drops `new`, which the former `ca-dropped` list then refused for ever. Now the bundle is
    /// taken for its addition only, and the controller's next answer removes theirs.
    #[test]
    fn the_old_ca_holder_cannot_swap_the_new_ca_for_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let (old, new, theirs) = (ca(), ca(), ca());
        // The rotation introduced `new`: the agent trusts both.
        let both = vec![old.clone(), new.clone()];
        assert_eq!(
            accept_bundle(&state, std::slice::from_ref(&old), &both, now()),
            Ok(true)
        );
        // A check-in answered by whoever holds old's key (a server certificate it signed is
        // still trusted): `new` swapped for `theirs`.
        accept_bundle(&state, &both, &[old.clone(), theirs.clone()], now()).unwrap();
        let current = state.read_pem_certificates(&state.ca()).unwrap();
        assert!(
            hashes(&current).contains(&CaHash::of_certificate(&new).to_string()),
            "a bundle swapping the rotation's new CA for another dropped it"
        );
        // The real controller's next answer removes theirs (a bundle that adds nothing).
        assert_eq!(
            accept_bundle(&state, &current, &[new.clone(), old.clone()], now()),
            Ok(true)
        );
        let healed = state.read_pem_certificates(&state.ca()).unwrap();
        assert_eq!(hashes(&healed), hashes(&[new, old]));
    }
}
