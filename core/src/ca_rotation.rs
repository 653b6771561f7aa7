//! CA rotation's rules: which of the CAs a controller holds signs, which are trusted, and
//! which step may come next.
//!
//! A rotation goes through three steps, each recorded in the store so that every replica
//! follows it:
//!
//! 1. **introduce**: a new CA is made. Agents are given it to trust at their next check-in,
//!    beside the current one; nothing is signed with it yet.
//! 2. **activate**: once every active device trusts it, the new CA signs (server certificate,
//!    device and admin certificates, audit heads); the former CA is still trusted, so the
//!    certificates it issued keep working until they are renewed under the new one.
//! 3. **retire**: once nothing valid was issued by the former CA, it is trusted no more (agents
//!    drop it at their next check-in). Its certificate stays, to verify what it signed.
//!
//! Before activation, **cancel** retires the introduced CA instead (agents drop it; nothing
//! was signed with it), and a new rotation may start.
//!
//! Only hashes are recorded: the CAs themselves stay in each replica's data directory, so a
//! record names a CA but cannot make one trusted.

use super::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CaState {
    /// Given to agents to trust; nothing signed with it yet.
    Introduced,
    /// The CA that signs.
    Active,
    /// The former CA: trusted until retired.
    Trusted,
    /// Trusted no more; kept to verify old signatures.
    Retired,
}

ward_vocab::names!(CaState, "CA state" {
    Introduced => "introduced",
    Active => "active",
    Trusted => "trusted",
    Retired => "retired",
});

/// A CA's state as a rotation step recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaRecord {
    /// `sha256:<hex>` of the CA certificate.
    pub hash: String,
    pub state: CaState,
    pub changed_at: Timestamp,
}

/// A step of `wardctl ca rotate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationStep {
    Status,
    Introduce,
    Activate,
    Retire,
    Cancel,
}

ward_vocab::names!(RotationStep, "CA rotation step" {
    Status => "status",
    Introduce => "introduce",
    Activate => "activate",
    Retire => "retire",
    Cancel => "cancel",
});

/// Where a controller's CAs stand: each CA it holds with its state, and the CAs a step
/// named that it does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    /// Held CAs that count (by hash), in the order: active, introduced, trusted, retired.
    pub cas: Vec<(String, CaState)>,
    /// CAs recorded as introduced, active or trusted that this controller does not hold
    /// (their files were not copied to this replica's data directory).
    pub missing: Vec<String>,
}

impl Standing {
    /// The states of the CAs held (`held`, by hash; `original` is the one `init` made, in
    /// `ca.pem`) under the recorded steps. The original CA has no record until a rotation
    /// activates another: it is active while no record says another is, then the former
    /// (trusted) one. A held CA that no step named counts for nothing.
    pub fn of(original: &str, held: &[String], records: &[CaRecord]) -> Self {
        let another_active = records
            .iter()
            .any(|r| r.state == CaState::Active && r.hash != original);
        let state_of = |hash: &str| -> Option<CaState> {
            match records.iter().find(|r| r.hash == hash) {
                Some(record) => Some(record.state),
                None if hash == original => Some(if another_active {
                    CaState::Trusted
                } else {
                    CaState::Active
                }),
                None => None,
            }
        };
        let mut cas: Vec<(String, CaState)> = held
            .iter()
            .filter_map(|h| state_of(h).map(|s| (h.clone(), s)))
            .collect();
        cas.sort_by_key(|(_, state)| match state {
            CaState::Active => 0,
            CaState::Introduced => 1,
            CaState::Trusted => 2,
            CaState::Retired => 3,
        });
        let missing = records
            .iter()
            .filter(|r| r.state != CaState::Retired && !held.contains(&r.hash))
            .map(|r| r.hash.clone())
            .collect();
        Self { cas, missing }
    }

    /// The CA that signs, if this controller holds it.
    pub fn active(&self) -> Option<&str> {
        self.first(CaState::Active)
    }

    pub fn introduced(&self) -> Option<&str> {
        self.first(CaState::Introduced)
    }

    /// The former CA, trusted until retired.
    pub fn former(&self) -> Option<&str> {
        self.first(CaState::Trusted)
    }

    /// The CAs to trust (for client certificates, and in agents' trust bundles): every one
    /// held that is not retired, the active one first.
    pub fn trusted(&self) -> Vec<&str> {
        self.cas
            .iter()
            .filter(|(_, s)| *s != CaState::Retired)
            .map(|(h, _)| h.as_str())
            .collect()
    }

    fn first(&self, state: CaState) -> Option<&str> {
        self.cas
            .iter()
            .find(|(_, s)| *s == state)
            .map(|(h, _)| h.as_str())
    }

