//! `shmstate rm` and `shmstate gc`, run as users run them, on regions that real processes
//! have open (this test process) or had open (a process that has exited, whose word a
//! killed process would have left in the region's attach table).

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};

use shmstate::region::ReadOnlyRegion;
use shmstate::{Counter, RegionOptions};

use common::{TempDir, run_command};

const CAPACITY: u32 = 4;
/// The attach table's offset with 4 directory entries (`src/region/format.rs`).
const TABLE: u64 = 128 + CAPACITY as u64 * 128;

/// Runs `shmstate ARGS`, SIGKILLing it (and failing) if it runs over 60 s.
fn shmstate(args: &[&str]) -> Output {
    shmstate_as(None, args)
}

/// [`shmstate`], as user `uid` if given; fails on a panic message.
fn shmstate_as(uid: Option<u32>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shmstate"));
    command.args(args);
    if let Some(uid) = uid {
        std::os::unix::process::CommandExt::uid(&mut command, uid);
        std::os::unix::process::CommandExt::gid(&mut command, uid);
    }
    let out = run_command(command, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    out
}

fn text(out: &Output) -> (i32, String, String) {
    (
        out.status.code().expect("exited"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The pid of a process that has exited and been reaped: what a killed process leaves
/// in an attach table.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("run true");
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Leaves a region at `path` as a process killed with it open would: this process's
/// handle is leaked (never detached), and its word in the table is replaced by the word
/// of a dead process (start time 0: the pid alone is probed).
fn region_of_a_killed_process(path: &Path, options: RegionOptions) {
    let r = options.capacity(CAPACITY).create(path, 1 << 16).unwrap();
    r.get_or_default::<Counter>("hits").unwrap().add(1);
    std::mem::forget(r);
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let word = u64::from(dead_pid()) << 32;
    f.write_all_at(&word.to_ne_bytes(), TABLE).unwrap();
    let view = ReadOnlyRegion::open(path).unwrap();
    let listed = view.attached();
    assert!(
        listed.len() == 1 && !listed[0].alive,
        "one dead process: {listed:?}"
    );
}

#[test]
fn rm_refuses_a_region_a_live_process_has_open_unless_forced() {
    let dir = TempDir::new("rm-live");
    let path = dir.0.join("r");
    let p = path.to_str().unwrap();
    let region = RegionOptions::new().create(&path, 1 << 16).unwrap();
    let (code, _, stderr) = text(&shmstate(&["rm", p]));
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains(&format!("process {}", std::process::id())),
        "{stderr}"
    );
    assert!(path.exists());
    // `rm` did not attach: still only this process, with one handle.
    let listed = region.attached();
    assert_eq!((listed.len(), listed[0].handles), (1, 1));
    let (code, _, stderr) = text(&shmstate(&["rm", "--force", p]));
    assert_eq!(code, 0, "{stderr}");
    assert!(!path.exists());
    // The live process keeps its mapping.
    region.get_or_default::<Counter>("after").unwrap().add(1);
}

#[test]
fn rm_removes_a_region_whose_processes_are_all_dead() {
    let dir = TempDir::new("rm-dead");
    let path = dir.0.join("r");
    let p = path.to_str().unwrap();
    region_of_a_killed_process(&path, RegionOptions::new());
    let (code, _, stderr) = text(&shmstate(&["rm", p]));
    assert_eq!(code, 0, "{stderr}");
    assert!(!path.exists());
    // Missing file: a usage error; not a region: a runtime error, file untouched.
    assert_eq!(text(&shmstate(&["rm", p])).0, 2);
    std::fs::write(&path, b"not a region").unwrap();
    assert_eq!(text(&shmstate(&["rm", p])).0, 1);
    assert!(path.exists());
}

#[test]
fn gc_removes_only_regions_without_live_processes() {
    let dir = TempDir::new("gc");
    let d = dir.0.to_str().unwrap();
    let removing = || RegionOptions::new().remove_when_unused(true);
    // Garbage: its last process was killed.
    let dead = dir.0.join("dead");
    region_of_a_killed_process(&dead, removing());
    // In use by this process.
    let live = dir.0.join("live");
    let live_region = removing().create(&live, 1 << 16).unwrap();
    // Persistent state nobody has open: kept unless --all.
    let kept = dir.0.join("persistent");
    region_of_a_killed_process(&kept, RegionOptions::new());
    // Not a region.
    let other = dir.0.join("notes.txt");
    std::fs::write(&other, b"hello").unwrap();

    let (code, stdout, stderr) = text(&shmstate(&["gc", "--dry-run", d]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("would remove {}\n", dead.display()));
    assert!(dead.exists(), "--dry-run removes nothing");

    let (code, stdout, stderr) = text(&shmstate(&["gc", d]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("removed {}\n", dead.display()));
    assert!(!dead.exists());
    assert!(live.exists() && kept.exists() && other.exists());

    let (code, stdout, _) = text(&shmstate(&["gc", "--all", d]));
    assert_eq!(code, 0);
    assert_eq!(stdout, format!("removed {}\n", kept.display()));
    assert!(live.exists() && !kept.exists() && other.exists());
    // The live region is untouched and still this process's alone.
    assert_eq!(live_region.attached().len(), 1);
    drop(live_region);
    assert!(!live.exists(), "its own last handle removed it");
    assert_eq!(text(&shmstate(&["gc", "/nonexistent/shmstate-gc"])).0, 2);
}

#[test]
fn rm_and_gc_report_a_refused_unlink_and_leave_the_region_usable() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root, to run shmstate as another user");
        return;
    }
    let dir = TempDir::new("rm-refused");
    // As /dev/shm: anyone may create files, only their owner may remove them.
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let path = dir.0.join("r");
    let p = path.to_str().unwrap();
    // Nobody has it open (no handle of this process may be left: `shmstate_as` forks,
    // and a fork child inherits this process's handles).
    drop(
        RegionOptions::new()
            .mode(0o666)
            .create(&path, 1 << 16)
            .unwrap(),
    );
    let nobody = Some(65534);
    let (code, _, stderr) = text(&shmstate_as(nobody, &["rm", p]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot unlink"), "{stderr}");
    assert!(path.exists());
    assert!(!ReadOnlyRegion::open(&path).unwrap().is_retired());
    let (code, stdout, stderr) = text(&shmstate_as(
        nobody,
        &["gc", "--all", dir.0.to_str().unwrap()],
    ));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("cannot unlink"), "{stderr}");
    assert!(!ReadOnlyRegion::open(&path).unwrap().is_retired());
    // Its owner removes it.
    let (code, _, stderr) = text(&shmstate(&["rm", p]));
    assert_eq!(code, 0, "{stderr}");
    assert!(!path.exists());
}

#[test]
fn rm_object_removes_an_object_no_live_process_uses() {
    let dir = TempDir::new("rm-object");
    let path = dir.0.join("r");
    let p = path.to_str().unwrap();
    let region = RegionOptions::new().create(&path, 1 << 16).unwrap();
    region.get_or_default::<Counter>("used").unwrap().add(1);
    drop(region);
    // This process's handle asked for it: refused, naming this process.
    let region = RegionOptions::new().open(&path).unwrap();
    region.get::<Counter>("used").unwrap();
    let (code, _, stderr) = text(&shmstate(&["rm", "--object", "used", p]));
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains(&std::process::id().to_string()), "{stderr}");
    drop(region);
    // Nobody uses it now: removed, the file stays, the name is free again.
    let (code, _, stderr) = text(&shmstate(&["rm", "--object", "used", p]));
    assert_eq!(code, 0, "{stderr}");
    assert!(path.exists());
    let region = RegionOptions::new().open(&path).unwrap();
    assert!(region.get::<Counter>("used").is_err());
    assert_eq!(region.get_or_default::<Counter>("used").unwrap().get(), 0);
    drop(region);
    // A name that is not there is a usage error; --force does not go with --object.
    assert_eq!(text(&shmstate(&["rm", "--object", "nope", p])).0, 2);
    assert_eq!(
        text(&shmstate(&["rm", "--force", "--object", "used", p])).0,
        2
    );
}
