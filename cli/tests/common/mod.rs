//! What the CLI's test files share: running a program under a watchdog, killing
//! processes, temporary files and directories that remove themselves, and the check for
//! the outside tools some tests drive.
#![allow(dead_code)] // each test file uses its own part of this

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long one run of a program may take before the test kills it and fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `command` to completion, with `stdin` fed in (if any), SIGKILLing it (and failing)
/// if it runs over [`RUN_LIMIT`]: a hung program must fail the test, not hang CI.
pub fn run_command(mut command: Command, stdin: Option<&[u8]>) -> Output {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let pid = child.id();
    let (done, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let fired = done_rx.recv_timeout(RUN_LIMIT).is_err();
        if fired {
            kill(pid);
        }
        fired
    });
    let out = child.wait_with_output().expect("wait for the program");
    let _ = done.send(());
    assert!(!watchdog.join().unwrap(), "{what} ran over {RUN_LIMIT:?}");
    out
}

/// Runs `program ARGS` (see [`run_command`]).
pub fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(program);
    command.args(args);
    run_command(command, stdin)
}

/// `shmstate ARGS` (see [`run_command`]).
pub fn shmstate(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_shmstate"), args, None)
}

/// SIGKILLs `pid` (nothing if it is gone).
pub fn kill(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// A child process, killed and reaped on drop, so that a failing test leaves none behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A path in the temp directory unique to this process and thread, for `tag`.
fn temp_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "shmstate-cli-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ))
}

/// A fresh directory in the temp directory, removed with its contents on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = temp_path(tag);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// A path in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A region file's path in the temp directory (no file yet), removed on drop.
pub struct TempRegion(pub PathBuf);

impl TempRegion {
    pub fn new(tag: &str) -> TempRegion {
        let path = temp_path(tag);
        let _ = std::fs::remove_file(&path);
        TempRegion(path)
    }
}

impl Drop for TempRegion {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether `program` (from the Debian package `package`) is on the PATH, for a test that
/// drives it. When it is not, the test prints that it skips the part that needs it,
/// unless `SHMSTATE_REQUIRE_TOOLS=1`, which `.ci/run` sets once it has installed the
/// tools: then a missing tool fails the test instead, so that a skip cannot pass for a
/// pass.
#[track_caller]
pub fn tool(program: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", r#"command -v "$1""#, "sh", program])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("SHMSTATE_REQUIRE_TOOLS").is_none_or(|v| v != "1"),
            "{program} is not on the PATH, and SHMSTATE_REQUIRE_TOOLS=1 requires it \
             (install the Debian package `{package}`, or unset SHMSTATE_REQUIRE_TOOLS to skip)"
        );
        println!("skipped: {program} is not installed (Debian package `{package}`)");
    }
    found
}
