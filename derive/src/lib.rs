//! Derive macros for [shmstate](https://docs.rs/shmstate): your own structs in shared memory,
//! without `unsafe`.
//!
//! - [`#[derive(Shared)]`](macro@Shared): a `#[repr(C)]` struct of shmstate primitives
//!   (`Counter`, `Value<T>`, `SeqLock<T>`, `Mutex<T>`, …, or other derived structs) that a
//!   region places as one named object. It implements `shmstate::SharedSized`, the
//!   `unsafe` placement contract, after checking at compile time everything that makes
//!   the implementation sound.
//! - [`#[derive(Element)]`](macro@Element): a `#[repr(C)]` plain-old-data struct that a
//!   `SeqLock`, `Mutex`, `RwLock`, … holds. It implements `shmstate::Element`, the
//!   identity a region records for the data an object holds.
//!
//! Both record the struct's name, size, alignment and every field's name, offset and
//! type identity, so a region refuses to hand out an object as a struct of another name
//! or layout (`GetError::TypeMismatch`) instead of reinterpreting its bytes.
//!
//! Use them through shmstate's re-exports (its default feature `derive`): the generated
//! code names `::shmstate::…` paths.
//!
//! ```
//! use shmstate::{Counter, Element, Region, SeqLock, Shared};
//!
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Element)]
//! #[repr(C)]
//! struct Config {
//!     limit: u64,
//!     ratio: f64,
//! }
//!
//! #[derive(Shared)]
//! #[repr(C)]
//! struct Stats {
//!     requests: Counter,
//!     errors: Counter,
//!     config: SeqLock<Config>,
//! }
//!
//! let region = Region::anonymous(1 << 16)?;
//! let stats = region.get_or_init("stats", |s: &Stats| {
//!     s.config.write(Config { limit: 100, ratio: 0.5 })
//! })?;
//! stats.requests.inc();
//! assert_eq!(stats.config.read().limit, 100);
//! # Ok::<(), shmstate::RegionError>(())
//! ```

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, LitStr, Member, Type, parse_macro_input};

/// The alignment of objects in a region: a `Shared` type may not ask for more.
const REGION_OBJECT_ALIGN: usize = 64;

