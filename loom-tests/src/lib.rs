//! loom model checks for shmstate. The tests live in `tests/`; run them with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 \
//!   cargo test --release -p loom-tests
//! ```
//!
//! Without `--cfg loom` the test files compile to nothing.

/// Runs the `#[ignore]`d test `name` of the current test binary in a child process and
/// asserts that it fails with a message containing `expected`.
///
/// A loom model that is *supposed* to fail cannot be a `#[should_panic]` test: after
/// loom reports a deadlock, dropping the blocked model threads panics again and aborts
/// the process. Running the model in a child turns that abort into an assertion.
pub fn expect_model_failure(name: &str, expected: &str) {
    let exe = std::env::current_exe().expect("test binary path");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the failing model");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "model `{name}` was expected to fail but passed"
    );
    assert!(
        stderr.contains(expected),
        "model `{name}` failed without `{expected}`:\n{stderr}"
    );
}
