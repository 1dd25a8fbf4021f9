//! The soak test (issue 4): 50,000 spans/s for 20 s against an endpoint
//! answering 503 to 20% of requests and 429 `Retry-After: 1` to 5%, with
//! zero loss, no duplicate and bounded memory. It runs `examples/soak.rs`
//! built in release mode, takes about half a minute, and is ignored by
//! default; `.ci/run` runs it:
//!
//! ```sh
//! cargo test --release --test soak -- --ignored --nocapture
//! ```

use std::process::Command;

#[test]
#[ignore = "a 20-second load test; run in release mode by .ci/run"]
fn fifty_thousand_spans_a_second_through_503s_and_429s_lose_nothing() {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--example", "soak", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .status()
        .unwrap();
    assert!(status.success());
    // The release examples directory: `target/release/examples`, next to
    // this test binary's `target/<profile>/deps` (or the CARGO_TARGET_DIR).
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().unwrap().parent().unwrap().parent().unwrap();
    let soak = target
        .join("release")
        .join("examples")
        .join(format!("soak{}", std::env::consts::EXE_SUFFIX));
    let started = std::time::Instant::now();
    let out = Command::new(&soak).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the soak failed: {stdout}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("soak: produced"))
        .unwrap();
    assert!(summary.contains(" 0 duplicates, 0 lost"), "{summary}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
