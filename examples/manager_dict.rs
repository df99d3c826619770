//! Python's `Manager` example (a shared dict and a shared list), in Rust:
//!
//! ```python
//! from multiprocessing import Process, Manager
//!
//! def f(d, l):
//!     d[1] = '1'
//!     d['2'] = 2
//!     d[0.25] = None
//!     l.reverse()
//!
//! if __name__ == '__main__':
//!     with Manager() as manager:
//!         d = manager.dict()
//!         l = manager.list(range(10))
//!         p = Process(target=f, args=(d, l))
//!         p.start()
//!         p.join()
//!         print(d)
//!         print(l)
//! ```
//!
//! Python keeps the dict and the list in a server process and reaches them through proxies
//! (a socket round trip and pickling per access). Here both live in an anonymous region
//! (`MAP_SHARED` memory, no file, no server): the dict is a [`ByteMap`], the list a
//! [`SeqLockArray<i64>`]. The dict's keys and values have mixed Python types, so they are
//! stored as the text of their Python `repr` (`1`, `'2'`, `0.25`; `'1'`, `2`, `None`); a
//! program with one key type and one value type would use a typed `Map<K, V>` instead. The
//! child reverses the list in one batch write (all its stripe locks held, as the Manager
//! server holds the list while it reverses it), so no reader sees it half reversed.
//!
//! One difference in the output: a Python dict keeps insertion order, a hash map does not,
//! so the example prints the entries sorted by key. Run it with
//! `cargo run --example manager_dict`; it prints
//!
//! ```text
//! {'2': 2, 0.25: None, 1: '1'}
//! [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
//! ```

use std::error::Error;

use rustix::process::{Pid, WaitOptions};
use shmstate::{ByteMap, MapOptions, Region, SeqLockArray};

/// `f(d, l)`: runs in the child process.
fn f(d: &ByteMap, l: &SeqLockArray<i64>) -> Result<(), Box<dyn Error>> {
    d.insert(b"1", b"'1'")?;
    d.insert(b"'2'", b"2")?;
    d.insert(b"0.25", b"None")?;
    if l.write_batch(|v| v.reverse()).is_err() {
        // A writer died mid-write to the list: its values cannot be trusted.
        return Err("the list was torn by a writer that died".into());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    // `with Manager() as manager: d = manager.dict(); l = manager.list(range(10))`
    let region = Region::anonymous(1 << 20)?;
    let d = region.map("d", MapOptions::new(16).key_max(16).value_max(16))?;
    let l = region.get_or_init_slice("l", 10, |l: &SeqLockArray<i64>| {
        for i in 0..l.len() {
            l.set(i, i as i64);
        }
    })?;

    // `p = Process(target=f, args=(d, l)); p.start()`
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
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(d, l)));
        let ok = match ok {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                eprintln!("f: {e}");
                false
            }
            Err(_) => false,
        };
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

    // `print(d)`: a consistent copy of every entry, sorted by key (see the module docs).
    let mut entries = d.snapshot();
    entries.sort();
    let items: Vec<String> = entries
        .iter()
        .map(|(k, v)| {
            format!(
                "{}: {}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            )
        })
        .collect();
    println!("{{{}}}", items.join(", "));
    // `print(l)`
    println!("{:?}", l.to_vec());
    Ok(())
}
