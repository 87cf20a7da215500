//! Interop peers that tests need (SIPp, Kamailio, nginx, iptables, a CometD library …): a test
//! whose peer is missing is skipped with a `SKIPPED:` line, unless the environment variable that
//! requires the peer is set (CI sets one per peer), in which case the test fails instead.
//!
//! The line goes straight to the process's standard error rather than through `eprintln!`,
//! which the test harness captures and shows only for failing tests: a plain `cargo test` run
//! must show which interop tests did not run.

use std::io::Write;

/// Whether the peer `what` is here (`found`). When it is not: panics if `require_env` is set,
/// otherwise prints `SKIPPED: <what> is not available (<install>)` and returns false.
pub fn available(found: bool, what: &str, require_env: &str, install: &str) -> bool {
    if found {
        return true;
    }
    assert!(
        std::env::var_os(require_env).is_none(),
        "{what} is required ({require_env} is set) but not available ({install})"
    );
    let line = format!("SKIPPED: {what} is not available ({install})\n");
    // Best effort: a closed stderr must not fail the test that skips.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    false
}

/// Whether `program args…` runs and exits successfully (a cheap probe for an installed peer).
pub fn runs(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_present_peer_is_available_and_a_missing_one_is_skipped() {
        assert!(available(true, "sh", "DRLAB_TEST_NEVER_SET_1", "-"));
        assert!(!available(
            false,
            "a peer this unit test pretends is missing",
            "DRLAB_TEST_NEVER_SET_2",
            "-"
        ));
        assert!(runs("sh", &["-c", "exit 0"]));
        assert!(!runs("sh", &["-c", "exit 3"]));
        assert!(!runs("/nonexistent/program", &[]));
    }

    #[test]
    #[should_panic(expected = "is required (PATH is set)")]
    fn a_missing_peer_fails_where_it_is_required() {
        available(false, "nothing", "PATH", "-");
    }
}
