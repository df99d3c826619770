// Padding between fields (bytes of no field) and an alignment above the region's 64 bytes.
use shmstate::{Counter, Shared, Value};

#[derive(Shared)]
#[repr(C)]
struct Padded {
    small: Value<u32>,
    large: Value<u64>,
}

#[derive(Shared)]
#[repr(C, align(128))]
struct OverAligned {
    a: Counter,
    b: Counter,
}

fn main() {}
