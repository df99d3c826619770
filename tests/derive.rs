//! `#[derive(Shared)]` and `#[derive(Element)]`: a user's struct of primitives lives in a
//! region as one named object shared by real processes; the derived identities record the
//! struct's name, size, alignment and every field's name, offset and type, exactly as the
//! hand-written `TypeTag::record` / `Elem::record` would; and structs that differ only in
//! their name or field names are told apart, by the tags and by a region. The compile-time
//! refusals are in `derive_fail/` (trybuild).

mod common;

use std::time::Duration;

use shmstate::sync::Ordering::Relaxed;
use shmstate::{
    Counter, Elem, Element, Field, GetError, Mutex, Region, SeqLock, Shared, SharedSized, TypeTag,
    Value,
};

#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable, Element)]
#[repr(C)]
struct Config {
    limit: u64,
    ratio: f64,
}

/// A service's statistics: fields of 64 + 64 + 8 + 24 + 24 = 184 bytes with no gap, then 8
/// bytes of tail padding up to its alignment (64, from `Counter`).
#[derive(Shared)]
#[repr(C)]
struct Stats {
    requests: Counter,
    errors: Counter,
    in_flight: Value<i64>,
    config: SeqLock<Config>,
    totals: Mutex<[u64; 2]>,
}

const PER_CHILD: u64 = 5_000;

/// Two forked processes update every field of one derived `Stats` in an anonymous region:
/// the counters and the mutex-protected totals are exact, and the seqlock-protected
/// `Config` is never read torn while the other process rewrites it.
#[test]
fn derived_struct_is_one_object_shared_by_forked_processes() {
    common::watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 16).unwrap();
    let stats = region
        .get_or_init("stats", |s: &Stats| {
            s.config.write(Config {
                limit: 0,
                ratio: 0.0,
            })
        })
        .unwrap();
    assert_eq!(stats.requests.get(), 0, "a new object starts zeroed");

    // The children inherit the anonymous region, and so `stats`, across `fork`.
    let pids = common::fork_children(2, |i| {
        for k in 1..=PER_CHILD {
            stats.requests.inc();
            stats.in_flight.fetch_add(1, Relaxed);
            if i == 0 {
                // The writer keeps `ratio == limit` in every value it publishes.
                stats.config.write(Config {
                    limit: k,
                    ratio: k as f64,
                });
            } else {
                let c = stats.config.read();
                assert_eq!(c.ratio, c.limit as f64, "torn read: {c:?}");
                stats.errors.inc();
            }
            let mut totals = stats.totals.lock().unwrap();
            totals[0] += 1;
            totals[1] += 2;
            drop(totals);
            stats.in_flight.fetch_sub(1, Relaxed);
        }
    });
    common::wait_all(&pids, Duration::from_secs(50));

    assert_eq!(stats.requests.get(), 2 * PER_CHILD);
    assert_eq!(stats.errors.get(), PER_CHILD);
    assert_eq!(stats.in_flight.load(Relaxed), 0);
    assert_eq!(
        *stats.totals.lock().unwrap(),
        [2 * PER_CHILD, 4 * PER_CHILD]
    );
    assert_eq!(
        stats.config.read(),
        Config {
            limit: PER_CHILD,
            ratio: PER_CHILD as f64
        }
    );
}