    /// Whether a step may run now, and what it records (hash, new state).
    pub fn plan(&self, step: RotationStep) -> Result<Vec<(String, CaState)>, String> {
        if let Some(missing) = self.missing.first() {
            return Err(format!(
                "this controller does not hold the CA {missing} that a rotation step named: copy its files (ca-*.pem and ca-*.key) from the replica that introduced it into this replica's data directory, then try again"
            ));
        }
        let active = self
            .active()
            .ok_or("no CA is active on this controller")?
            .to_owned();
        match step {
            RotationStep::Status => Ok(Vec::new()),
            RotationStep::Introduce => {
                if let Some(new) = self.introduced() {
                    return Err(format!(
                        "the CA {new} was already introduced: run `wardctl ca rotate activate` when every device trusts it"
                    ));
                }
                if let Some(former) = self.former() {
                    return Err(format!(
                        "the former CA {former} is still trusted: finish the last rotation with `wardctl ca rotate retire` first"
                    ));
                }
                Ok(Vec::new())
            }
            RotationStep::Activate => {
                let new = self
                    .introduced()
                    .ok_or("no CA was introduced: start with `wardctl ca rotate introduce`")?;
                Ok(vec![
                    (new.to_owned(), CaState::Active),
                    (active, CaState::Trusted),
                ])
            }
            RotationStep::Retire => {
                let former = self.former().ok_or(
                    "no former CA to retire: a rotation retires the old CA after `wardctl ca rotate activate`",
                )?;
                Ok(vec![(former.to_owned(), CaState::Retired)])
            }
            RotationStep::Cancel => {
                let new = self.introduced().ok_or(
                    "no introduced CA to cancel: after `activate` the rotation is finished with `retire`",
                )?;
                Ok(vec![(new.to_owned(), CaState::Retired)])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(hash: &str, state: CaState) -> CaRecord {
        CaRecord {
            hash: hash.into(),
            state,
            changed_at: Timestamp::from_unix_ms(0),
        }
    }

    fn held(hashes: &[&str]) -> Vec<String> {
        hashes.iter().map(|h| (*h).to_owned()).collect()
    }

    #[test]
    fn a_rotation_goes_introduce_activate_retire_and_back_to_one_ca() {
        let old = "sha256:old";
        let new = "sha256:new";
        let before = Standing::of(old, &held(&[old]), &[]);
        assert_eq!(before.active(), Some(old));
        assert_eq!(before.trusted(), [old]);
        assert_eq!(before.plan(RotationStep::Introduce), Ok(vec![]));
        assert!(before.plan(RotationStep::Activate).is_err());
        assert!(before.plan(RotationStep::Retire).is_err());

        // A new CA in the data directory that no step named counts for nothing.
        let unnamed = Standing::of(old, &held(&[old, new]), &[]);
        assert_eq!(unnamed.trusted(), [old]);

        let introduced = Standing::of(old, &held(&[old, new]), &[record(new, CaState::Introduced)]);
        assert_eq!(introduced.active(), Some(old));
        assert_eq!(introduced.trusted(), [old, new]);
        assert!(introduced.plan(RotationStep::Introduce).is_err());
        assert_eq!(
            introduced.plan(RotationStep::Activate),
            Ok(vec![
                (new.to_owned(), CaState::Active),
                (old.to_owned(), CaState::Trusted)
            ])
        );

        // Activated: the original CA has a record now, but without one it would be the former.
        let active = Standing::of(old, &held(&[old, new]), &[record(new, CaState::Active)]);
        assert_eq!(active.active(), Some(new));
        assert_eq!(active.former(), Some(old));
        assert_eq!(active.trusted(), [new, old]);
        assert!(active.plan(RotationStep::Introduce).is_err());
        assert_eq!(
            active.plan(RotationStep::Retire),
            Ok(vec![(old.to_owned(), CaState::Retired)])
        );

        assert!(active.plan(RotationStep::Cancel).is_err());

        let retired = Standing::of(
            old,
            &held(&[old, new]),
            &[record(new, CaState::Active), record(old, CaState::Retired)],
        );
        assert_eq!(retired.trusted(), [new]);
        assert_eq!(retired.plan(RotationStep::Introduce), Ok(vec![]));
    }

    #[test]
    fn an_introduced_ca_can_be_cancelled_before_activation_and_another_introduced() {
        let (old, new) = ("sha256:old", "sha256:new");
        assert!(
            Standing::of(old, &held(&[old]), &[])
                .plan(RotationStep::Cancel)
                .is_err()
        );
        let introduced = Standing::of(old, &held(&[old, new]), &[record(new, CaState::Introduced)]);
        assert_eq!(
            introduced.plan(RotationStep::Cancel),
            Ok(vec![(new.to_owned(), CaState::Retired)])
        );
        let cancelled = Standing::of(old, &held(&[old, new]), &[record(new, CaState::Retired)]);
        assert_eq!(cancelled.active(), Some(old));
        assert_eq!(cancelled.trusted(), [old]);
        assert_eq!(cancelled.plan(RotationStep::Introduce), Ok(vec![]));
    }

    #[test]
    fn a_replica_without_a_named_ca_refuses_every_step() {
        let standing = Standing::of(
            "sha256:old",
            &held(&["sha256:old"]),
            &[record("sha256:new", CaState::Introduced)],
        );
        assert_eq!(standing.missing, ["sha256:new"]);
        // It still signs and trusts what it holds.
        assert_eq!(standing.active(), Some("sha256:old"));
        assert!(standing.plan(RotationStep::Status).is_err());
    }
}
