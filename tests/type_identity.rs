//! A region tells element types apart by their identity ([`Element::ELEM`]), not by their
//! size and alignment: asking for an object with another element type of the same size is
//! a `TypeMismatch`, never a reinterpretation of its bytes; asking with the same type gets
//! the object.

use core::mem::offset_of;

use shmstate::{
    Elem, Element, Field, GetError, Mutex, Queue, ReentrantMutex, Region, RegionOptions, RwLock,
    SeqLock, SeqLockArray, Shared, Value,
};

/// Two user structs of the same size and alignment as each other (and as `[u32; 2]`),
/// told apart by their names, and two versions of one struct told apart by their fields.
/// Each implements `Element` by hand, as a user without the derive macro would.
mod user {
    use super::*;

    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    pub struct Point {
        pub x: u32,
        pub y: u32,
    }

    impl Element for Point {
        const ELEM: Elem = Elem::record(
            "Point",
            size_of::<Self>(),
            align_of::<Self>(),
            &[
                Field {
                    name: "x",
                    offset: offset_of!(Point, x),
                    ty: u32::ELEM,
                },
                Field {
                    name: "y",
                    offset: offset_of!(Point, y),
                    ty: u32::ELEM,
                },
            ],
        );
    }

    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    pub struct Range {
        pub x: u32,
        pub y: u32,
    }

    impl Element for Range {
        const ELEM: Elem = Elem::record(
            "Range",
            size_of::<Self>(),
            align_of::<Self>(),
            &[
                Field {
                    name: "x",
                    offset: offset_of!(Range, x),
                    ty: u32::ELEM,
                },
                Field {
                    name: "y",
                    offset: offset_of!(Range, y),
                    ty: u32::ELEM,
                },
            ],
        );
    }

    /// A later version of `Point`: same name, size and alignment; its fields are swapped.
    pub mod v2 {
        use super::*;

        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        #[repr(C)]
        pub struct Point {
            pub y: u32,
            pub x: u32,
        }

        impl Element for Point {
            const ELEM: Elem = Elem::record(
                "Point",
                size_of::<Self>(),
                align_of::<Self>(),
                &[
                    Field {
                        name: "y",
                        offset: offset_of!(Point, y),
                        ty: u32::ELEM,
                    },
                    Field {
                        name: "x",
                        offset: offset_of!(Point, x),
                        ty: u32::ELEM,
                    },
                ],
            );
        }
    }

    /// Another later version of `Point`: the same field names and offsets, signed.
    pub mod v3 {
        use super::*;

        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        #[repr(C)]
        pub struct Point {
            pub x: i32,
            pub y: i32,
        }

        impl Element for Point {
            const ELEM: Elem = Elem::record(
                "Point",
                size_of::<Self>(),
                align_of::<Self>(),
                &[
                    Field {
                        name: "x",
                        offset: offset_of!(Point, x),
                        ty: i32::ELEM,
                    },
                    Field {
                        name: "y",
                        offset: offset_of!(Point, y),
                        ty: i32::ELEM,
                    },
                ],
            );
        }
    }
}

/// One type as the region sees it: how to create an object of it, and how to open one.
struct Probe {
    ty: &'static str,
    create: fn(&Region, &str) -> Result<(), GetError>,
    open: fn(&Region, &str) -> Result<(), GetError>,
}

impl Probe {
    /// `T`, created with length `LEN` (1 for sized types).
    fn of<T: Shared + ?Sized, const LEN: usize>() -> Probe {
        Probe {
            ty: core::any::type_name::<T>(),
            create: |r, name| r.get_or_init_with_len::<T>(name, LEN, |_| {}).map(drop),
            open: |r, name| r.get::<T>(name).map(drop),
        }
    }
}

/// Groups of types that must be told apart from each other: every element type of a
/// group (its types have the same size in each holder, so only the identity can tell
/// them apart) in every primitive that holds one.
macro_rules! in_every_holder {
    ($($t:ty),+ $(,)?) => {
        [
            vec![$(Probe::of::<Mutex<$t>, 1>()),+],
            vec![$(Probe::of::<RwLock<$t>, 1>()),+],
            vec![$(Probe::of::<SeqLock<$t>, 1>()),+],
            vec![$(Probe::of::<SeqLockArray<$t>, 3>()),+],
            vec![$(Probe::of::<Queue<$t, 2>, 1>()),+],
        ]
    };
}

