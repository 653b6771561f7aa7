//! The fuzz targets' corpora (`fuzz/corpus/<target>/`) replayed through the same check
//! functions the fuzzers call, so every input a fuzzer kept — and every crash it found, once
//! fixed — stays a regression test; plus the freshly generated seeds and mutations of them,
//! a small property test that runs with the ordinary suite.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

type Check = fn(&[u8]);
type Seeds = fn() -> Vec<(String, Vec<u8>)>;

/// Every fuzz target in `fuzz/fuzz_targets/`, with its check and its seed generator.
const TARGETS: &[(&str, Check, Seeds)] = &[
    (
        "certificate",
        ward_certs::fuzzing::certificate,
        ward_certs::fuzzing::certificate_seeds,
    ),
    (
        "csr",
        ward_certs::fuzzing::csr,
        ward_certs::fuzzing::csr_seeds,
    ),
    (
        "agent_message",
        ward_edge::fuzzing::agent_message,
        ward_edge::fuzzing::agent_message_seeds,
    ),
    (
        "audit_chain",
        ward_controller::fuzzing::audit_chain,
        ward_controller::fuzzing::audit_chain_seeds,
    ),
    (
        "controller_config",
        wardctl::fuzzing::controller_config,
        wardctl::fuzzing::controller_config_seeds,
    ),
    (
        "agent_config",
        ward_agent::fuzzing::agent_config,
        ward_agent::fuzzing::agent_config_seeds,
    ),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Runs `check` on each input and returns the names of those that failed.
fn failures(check: Check, inputs: impl IntoIterator<Item = (String, Vec<u8>)>) -> Vec<String> {
    inputs
        .into_iter()
        .filter(|(_, data)| catch_unwind(AssertUnwindSafe(|| check(data))).is_err())
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn every_corpus_file_passes_its_fuzz_check() {
    for (target, check, _) in TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} holds no corpus", dir.display());
        let inputs = files
            .iter()
            .map(|path| (path.display().to_string(), std::fs::read(path).unwrap()));
        let failed = failures(*check, inputs);
        assert!(
            failed.is_empty(),
            "{target}: these inputs fail: {failed:#?}"
        );
    }
}

#[test]
fn every_target_has_a_corpus_directory_and_nothing_else_does() {
    let mut dirs: Vec<String> = std::fs::read_dir(corpus_dir(""))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut targets: Vec<String> = TARGETS.iter().map(|(t, _, _)| (*t).to_owned()).collect();
    targets.sort();
    assert_eq!(dirs, targets);
}

#[test]
fn freshly_generated_seeds_pass_their_fuzz_checks() {
    for (target, check, seeds) in TARGETS {
        let seeds = seeds();
        assert!(!seeds.is_empty(), "{target} has no seeds");
        let failed = failures(*check, seeds);
        assert!(failed.is_empty(), "{target}: these seeds fail: {failed:#?}");
    }
}

/// A deterministic xorshift, so a failure here reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    #[allow(clippy::cast_possible_truncation)] // the remainder is below `n`, a usize
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Property: bit flips, byte overwrites, cuts and splices of valid inputs never break a
/// check's invariants.
#[test]
fn mutated_seeds_pass_their_fuzz_checks() {
    let mut rng = Rng(0x5eed_2026_0000_0001);
    for (target, check, seeds) in TARGETS {
        let seeds = seeds();
        let mut mutants = Vec::new();
        for (name, seed) in &seeds {
            for round in 0..48 {
                let mut data = seed.clone();
                for _ in 0..=rng.below(3) {
                    if data.is_empty() {
                        break;
                    }
                    let at = rng.below(data.len());
                    match rng.below(4) {
                        0 => data[at] ^= 1 << rng.below(8),
                        1 => data[at] = rng.next().to_le_bytes()[0],
                        2 => data.truncate(at),
                        _ => {
                            let (_, other) = &seeds[rng.below(seeds.len())];
                            data.splice(at.., other.iter().copied());
                        }
                    }
                }
                mutants.push((format!("{name} mutant {round}: {data:02x?}"), data));
            }
        }
        let failed = failures(*check, mutants);
        assert!(
            failed.is_empty(),
            "{target}: these mutants fail: {failed:#?}"
        );
    }
}

/// Writes the seeds into `fuzz/corpus/<target>/seed-<name>`. Run it when the seed generators
/// change, then minimize with `cargo fuzz cmin` (see `fuzz/README.md`).
#[test]
#[ignore = "writes into fuzz/corpus; run by hand when the seeds change"]
fn write_seed_corpus() {
    for (target, _, seeds) in TARGETS {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds() {
            // No PEM private-key block goes into the repository, even a placeholder one: the
            // admin-bundle seed is exercised from memory by the tests above.
            if data.windows(11).any(|w| w == b"PRIVATE KEY") {
                continue;
            }
            std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
        }
    }
}
