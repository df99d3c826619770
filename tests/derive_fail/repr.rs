// Without `#[repr(C)]` the layout may differ between builds; `packed` misaligns atomics.
use shmstate::{Counter, Element, Shared, Value};

#[derive(Shared)]
struct NoRepr {
    hits: Counter,
}

#[derive(Shared)]
#[repr(C, packed)]
struct Packed {
    hits: Value<u64>,
}

#[derive(Clone, Copy, Element)]
struct NoReprElement {
    limit: u64,
}

fn main() {}