/// Implements `shmstate::SharedSized` (and so `shmstate::Shared`) for a `#[repr(C)]`
/// struct whose fields are all `SharedSized`: a region can then place it as one named
/// object, shared by every process that maps the region.
///
/// ```
/// use shmstate::sync::Ordering;
/// use shmstate::{Counter, Mutex, Region, Shared, Value};
///
/// #[derive(Shared)]
/// #[repr(C)]
/// struct Stats {
///     requests: Counter,
///     errors: Counter,
///     in_flight: Value<i64>,
///     totals: Mutex<[u64; 2]>,
/// }
///
/// let region = Region::anonymous(1 << 16)?;
/// let stats = region.get_or_default::<Stats>("stats")?;
/// stats.requests.inc();
/// stats.in_flight.fetch_add(1, Ordering::Relaxed);
/// stats.totals.lock().unwrap()[0] += 1;
/// assert_eq!(stats.totals.lock().unwrap()[0], 1);
/// # Ok::<(), shmstate::RegionError>(())
/// ```
///
/// # What it records
///
/// `SharedSized::TAG` is `TypeTag::record(name, size, alignment, fields)`: the struct's
/// name (without its module path), `size_of`, `align_of`, and for every field its name,
/// its `offset_of!` and its own `TAG`. Structs that differ in any of these have different
/// tags, and a region refuses to hand out an object as one of another tag.
///
/// # What it checks
///
/// The placement contract (`shmstate::Shared`, items 1 to 5) holds for a struct when it
/// holds for every field and the struct adds nothing of its own: no bytes between fields,
/// a fixed layout, alignment the region can give. The derive checks each of these; a
/// struct that fails one does not compile:
///
/// - **Every field is `SharedSized`** (a primitive such as `Counter`, `Value<u32>`,
///   `SeqLock<T>`, `Mutex<T>`, or another derived struct), so all-zero bytes are a valid
///   field, every bit pattern is, and no field holds a pointer. The error points at the
///   field's type: "the trait bound `…: SharedSized` is not satisfied".
/// - **`#[repr(C)]`**, so the layout is the same in every build that maps the region
///   (`align(N)` may be added). Not `packed`: atomics must be aligned.
/// - **No padding between fields**: each field starts where the one before it ends (put
///   fields of larger alignment first: a `Counter` is a 64-byte line aligned to 64).
///   Padding after the last field, up to the struct's alignment, is allowed: it belongs
///   to no field and is never read or written through the struct.
/// - **Alignment at most 64 bytes**, the alignment of objects in a region, and every
///   field at an offset aligned for its type.
/// - **A plain struct**: named fields or a tuple struct (whose fields are named `0`, `1`,
///   … in the tag), at least one field, no generic parameters; not an enum or a union.
/// - `Sync` follows from the fields (`SharedSized: Sync` is checked by the compiler).
#[proc_macro_derive(Shared)]
pub fn derive_shared(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input, Kind::Shared)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `shmstate::Element` for a `#[repr(C)]` plain-old-data struct whose fields
/// are all `Element`s: it can then be the data of a `SeqLock`, `SeqLockArray`, `Mutex`,
/// `RwLock`, `ReentrantMutex` or `Queue`, and the region records which struct it is.
///
/// `Element` requires `bytemuck::Pod`: derive it too (`bytemuck::Pod` and
/// `bytemuck::Zeroable`, with `Clone` and `Copy`); bytemuck's derive checks that the
/// struct has no padding, so every bit pattern is a valid value.
///
/// ```
/// use shmstate::{Element, Elem};
///
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Element)]
/// #[repr(C)]
/// struct Config {
///     limit: u64,
///     ratio: f64,
/// }
///
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Element)]
/// #[repr(C)]
/// struct Point {
///     x: u64,
///     y: f64,
/// }
///
/// // Same layout, other names: other identities.
/// assert_eq!(Config::ELEM.size, 16);
/// assert_eq!(Config::ELEM.code, Elem::RECORD_CODE);
/// assert_ne!(Config::ELEM, Point::ELEM);
/// ```
///
/// # What it records
///
/// `Element::ELEM` is `Elem::record(name, size, alignment, fields)`: the struct's name
/// (without its module path), `size_of`, `align_of`, and for every field its name, its
/// `offset_of!` and its own `ELEM`.
///
/// # What it checks
///
/// - **Every field is an `Element`** (an integer, a float, an array of `Element`s, or
///   another derived struct). The error points at the field's type: "the trait bound
///   `…: Element` is not satisfied".
/// - **`#[repr(C)]`** (`packed` and `align(N)` may be added), so the layout is the same in
///   every build that maps the region.
/// - **A plain struct**: named fields or a tuple struct (fields named `0`, `1`, …), at
///   least one field, no generic parameters; not an enum or a union.
/// - No padding and `Copy`: through the `bytemuck::Pod` bound of `Element`.
#[proc_macro_derive(Element)]
pub fn derive_element(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input, Kind::Element)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Which derive is running.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Shared,
    Element,
}

impl Kind {
    fn derive(self) -> &'static str {
        match self {
            Kind::Shared => "#[derive(Shared)]",
            Kind::Element => "#[derive(Element)]",
        }
    }
}

/// One field of the struct.
struct FieldInfo {
    /// The name recorded in the tag: the identifier without `r#`, or the tuple index.
    name: String,
    /// How `offset_of!` names it.
    member: Member,
    ty: Type,
}

fn expand(input: &DeriveInput, kind: Kind) -> syn::Result<TokenStream2> {
    let derive = kind.derive();
    let fields = struct_fields(input, kind)?;
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(
            input.generics.span(),
            format!(
                "{derive} does not support generic parameters (lifetimes, types or consts): a \
                 region records one fixed identity per type; write a struct with concrete \
                 field types"
            ),
        ));
    }
    check_repr(input, kind)?;
    Ok(match kind {
        Kind::Shared => expand_shared(&input.ident, &fields),
        Kind::Element => expand_element(&input.ident, &fields),
    })
}

