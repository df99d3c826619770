use shmstate::{Element, Shared, Value};

#[derive(Shared)]
#[repr(C)]
struct Generic<T: shmstate::ValueType> {
    value: Value<T>,
}

#[derive(Clone, Copy, Element)]
#[repr(C)]
struct Pair<const N: usize> {
    items: [u64; N],
}

fn main() {}