/// The derived tag is exactly the hand-written `TypeTag::record` of the struct's name,
/// size, alignment and fields (name without `r#`, `offset_of!`, the field type's tag).
#[test]
fn derived_tag_records_name_layout_and_every_field() {
    #[derive(Shared)]
    #[repr(C)]
    struct Jobs {
        done: Value<u64>,
        r#type: Value<u32>,
        pending: Value<u32>,
    }
    let expected = TypeTag::record(
        "Jobs",
        16,
        8,
        &[
            Field {
                name: "done",
                offset: 0,
                ty: <Value<u64> as Shared>::TAG,
            },
            Field {
                name: "type",
                offset: 8,
                ty: <Value<u32> as Shared>::TAG,
            },
            Field {
                name: "pending",
                offset: 12,
                ty: <Value<u32> as Shared>::TAG,
            },
        ],
    );
    assert_eq!(<Jobs as SharedSized>::TAG, expected);
    assert_eq!(<Jobs as Shared>::ALIGN, 8);
    assert_eq!(<Jobs as Shared>::size_for(1), Some(16));

    // A tuple struct's fields are named by their index.
    #[derive(Shared)]
    #[repr(C)]
    struct Pair(Counter, Counter);
    let expected = TypeTag::record(
        "Pair",
        128,
        64,
        &[
            Field {
                name: "0",
                offset: 0,
                ty: <Counter as Shared>::TAG,
            },
            Field {
                name: "1",
                offset: 64,
                ty: <Counter as Shared>::TAG,
            },
        ],
    );
    assert_eq!(<Pair as SharedSized>::TAG, expected);

    // Tail padding (after the last field, up to the alignment) is allowed and recorded in
    // the size.
    #[derive(Shared)]
    #[repr(C)]
    struct Tail {
        requests: Counter,
        config: SeqLock<Config>,
    }
    let expected = TypeTag::record(
        "Tail",
        128,
        64,
        &[
            Field {
                name: "requests",
                offset: 0,
                ty: <Counter as Shared>::TAG,
            },
            Field {
                name: "config",
                offset: 64,
                ty: <SeqLock<Config> as Shared>::TAG,
            },
        ],
    );
    assert_eq!(<Tail as SharedSized>::TAG, expected);
    assert_eq!(<Tail as Shared>::size_for(1), Some(128));
}

/// The derived element is exactly the hand-written `Elem::record`.
#[test]
fn derived_element_records_name_layout_and_every_field() {
    let expected = Elem::record(
        "Config",
        16,
        8,
        &[
            Field {
                name: "limit",
                offset: 0,
                ty: Elem::U64,
            },
            Field {
                name: "ratio",
                offset: 8,
                ty: Elem::F64,
            },
        ],
    );
    assert_eq!(Config::ELEM, expected);
    assert_eq!(Config::ELEM.code, Elem::RECORD_CODE);

    // Nested: a derived element and an array as fields.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Element)]
    #[repr(C)]
    struct Limits {
        config: Config,
        window: [u32; 2],
    }
    let expected = Elem::record(
        "Limits",
        24,
        8,
        &[
            Field {
                name: "config",
                offset: 0,
                ty: Config::ELEM,
            },
            Field {
                name: "window",
                offset: 16,
                ty: <[u32; 2]>::ELEM,
            },
        ],
    );
    assert_eq!(Limits::ELEM, expected);

    // A packed element (a wire format) records its packed offsets and alignment 1.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Element)]
    #[repr(C, packed)]
    struct Wire(u8, u32);
    let expected = Elem::record(
        "Wire",
        5,
        1,
        &[
            Field {
                name: "0",
                offset: 0,
                ty: Elem::U8,
            },
            Field {
                name: "1",
                offset: 1,
                ty: Elem::U32,
            },
        ],
    );
    assert_eq!(Wire::ELEM, expected);
}

mod same_layout {
    use super::*;

    /// `Stats`'s layout under another name.
    #[derive(Shared)]
    #[repr(C)]
    pub struct Metrics {
        pub requests: Counter,
        pub errors: Counter,
    }

    /// `Stats2`: the name and layout of `Metrics`, other field names.
    #[derive(Shared)]
    #[repr(C)]
    pub struct Stats2 {
        pub requests: Counter,
        pub failures: Counter,
    }

    /// `Stats2` again: same name, same fields.
    #[derive(Shared)]
    #[repr(C)]
    pub struct Same {
        pub requests: Counter,
        pub failures: Counter,
    }

    pub mod other {
        use super::*;

