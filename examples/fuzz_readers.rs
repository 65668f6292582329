//! Long fuzz runs of the readers (the same harness as `tests/fuzz_readers.rs`):
//!
//! `cargo run --release --example fuzz_readers -- [--execs 1000000] [--seed 1] [--target idx]`
//!
//! prints per target the executions, accepted inputs, crashes (saved under
//! `fuzz/crashes/<target>/` to reproduce) and the slowest input. `--make-corpus DIR`
//! writes the seed corpus (committed in `fuzz/corpus/`).

#[path = "../tests/fuzz/mod.rs"]
mod fuzz;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(dir) = get("--make-corpus") {
        fuzz::make_corpus(std::path::Path::new(&dir));
        println!("seed corpus written to {dir}");
        return Ok(());
    }
    let execs: u64 = get("--execs").map_or(Ok(1_000_000), |v| v.parse())?;
    let seed: u64 = get("--seed").map_or(Ok(1), |v| v.parse())?;
    let targets: Vec<String> = match get("--target") {
        Some(t) => vec![t],
        None => fuzz::TARGETS.iter().map(|s| s.to_string()).collect(),
    };
    println!("| target | executions | accepted | crashes | slowest input | wall time |");
    println!("|---|---:|---:|---:|---|---:|");
    let mut crashed = false;
    for t in &targets {
        let t0 = std::time::Instant::now();
        let rep = fuzz::fuzz_target(t, execs, seed);
        for (i, (input, msg)) in rep.crashes.iter().enumerate() {
            let dir = std::path::Path::new("fuzz/crashes").join(t);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(format!("crash-{i}")), input)?;
            eprintln!("{t}: crash {i}: {msg}");
            crashed = true;
        }
        println!(
            "| {t} | {} | {} | {} | {:.2} ms ({} bytes) | {:.0} s |",
            rep.execs,
            rep.accepted,
            rep.crashes.len(),
            rep.slowest.0.as_secs_f64() * 1e3,
            rep.slowest.1,
            t0.elapsed().as_secs_f64()
        );
    }
    if crashed {
        anyhow::bail!("crashes found (inputs under fuzz/crashes/)");
    }
    Ok(())
}
