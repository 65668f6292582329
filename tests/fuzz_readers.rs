//! A bounded, deterministic fuzz run of every reader (see `tests/fuzz/mod.rs`): the
//! seed corpus is accepted, and a fixed number of mutated inputs per target never
//! makes a reader panic. Long runs: `cargo run --release --example fuzz_readers`.

mod fuzz;

/// Mutated inputs per target in the test suite (seconds in all).
const EXECS: u64 = 400;

#[test]
fn every_seed_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    for target in fuzz::TARGETS {
        for (i, seed) in fuzz::load_corpus(target).iter().enumerate() {
            assert_eq!(
                fuzz::run_one(target, seed, dir.path()),
                Ok(true),
                "{target}: seed {i} refused"
            );
        }
    }
}

#[test]
fn mutated_inputs_never_make_a_reader_panic() {
    for target in fuzz::TARGETS {
        let rep = fuzz::fuzz_target(target, EXECS, 20261207);
        assert!(rep.execs > EXECS, "{target}");
        let shown: Vec<String> = rep
            .crashes
            .iter()
            .take(3)
            .map(|(input, msg)| format!("{} bytes: {msg}", input.len()))
            .collect();
        assert!(rep.crashes.is_empty(), "{target}: {shown:?}");
        // the mutations must not all be trivially refused
        assert!(rep.accepted < rep.execs, "{target}: nothing refused");
    }
}