/// The groups of mutually distinct types.
fn distinct_groups() -> Vec<Vec<Probe>> {
    let mut groups: Vec<Vec<Probe>> = [
        in_every_holder!(i32, f32, u32),
        in_every_holder!(u64, i64, f64),
        in_every_holder!([u64; 2], [u32; 4], u128, i128),
        in_every_holder!([u8; 16], [u16; 8], [i8; 16]),
        in_every_holder!(
            [u32; 2],
            user::Point,
            user::Range,
            user::v2::Point,
            user::v3::Point
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    // A `ReentrantMutex` holds a shared type (it hands out `&T`): same-sized ones inside
    // are told apart by their own identity.
    groups.push(vec![
        Probe::of::<ReentrantMutex<Value<u32>>, 1>(),
        Probe::of::<ReentrantMutex<Value<i32>>, 1>(),
        Probe::of::<ReentrantMutex<Value<f32>>, 1>(),
    ]);
    groups.push(vec![
        Probe::of::<ReentrantMutex<Value<u64>>, 1>(),
        Probe::of::<ReentrantMutex<Value<i64>>, 1>(),
        Probe::of::<ReentrantMutex<Value<f64>>, 1>(),
    ]);
    groups.push(vec![
        Probe::of::<Value<u8>, 1>(),
        Probe::of::<Value<i8>, 1>(),
        Probe::of::<Value<bool>, 1>(),
    ]);
    groups.push(vec![
        Probe::of::<Value<u16>, 1>(),
        Probe::of::<Value<i16>, 1>(),
    ]);
    groups.push(vec![
        Probe::of::<Value<u32>, 1>(),
        Probe::of::<Value<i32>, 1>(),
        Probe::of::<Value<f32>, 1>(),
    ]);
    groups.push(vec![
        Probe::of::<Value<u64>, 1>(),
        Probe::of::<Value<i64>, 1>(),
        Probe::of::<Value<f64>, 1>(),
    ]);
    // The capacity of a queue is part of its identity: these four have the same size.
    groups.push(vec![
        Probe::of::<Queue<u8, 1>, 1>(),
        Probe::of::<Queue<u8, 2>, 1>(),
        Probe::of::<Queue<u8, 3>, 1>(),
        Probe::of::<Queue<u8, 4>, 1>(),
    ]);
    // A queue of N items is not a queue of one N-item array.
    groups.push(vec![
        Probe::of::<Queue<u32, 2>, 1>(),
        Probe::of::<Queue<[u32; 2], 1>, 1>(),
    ]);
    groups
}

// The queues above differ in capacity but not in size: the region's size check alone
// cannot tell them apart.
const _: () = assert!(size_of::<Queue<u8, 1>>() == size_of::<Queue<u8, 4>>());
const _: () = assert!(size_of::<Queue<u32, 2>>() == size_of::<Queue<[u32; 2], 1>>());

#[test]
fn every_type_opens_as_itself_and_as_no_other_type_of_its_size() {
    let groups = distinct_groups();
    let objects: usize = groups.iter().map(Vec::len).sum();
    let region = RegionOptions::new()
        .capacity(objects as u32)
        .anonymous(1 << 20)
        .unwrap();
    let mut checked = 0;
    for (g, group) in groups.iter().enumerate() {
        for (i, made) in group.iter().enumerate() {
            let name = format!("g{g}.{i}");
            (made.create)(&region, &name).unwrap();
            (made.open)(&region, &name)
                .unwrap_or_else(|e| panic!("{} does not open as itself: {e}", made.ty));
            (made.create)(&region, &name)
                .unwrap_or_else(|e| panic!("{} does not reopen as itself: {e}", made.ty));
            for (j, other) in group.iter().enumerate() {
                if i == j {
                    continue;
                }
                for (how, result) in [
                    ("get", (other.open)(&region, &name)),
                    ("get_or_init", (other.create)(&region, &name)),
                ] {
                    match result {
                        Err(GetError::TypeMismatch {
                            name: n,
                            recorded,
                            requested,
                            ..
                        }) => {
                            assert_eq!(n, name);
                            assert_ne!(
                                recorded, requested,
                                "{} as {}: the error must name two different types",
                                made.ty, other.ty
                            );
                        }
                        other_result => panic!(
                            "a {} opened with {how} as a {}: {other_result:?}",
                            made.ty, other.ty
                        ),
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 200, "only {checked} pairs checked");
}

/// An `i32` array read as `f32`s would hand out `[NaN, 3e-45]` for `[-1, 2]`.
#[test]
fn an_i32_seqlock_array_is_not_handed_out_as_f32() {
    let region = Region::anonymous(1 << 16).unwrap();
    let ints = region
        .get_or_init_slice("samples", 2, |a: &SeqLockArray<i32>| a.set_all(&[-1, 2]))
        .unwrap();
    assert_eq!(ints.to_vec(), [-1, 2]);
    match region.get::<SeqLockArray<f32>>("samples") {
        Err(GetError::TypeMismatch {
            name,
            recorded,
            recorded_len,
            requested,
            requested_len,
        }) => {
            assert_eq!(name, "samples");
            assert_eq!(recorded, <SeqLockArray<i32> as Shared>::TAG);
            assert_eq!(requested, <SeqLockArray<f32> as Shared>::TAG);
            assert_eq!((recorded_len, requested_len), (2, 2));
        }
        other => panic!(
            "an i32 array opened as f32: {:?}",
            other.map(|a| a.to_vec())
        ),
    }
    let again = region.get::<SeqLockArray<i32>>("samples").unwrap();
    assert_eq!(again.to_vec(), [-1, 2]);
}

/// A struct's object opens as the struct, with its fields as they were written, and not
/// as another struct of the same size.
#[test]
fn a_user_struct_opens_as_itself_with_its_fields() {
    let region = Region::anonymous(1 << 16).unwrap();
    region
        .get_or_init("origin", |m: &Mutex<user::Point>| {
            *m.lock().unwrap() = user::Point { x: 3, y: 4 };
        })
        .unwrap();
    let again = region.get::<Mutex<user::Point>>("origin").unwrap();
    let p = *again.lock().unwrap();
    assert_eq!((p.x, p.y), (3, 4));
    assert!(matches!(
        region.get::<Mutex<user::v2::Point>>("origin"),
        Err(GetError::TypeMismatch { .. })
    ));
}

/// `Value<T>` records the same element identity as every other holder of a `T`.
#[test]
fn value_types_record_the_element_identity() {
    use shmstate::ValueType;

    fn same<T: ValueType + Element>() -> Elem {
        let elem = <T as Element>::ELEM;
        assert_eq!(
            <T as ValueType>::VALUE_ELEM,
            elem,
            "{}",
            core::any::type_name::<T>()
        );
        elem
    }
    let elements = [
        same::<u8>(),
        same::<u16>(),
        same::<u32>(),
        same::<u64>(),
        same::<i8>(),
        same::<i16>(),
        same::<i32>(),
        same::<i64>(),
        same::<f32>(),
        same::<f64>(),
        <u128 as Element>::ELEM,
        <i128 as Element>::ELEM,
        <usize as Element>::ELEM,
        <isize as Element>::ELEM,
    ];
    // `bool` is not `Pod` (not every byte is a bool), so not an `Element`: its code is
    // its own.
    assert!(!elements.contains(&<bool as ValueType>::VALUE_ELEM));
}

/// Two shared structs (structs of primitives, with a [`TypeTag::record`] identity) of the
/// same size and layout, told apart by their names and field names; each opens as itself.
#[test]
fn shared_structs_of_the_same_layout_are_told_apart() {
    use shmstate::{Counter, Kind, SharedSized, TypeTag};

    #[repr(C)]
    struct Stats {
        requests: Counter,
        errors: Counter,
    }
    // SAFETY: two `Counter`s, each `SharedSized`: the struct inherits items 1-5 (all-zero
    // and every bit pattern valid, no pointers, `#[repr(C)]` without padding between
    // 64-byte fields, `Sync`).
    unsafe impl SharedSized for Stats {
        const TAG: TypeTag = TypeTag::record(
            "Stats",
            size_of::<Self>(),
            align_of::<Self>(),
            &[
                Field {
                    name: "requests",
                    offset: offset_of!(Stats, requests),
                    ty: <Counter as Shared>::TAG,
                },
                Field {
                    name: "errors",
                    offset: offset_of!(Stats, errors),
                    ty: <Counter as Shared>::TAG,
                },
            ],
        );
    }

    #[repr(C)]
    struct Limits {
        low: Counter,
        high: Counter,
    }
    // SAFETY: as for `Stats`.
    unsafe impl SharedSized for Limits {
        const TAG: TypeTag = TypeTag::record(
            "Limits",
            size_of::<Self>(),
            align_of::<Self>(),
            &[
                Field {
                    name: "low",
                    offset: offset_of!(Limits, low),
                    ty: <Counter as Shared>::TAG,
                },
                Field {
                    name: "high",
                    offset: offset_of!(Limits, high),
                    ty: <Counter as Shared>::TAG,
                },
            ],
        );
    }

    assert_eq!(<Stats as Shared>::TAG.kind, Kind::RECORD);
    let region = Region::anonymous(1 << 16).unwrap();
    let stats = region
        .get_or_init("stats", |s: &Stats| {
            s.requests.add(5);
        })
        .unwrap();
    stats.errors.inc();
    let again = region.get::<Stats>("stats").unwrap();
    assert_eq!((again.requests.get(), again.errors.get()), (5, 1));
    assert!(matches!(
        region.get::<Limits>("stats"),
        Err(GetError::TypeMismatch { .. })
    ));
    region.get_or_default::<Limits>("limits").unwrap();
    assert!(matches!(
        region.get::<Stats>("limits"),
        Err(GetError::TypeMismatch { .. })
    ));
}
