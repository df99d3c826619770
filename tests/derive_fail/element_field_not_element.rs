// `Raw` is `Pod` but has no recorded identity (`Element`).
use shmstate::Element;

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Raw(u64);

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Element)]
#[repr(C)]
struct Config {
    limit: u64,
    raw: Raw,
}

fn main() {}
