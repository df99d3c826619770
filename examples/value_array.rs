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
//! The parent creates an anonymous region (`MAP_SHARED` memory with no name anywhere)
//! holding a `Value<f64>` and a `SeqLockArray<i32>`, forks the child process (Python's
//! `fork` start method: the child shares the mapping), waits for it, and prints both.
//! Nothing is left behind however it ends: there is no file. Run it with
//! `cargo run --example value_array`; it prints
//!
//! ```text
//! 3.1415927
//! [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]
//! ```

use std::error::Error;

use rustix::process::{Pid, WaitOptions};
use shmstate::sync::Ordering;
use shmstate::{Region, SeqLockArray, Value};

/// `f(n, a)`: runs in the child process.
fn f(num: &Value<f64>, arr: &SeqLockArray<i32>) {
    // The Python program's literal, not `PI`: the output must match it digit for digit.
    #[allow(clippy::approx_constant)]
    num.store(3.1415927, Ordering::Relaxed);
    for i in 0..arr.len() {
        if let Err(torn) = arr.update(i, |x| *x = -*x) {
            // A writer died mid-write to this element: its value is garbage, and dropping
            // the guard leaves it marked torn rather than publishing a negated garbage.
            eprintln!("arr[{i}]: {torn}");
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let region = Region::anonymous(64 * 1024)?;
    let num = region.get_or_init("num", |n: &Value<f64>| n.store(0.0, Ordering::Relaxed))?;
    let arr = region.get_or_init_slice("arr", 10, |a: &SeqLockArray<i32>| {
        for i in 0..a.len() {
            a.set(i, i as i32);
        }
    })?;

    // `p = Process(target=f, args=(num, arr)); p.start()`
    // SAFETY: after `fork` in a multi-threaded process the child may only call
    // async-signal-safe functions; this program has a single thread, so the child may run
    // any code. The child never returns from this block (it ends with `_exit`).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    if pid == 0 {
        // AssertUnwindSafe: after a panic the child only exits, and the parent, seeing it
        // fail, does not read the objects.
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(num, arr))).is_ok();
        // SAFETY: `_exit` has no preconditions; it ends the child at once, without
        // running exit handlers or flushing the stdio buffers it shares with the parent.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }

    // `p.join()`
    let status = rustix::process::waitpid(Pid::from_raw(pid), WaitOptions::empty())?;
    match status {
        Some((_, s)) if s.exit_status() == Some(0) => {}
        other => return Err(format!("child failed: {other:?}").into()),
    }
    // Relaxed is enough for `num`: the child's exit is ordered before `waitpid` returns.
    println!("{}", num.load(Ordering::Relaxed));
    println!("{:?}", arr.to_vec());
    Ok(())
}