        /// Same name and fields as `super::Stats2`, in another module.
        #[derive(Shared)]
        #[repr(C)]
        pub struct Stats2 {
            pub requests: Counter,
            pub failures: Counter,
        }
    }

    /// `Config`'s layout, other field names.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Element)]
    #[repr(C)]
    pub struct Point {
        pub x: u64,
        pub y: f64,
    }

    /// `Config`'s layout and field names, under another name.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Element)]
    #[repr(C)]
    pub struct Settings {
        pub limit: u64,
        pub ratio: f64,
    }
}

/// Structs of one layout with other names or other field names have other tags; the
/// module path is not part of the identity (documented: the same name and fields mean the
/// same bytes).
#[test]
fn same_layout_with_other_names_has_other_tags() {
    use same_layout::*;
    const METRICS: TypeTag = <Metrics as SharedSized>::TAG;
    const STATS2: TypeTag = <Stats2 as SharedSized>::TAG;
    const SAME: TypeTag = <Same as SharedSized>::TAG;
    const OTHER_STATS2: TypeTag = <other::Stats2 as SharedSized>::TAG;
    assert_eq!(size_of::<Metrics>(), size_of::<Stats2>());
    assert_ne!(METRICS, STATS2, "other field names");
    assert_ne!(SAME, STATS2, "other struct name");
    assert_ne!(SAME, METRICS);
    assert_eq!(OTHER_STATS2, STATS2, "same name and fields, other module");

    const CONFIG: Elem = Config::ELEM;
    assert_ne!(CONFIG, Point::ELEM, "other field names");
    assert_ne!(CONFIG, Settings::ELEM, "other struct name");
    assert_eq!(Config::ELEM.size, Point::ELEM.size);
}

/// A region refuses to hand out an object as a struct of the same layout with another
/// name or other field names, whether the caller asks with `get` or `get_or_init`.
#[test]
fn region_refuses_a_derived_struct_as_another_of_the_same_layout() {
    use same_layout::*;
    let region = Region::anonymous(1 << 16).unwrap();
    let m = region.get_or_default::<Metrics>("stats").unwrap();
    m.requests.inc();

    let err = region.get::<Stats2>("stats").err().expect("refused");
    assert!(
        matches!(&err, GetError::TypeMismatch { name, .. } if name == "stats"),
        "{err}"
    );
    let err = region
        .get_or_init::<Same>("stats", |_| unreachable!())
        .err()
        .expect("refused");
    assert!(matches!(err, GetError::TypeMismatch { .. }), "{err}");
    assert_eq!(m.requests.get(), 1, "the refusals left the object alone");
}

/// A derived struct is found again by name: `get` and a second `get_or_init` (whose
/// `init` does not run again) return the object with its state.
#[test]
fn derived_struct_reopens_by_name() {
    use same_layout::*;
    let region = Region::anonymous(1 << 16).unwrap();
    let m = region.get_or_default::<Metrics>("stats").unwrap();
    m.requests.inc();
    assert_eq!(region.get::<Metrics>("stats").unwrap().requests.get(), 1);
    let again = region
        .get_or_init::<Metrics>("stats", |_| unreachable!())
        .unwrap();
    assert!(std::ptr::eq(m, again));
    assert!(matches!(
        region.get::<Stats2>("stats"),
        Err(GetError::TypeMismatch { .. })
    ));
}

/// Each refusal is a compile error that names the problem: a field that is not
/// `SharedSized`/`Element`, no `#[repr(C)]` or `#[repr(packed)]`, a gap between fields,
/// alignment above
/// 64, generic parameters, an enum, a union, a struct without fields
/// (`tests/derive_fail/*.rs`, with the expected errors in the `.stderr` files next to them;
/// regenerate with `TRYBUILD=overwrite` after a compiler upgrade changes their wording).
#[test]
#[cfg_attr(miri, ignore = "runs the compiler")]
fn derive_refuses_what_would_be_unsound_at_compile_time() {
    trybuild::TestCases::new().compile_fail("tests/derive_fail/*.rs");
}