/// The fields of a struct with at least one field; an error for anything else.
fn struct_fields(input: &DeriveInput, kind: Kind) -> syn::Result<Vec<FieldInfo>> {
    let derive = kind.derive();
    let data = match &input.data {
        Data::Struct(data) => data,
        Data::Enum(e) => {
            let why = match kind {
                Kind::Shared => {
                    "a peer may write any bytes into shared memory, and most bytes are not a \
                     valid discriminant"
                }
                Kind::Element => {
                    "an enum is not plain old data: most bytes are not a valid discriminant"
                }
            };
            return Err(syn::Error::new(
                e.enum_token.span,
                format!("{derive} supports structs only, not enums: {why}"),
            ));
        }
        Data::Union(u) => {
            return Err(syn::Error::new(
                u.union_token.span,
                format!(
                    "{derive} supports structs only, not unions: a union's fields overlap, so \
                     it has no one identity to record"
                ),
            ));
        }
    };
    let fields: Vec<FieldInfo> = match &data.fields {
        Fields::Named(named) => named
            .named
            .iter()
            .map(|f| {
                let ident = f.ident.clone().expect("named field");
                FieldInfo {
                    name: ident.unraw().to_string(),
                    member: Member::Named(ident),
                    ty: f.ty.clone(),
                }
            })
            .collect(),
        Fields::Unnamed(unnamed) => unnamed
            .unnamed
            .iter()
            .enumerate()
            .map(|(i, f)| FieldInfo {
                name: i.to_string(),
                member: Member::Unnamed(syn::Index {
                    index: i as u32,
                    span: f.ty.span(),
                }),
                ty: f.ty.clone(),
            })
            .collect(),
        Fields::Unit => Vec::new(),
    };
    if fields.is_empty() {
        return Err(syn::Error::new(
            input.ident.span(),
            format!("{derive} needs a struct with at least one field"),
        ));
    }
    Ok(fields)
}

/// Requires `#[repr(C)]`; refuses `packed` for a shared struct (its atomics would be
/// misaligned). `align(N)` is accepted: a shared struct's alignment and field layout are
/// checked by const assertions, an element's padding by bytemuck.
fn check_repr(input: &DeriveInput, kind: Kind) -> syn::Result<()> {
    let derive = kind.derive();
    let mut c = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("repr")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("C") {
                c = true;
            } else if meta.path.is_ident("packed") {
                if kind == Kind::Shared {
                    return Err(meta.error(format!(
                        "{derive} refuses #[repr(packed)]: a shared struct's fields are atomics, \
                         which must be aligned"
                    )));
                }
                if meta.input.peek(syn::token::Paren) {
                    let content;
                    syn::parenthesized!(content in meta.input);
                    content.parse::<syn::LitInt>()?;
                }
            } else if meta.path.is_ident("align") {
                let content;
                syn::parenthesized!(content in meta.input);
                content.parse::<syn::LitInt>()?;
            }
            // Anything else (`transparent`, `Rust`, integer reprs) leaves `c` false, or is
            // refused by the compiler itself for a struct.
            Ok(())
        })?;
    }
    if !c {
        return Err(syn::Error::new(
            input.ident.span(),
            format!(
                "{derive} needs #[repr(C)] on the struct: without it the compiler chooses the \
                 field order and offsets, which may differ between the builds of the processes \
                 that share it"
            ),
        ));
    }
    Ok(())
}

/// A string literal for a type or field name, spanned at `span`.
fn lit(s: &str, span: Span) -> LitStr {
    LitStr::new(s, span)
}

