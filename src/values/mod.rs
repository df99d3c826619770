//! Atomic values and counters: [`Value<T>`], one atomic primitive value with std's atomic
//! API; [`ValueArray<T>`], a fixed-length array of them; [`Counter`], a 64-bit event
//! counter on its own cache line; and [`StripedCounter`], a counter split over cache lines
//! for many writers; and [`Histogram`], Prometheus-style buckets, sum and count.
//!
//! Each is a single atomic instruction per update and a plain load per read, with no lock
//! anywhere, so no process can wedge another through them: a killed updater either made
//! its one atomic update or did not.

pub mod array;
pub mod counter;
pub mod histogram;
pub mod striped_counter;
pub mod value;

pub use array::ValueArray;
pub use counter::Counter;
pub use histogram::Histogram;
pub use striped_counter::StripedCounter;
pub use value::{Value, ValueType};
