// A plain `u64` is not `SharedSized`: it is not an atomic, so two processes could race on it.
use shmstate::{Shared, Value};

#[derive(Shared)]
#[repr(C)]
struct Stats {
    hits: Value<u64>,
    misses: u64,
}

fn main() {}
