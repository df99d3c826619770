//! The examples keep working: each is built by `cargo test`/`cargo nextest` (examples are
//! compiled with the tests) and run here as a user would run it.

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/examples/<name>`, next to this test binary's `deps/` directory.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example {name} not built at {} (run the tests with cargo test or cargo nextest)",
        path.display()
    );
    path
}

#[test]
fn value_array_example_prints_what_the_python_program_prints() {
    let out = Command::new(example("value_array")).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "3.1415927\n[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]\n"
    );
}
