//! multiprocessing's typecodes (those of the `array` module) and the value types they
//! name, and the macros that dispatch over them.

/// `(typecode, Rust type, C type name)` for every supported typecode: the element types
/// of a `Value` or `Array`. `l`/`L` are 64-bit, as C's `long` on 64-bit Linux.
pub(crate) const TYPECODES: &str = "bBhHiIlLqQfd?";

/// Builds one variant of enum `$e` for `$code`, binding type alias `$t` to the typecode's
/// type in `$mk`; a bad typecode returns a `ValueError` from the enclosing function.
macro_rules! open_by_code {
    ($e:ident, $code:expr, $t:ident => $mk:expr) => {
        match $code {
            'b' => {
                type $t = i8;
                $e::I8($mk)
            }
            'B' => {
                type $t = u8;
                $e::U8($mk)
            }
            'h' => {
                type $t = i16;
                $e::I16($mk)
            }
            'H' => {
                type $t = u16;
                $e::U16($mk)
            }
            'i' => {
                type $t = i32;
                $e::I32($mk)
            }
            'I' => {
                type $t = u32;
                $e::U32($mk)
            }
            'l' | 'q' => {
                type $t = i64;
                $e::I64($mk)
            }
            'L' | 'Q' => {
                type $t = u64;
                $e::U64($mk)
            }
            'f' => {
                type $t = f32;
                $e::F32($mk)
            }
            'd' => {
                type $t = f64;
                $e::F64($mk)
            }
            '?' => {
                type $t = bool;
                $e::Bool($mk)
            }
            c => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "unsupported typecode {c:?}: one of {}",
                    crate::typecode::TYPECODES
                )))
            }
        }
    };
}

/// Runs `$body` with `$c` bound to the variant's payload and `$t` to its element type.
macro_rules! dispatch {
    ($e:ident, $cell:expr, $c:ident, $t:ident => $body:expr) => {
        match $cell {
            $e::I8($c) => {
                #[allow(dead_code)]
                type $t = i8;
                $body
            }
            $e::U8($c) => {
                #[allow(dead_code)]
                type $t = u8;
                $body
            }
            $e::I16($c) => {
                #[allow(dead_code)]
                type $t = i16;
                $body
            }
            $e::U16($c) => {
                #[allow(dead_code)]
                type $t = u16;
                $body
            }
            $e::I32($c) => {
                #[allow(dead_code)]
                type $t = i32;
                $body
            }
            $e::U32($c) => {
                #[allow(dead_code)]
                type $t = u32;
                $body
            }
            $e::I64($c) => {
                #[allow(dead_code)]
                type $t = i64;
                $body
            }
            $e::U64($c) => {
                #[allow(dead_code)]
                type $t = u64;
                $body
            }
            $e::F32($c) => {
                #[allow(dead_code)]
                type $t = f32;
                $body
            }
            $e::F64($c) => {
                #[allow(dead_code)]
                type $t = f64;
                $body
            }
            $e::Bool($c) => {
                #[allow(dead_code)]
                type $t = bool;
                $body
            }
        }
    };
}

/// As `dispatch!` for the numeric types; a `bool` element raises `TypeError`.
macro_rules! dispatch_num {
    ($e:ident, $cell:expr, $c:ident, $t:ident => $body:expr) => {
        match $cell {
            $e::I8($c) => {
                #[allow(dead_code)]
                type $t = i8;
                $body
            }
            $e::U8($c) => {
                #[allow(dead_code)]
                type $t = u8;
                $body
            }
            $e::I16($c) => {
                #[allow(dead_code)]
                type $t = i16;
                $body
            }
            $e::U16($c) => {
                #[allow(dead_code)]
                type $t = u16;
                $body
            }
            $e::I32($c) => {
                #[allow(dead_code)]
                type $t = i32;
                $body
            }
            $e::U32($c) => {
                #[allow(dead_code)]
                type $t = u32;
                $body
            }
            $e::I64($c) => {
                #[allow(dead_code)]
                type $t = i64;
                $body
            }
            $e::U64($c) => {
                #[allow(dead_code)]
                type $t = u64;
                $body
            }
            $e::F32($c) => {
                #[allow(dead_code)]
                type $t = f32;
                $body
            }
            $e::F64($c) => {
                #[allow(dead_code)]
                type $t = f64;
                $body
            }
            $e::Bool(_) => {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "arithmetic on a bool ('?') value",
                ))
            }
        }
    };
}

/// `enum $e { I8(Obj<$w<i8>>), ... }` over every typecode's type.
macro_rules! cell_enum {
    ($e:ident, $w:ident) => {
        pub(crate) enum $e {
            I8(Obj<$w<i8>>),
            U8(Obj<$w<u8>>),
            I16(Obj<$w<i16>>),
            U16(Obj<$w<u16>>),
            I32(Obj<$w<i32>>),
            U32(Obj<$w<u32>>),
            I64(Obj<$w<i64>>),
            U64(Obj<$w<u64>>),
            F32(Obj<$w<f32>>),
            F64(Obj<$w<f64>>),
            Bool(Obj<$w<bool>>),
        }

        impl Clone for $e {
            fn clone(&self) -> Self {
                match self {
                    $e::I8(c) => $e::I8(c.clone()),
                    $e::U8(c) => $e::U8(c.clone()),
                    $e::I16(c) => $e::I16(c.clone()),
                    $e::U16(c) => $e::U16(c.clone()),
                    $e::I32(c) => $e::I32(c.clone()),
                    $e::U32(c) => $e::U32(c.clone()),
                    $e::I64(c) => $e::I64(c.clone()),
                    $e::U64(c) => $e::U64(c.clone()),
                    $e::F32(c) => $e::F32(c.clone()),
                    $e::F64(c) => $e::F64(c.clone()),
                    $e::Bool(c) => $e::Bool(c.clone()),
                }
            }
        }
    };
}

pub(crate) use {cell_enum, dispatch, dispatch_num, open_by_code};
