//! The benchmark's smoke mode, run with the workspace tests so the tool cannot rot.
//!
//! It drives the `ration` binary built next to `ration-bench` (the workspace test run builds it for
//! the binary's own integration tests). Nothing about timing is asserted: only that setup works and
//! every token request succeeds.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn smoke_mode_runs_clean() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_ration-bench"));
    let server = bench.with_file_name("ration");
    if !server.exists() {
        // `cargo test -p ration-bench` alone does not build the server; the workspace run does.
        eprintln!("skipped: no server binary at {} (build it with `cargo build -p ration`)", server.display());
        return;
    }
    let output = Command::new(&bench)
        .args(["--smoke", "--markdown", "-", "--ration-bin"])
        .arg(&server)
        .output()
        .expect("cannot run ration-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ration-bench --smoke failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    for scenario in ["| es256 |", "| es256-quota |"] {
        assert!(stdout.contains(scenario), "no {scenario} row in the Markdown:\n{stdout}");
    }
}
