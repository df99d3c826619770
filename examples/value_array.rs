//! Python's first `multiprocessing` shared-memory program, in Rust:
//!
//! ```python
//! from multiprocessing import Process, Value, Array
//!
//! def f(n, a):
//!     n.value = 3.1415927
//!     for i in range(len(a)):
//!         a[i] = -a[i]
//!
//! if __name__ == '__main__':
//!     num = Value('d', 0.0)
//!     arr = Array('i', range(10))
//!     p = Process(target=f, args=(num, arr))
//!     p.start()
//!     p.join()
//!     print(num.value)
//!     print(arr[:])
//! ```
//!
//! The parent creates a region file holding a `Value<f64>` and a `SeqLockArray<i32>`,
//! starts this same program again as the child process, waits for it, and prints both.
//! Run it with `cargo run --example value_array`; it prints
//!
//! ```text
//! 3.1415927
//! [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]
//! ```

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

use shmstate::sync::Ordering;
use shmstate::{Region, SeqLockArray, Value};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, path] = args.as_slice()
        && role == "child"
    {
        return child(Path::new(path));
    }
    parent()
}

/// `f(n, a)`: runs in the child process.
fn child(path: &Path) -> Result<(), Box<dyn Error>> {
    let region = Region::open(path)?;
    let num: &Value<f64> = region.get("num")?;
    let arr: &SeqLockArray<i32> = region.get("arr")?;
    // The Python program's literal, not `PI`: the output must match it digit for digit.
    #[allow(clippy::approx_constant)]
    num.store(3.1415927, Ordering::Relaxed);
    for i in 0..arr.len() {
        arr.update(i, |x| *x = -*x);
    }
    Ok(())
}

fn parent() -> Result<(), Box<dyn Error>> {
    let path = temp_path();
    let _cleanup = RemoveOnDrop(path.clone());
    let region = Region::create(&path, 64 * 1024)?;
    let num = region.get_or_init::<Value<f64>>("num", 1, |n| n.store(0.0, Ordering::Relaxed))?;
    let arr = region.get_or_init::<SeqLockArray<i32>>("arr", 10, |a| {
        for i in 0..a.len() {
            a.set(i, i as i32);
        }
    })?;

    let status = Command::new(std::env::current_exe()?)
        .arg("child")
        .arg(&path)
        .status()?;
    if !status.success() {
        return Err(format!("child failed: {status}").into());
    }
    // Relaxed is enough for `num`: the child's exit is ordered before `status()` returns.
    println!("{}", num.load(Ordering::Relaxed));
    println!("{:?}", arr.to_vec());
    Ok(())
}

fn temp_path() -> PathBuf {
    std::env::temp_dir().join(format!("shmstate-value-array-{}", std::process::id()))
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