fn expand_shared(ident: &Ident, fields: &[FieldInfo]) -> TokenStream2 {
    let name = lit(&ident.unraw().to_string(), ident.span());

    // (c) No padding between fields: each field starts where the one before it ends. (Tail
    // padding, after the last field up to the struct's alignment, is allowed: see the
    // SAFETY comment below.)
    let gaps = fields.iter().enumerate().map(|(i, f)| {
        let member = &f.member;
        let start = match i.checked_sub(1).map(|p| &fields[p]) {
            None => quote! { 0 },
            Some(prev) => {
                let (prev_member, prev_ty) = (&prev.member, &prev.ty);
                quote! {
                    ::core::mem::offset_of!(#ident, #prev_member)
                        + ::core::mem::size_of::<#prev_ty>()
                }
            }
        };
        let msg = format!(
            "#[derive(Shared)]: `{ident}` has padding before field `{}`, bytes that belong to \
             no field: put fields of larger alignment first",
            f.name
        );
        quote_spanned! {member.span()=>
            ::core::assert!(::core::mem::offset_of!(#ident, #member) == #start, #msg);
        }
    });
    // (e) The region aligns objects to 64 bytes.
    let align_msg = format!(
        "#[derive(Shared)]: `{ident}` is aligned to more than {REGION_OBJECT_ALIGN} bytes, the \
         alignment of objects in a region"
    );
    // Every field aligned for its type wherever the struct is (`#[repr(C)]` without
    // `packed` gives this; checked rather than assumed).
    let field_aligns = fields.iter().map(|f| {
        let ty = &f.ty;
        let member = &f.member;
        let msg = format!(
            "#[derive(Shared)]: field `{}` of `{ident}` is not aligned for its type",
            f.name
        );
        quote_spanned! {ty.span()=>
            ::core::assert!(
                ::core::primitive::usize::is_multiple_of(
                    ::core::mem::offset_of!(#ident, #member),
                    ::core::mem::align_of::<#ty>(),
                ) && ::core::primitive::usize::is_multiple_of(
                    ::core::mem::align_of::<#ident>(),
                    ::core::mem::align_of::<#ty>(),
                ),
                #msg
            );
        }
    });

    // (a) Every field is `SharedSized`: its tag is read through a function bounded by
    // `SharedSized`, called at the field's type's span, so a wrong field is named in the
    // error ("required by a bound in `field_must_be_shared_sized`").
    let tag_fields = fields.iter().map(|f| {
        let ty = &f.ty;
        let member = &f.member;
        let field_name = lit(&f.name, ty.span());
        let tag = quote_spanned! {ty.span()=> field_must_be_shared_sized::<#ty>() };
        quote! {
            ::shmstate::Field {
                name: #field_name,
                offset: ::core::mem::offset_of!(#ident, #member),
                ty: #tag,
            }
        }
    });

    // The layout assertions are spanned on the struct's name: a failure points at it.
    let layout_checks = quote_spanned! {ident.span()=>
        const _: () = {
            #(#gaps)*
            ::core::assert!(
                ::core::mem::align_of::<#ident>() <= #REGION_OBJECT_ALIGN,
                #align_msg
            );
            #(#field_aligns)*
        };
    };

    // SAFETY (of the generated `unsafe impl`): `SharedSized` items 1 to 5 hold for the
    // struct because they hold for each field and the struct adds nothing but tail padding:
    // 1. all-zero bytes are valid: every field is `SharedSized` (the bound on
    //    `field_must_be_shared_sized`), so zero bytes are each field's initial state; the
    //    fields are contiguous (asserted), so the struct's bytes are its fields' bytes and
    //    the tail padding after the last one;
    // 2. every bit pattern is valid: each field accepts any bytes, and padding bytes are
    //    not part of a value's validity (they are never read or written through a `&Self`:
    //    a shared object is only reached by reference to its fields; the crate's own
    //    `Mutex<u8>` has such padding too);
    // 3. no pointers or handles: the fields have none and the struct adds nothing; a
    //    `Drop` the user might add is never relied on (the region never drops objects);
    // 4. fixed layout: `#[repr(C)]` without `packed` (required above), fields contiguous
    //    and aligned, alignment ≤ 64 (all asserted); size, alignment and every field's
    //    name, offset and tag are recorded in `TAG`, which the region checks on every open;
    // 5. `Sync`: the supertrait bound `SharedSized: Sync` makes the compiler check it (it
    //    follows from the fields, which are all `Sync`); safe code can do nothing with a
    //    `&Self` but call the fields' methods, each safe to call concurrently by their
    //    own contract.
    quote! {
        #layout_checks

        #[automatically_derived]
        unsafe impl ::shmstate::SharedSized for #ident {
            const TAG: ::shmstate::TypeTag = {
                const fn field_must_be_shared_sized<T: ::shmstate::SharedSized>()
                    -> ::shmstate::TypeTag
                {
                    <T as ::shmstate::SharedSized>::TAG
                }
                ::shmstate::TypeTag::record(
                    #name,
                    ::core::mem::size_of::<#ident>(),
                    ::core::mem::align_of::<#ident>(),
                    &[#(#tag_fields),*],
                )
            };
        }
    }
}

fn expand_element(ident: &Ident, fields: &[FieldInfo]) -> TokenStream2 {
    let name = lit(&ident.unraw().to_string(), ident.span());
    // Every field is an `Element`: as for `Shared`, read through a bounded function called
    // at the field's type's span.
    let elem_fields = fields.iter().map(|f| {
        let ty = &f.ty;
        let member = &f.member;
        let field_name = lit(&f.name, ty.span());
        let elem = quote_spanned! {ty.span()=> field_must_be_element::<#ty>() };
        quote! {
            ::shmstate::Field {
                name: #field_name,
                offset: ::core::mem::offset_of!(#ident, #member),
                ty: #elem,
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl ::shmstate::Element for #ident {
            const ELEM: ::shmstate::Elem = {
                const fn field_must_be_element<T: ::shmstate::Element>() -> ::shmstate::Elem {
                    <T as ::shmstate::Element>::ELEM
                }
                ::shmstate::Elem::record(
                    #name,
                    ::core::mem::size_of::<#ident>(),
                    ::core::mem::align_of::<#ident>(),
                    &[#(#elem_fields),*],
                )
            };
        }
    }
}
