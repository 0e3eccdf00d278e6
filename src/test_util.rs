//! Helpers for unit tests that check kubeboot against another
//! implementation (compiled only for tests).

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `script` with `python3 -c`, writes `input` to its standard input
/// and returns its output lines.
pub(crate) fn python_lines(script: &str, input: &str) -> Vec<String> {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 failed: {script}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}
