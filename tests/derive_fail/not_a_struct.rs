use shmstate::{Element, Shared};

#[derive(Shared)]
#[repr(C)]
enum State {
    Idle,
    Busy,
}

#[derive(Clone, Copy, Element)]
#[repr(C)]
union Bits {
    int: u64,
    float: f64,
}

#[derive(Shared)]
#[repr(C)]
struct Empty;

fn main() {}
