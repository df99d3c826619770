//! multiprocessing's typecodes (those of the `array` module, and ctypes' `c`/`u`), the
//! value types they name, how each converts to and from Python ([`Codec`]), and the
//! macros that dispatch over them.

use pyo3::IntoPyObjectExt;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};

/// Every supported typecode: the element types of a `Value` or `Array`. `l`/`L` are
/// 64-bit, as C's `long` on 64-bit Linux; `c` is one byte (ctypes' `c_char`), `u` one
/// wide character (ctypes' `c_wchar`: a 32-bit code point on Linux).
pub(crate) const TYPECODES: &str = "bBhHiIlLqQfd?cu";

/// How the elements of a typecode's type `T` convert to and from Python objects.
pub(crate) trait Codec<T> {
    /// One element as a Python object.
    fn to_py(py: Python<'_>, x: T) -> PyResult<PyObject>;
    /// One element from a Python object (`TypeError`/`OverflowError` if it is not one).
    fn from_py(o: &Bound<'_, PyAny>) -> PyResult<T>;
    /// Several elements (a slice): a `list` of numbers; `bytes` for `c`, `str` for `u`.
    fn seq_to_py(py: Python<'_>, xs: Vec<T>) -> PyResult<PyObject>;
    /// The elements of an iterable (an initializer, a slice assignment).
    fn seq_from_py(o: &Bound<'_, PyAny>) -> PyResult<Vec<T>> {
        o.try_iter()?.map(|x| Self::from_py(&x?)).collect()
    }
}

/// The numbers and `bool`: PyO3's conversions (`OverflowError` out of range).
pub(crate) struct Num;

impl<T> Codec<T> for Num
where
    T: for<'py> IntoPyObject<'py> + for<'py> FromPyObject<'py>,
{
    #[inline]
    fn to_py(py: Python<'_>, x: T) -> PyResult<PyObject> {
        x.into_py_any(py)
    }
    #[inline]
    fn from_py(o: &Bound<'_, PyAny>) -> PyResult<T> {
        o.extract()
    }
    fn seq_to_py(py: Python<'_>, xs: Vec<T>) -> PyResult<PyObject> {
        pyo3::types::PyList::new(py, xs)?.into_py_any(py)
    }
    fn seq_from_py(o: &Bound<'_, PyAny>) -> PyResult<Vec<T>> {
        // A str is not a sequence of numbers (PyO3 refuses it, where iterating would
        // report its first character).
        o.extract()
    }
}

/// `c`: one byte, a `bytes` of length 1 in Python (ctypes' `c_char`), set from a
/// `bytes` or `bytearray` of length 1 or an int in 0..=255.
pub(crate) struct Char;

/// ctypes' message for anything else.
const CHAR_EXPECTED: &str = "one character bytes, bytearray or integer expected";

impl Codec<u8> for Char {
    fn to_py(py: Python<'_>, x: u8) -> PyResult<PyObject> {
        PyBytes::new(py, &[x]).into_py_any(py)
    }
    fn from_py(o: &Bound<'_, PyAny>) -> PyResult<u8> {
        let one = |b: &[u8]| match b {
            &[x] => Ok(x),
            _ => Err(PyTypeError::new_err(CHAR_EXPECTED)),
        };
        if let Ok(b) = o.downcast::<PyBytes>() {
            return one(b.as_bytes());
        }
        if let Ok(b) = o.downcast::<PyByteArray>() {
            return one(&b.to_vec());
        }
        if o.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(CHAR_EXPECTED));
        }
        // An int: ctypes refuses one outside 0..=255 with the same TypeError.
        o.extract::<u8>()
            .map_err(|_| PyTypeError::new_err(CHAR_EXPECTED))
    }
    fn seq_to_py(py: Python<'_>, xs: Vec<u8>) -> PyResult<PyObject> {
        PyBytes::new(py, &xs).into_py_any(py)
    }
}

/// `u`: one wide character, a `str` of length 1 in Python (ctypes' `c_wchar`, 4 bytes
/// on Linux), stored as its code point. Any code point up to U+10FFFF reads back as a
/// `str`, lone surrogates included (as ctypes); a larger number (which only a peer
/// writing the region directly can store) raises `ValueError` when read.
pub(crate) struct WChar;

/// ctypes' error for a stored number that is no code point.
fn not_a_code_point(x: u32) -> PyErr {
    PyValueError::new_err(format!(
        "character U+{x:x} is not in range [U+0000; U+10ffff]"
    ))
}

/// `o` as a `str`, with ctypes' `TypeError` for anything else.
fn as_str<'a, 'py>(o: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyString>> {
    o.downcast::<PyString>().map_err(|_| {
        let ty = o
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        PyTypeError::new_err(format!("unicode string expected instead of {ty} instance"))
    })
}

/// The code points of the `str` `s` (lone surrogates included).
pub(crate) fn code_points(s: &Bound<'_, PyString>) -> PyResult<Vec<u32>> {
    // SAFETY: `s` is a live `str` (the GIL is held: `s` is bound to it).
    let n = unsafe { pyo3::ffi::PyUnicode_GetLength(s.as_ptr()) };
    let n = usize::try_from(n).map_err(|_| PyErr::fetch(s.py()))?;
    let mut buf = vec![0u32; n];
    if n == 0 {
        return Ok(buf);
    }
    // SAFETY: `buf` is a writable buffer of `n` `Py_UCS4` (`u32`) elements, and `n` is
    // the string's length, so `PyUnicode_AsUCS4` (not asked to append a NUL) writes `n`
    // code points and never past the buffer; `s` is a live `str`, GIL held.
    let r = unsafe {
        pyo3::ffi::PyUnicode_AsUCS4(s.as_ptr(), buf.as_mut_ptr(), n as pyo3::ffi::Py_ssize_t, 0)
    };
    if r.is_null() {
        return Err(PyErr::fetch(s.py()));
    }
    Ok(buf)
}

/// `xs` as a `str` (`ValueError` for a number beyond U+10FFFF).
pub(crate) fn str_of_code_points(py: Python<'_>, xs: &[u32]) -> PyResult<PyObject> {
    if let Some(&bad) = xs.iter().find(|&&x| x > 0x10_ffff) {
        return Err(not_a_code_point(bad));
    }
    if let Some(s) = xs
        .iter()
        .map(|&x| char::from_u32(x))
        .collect::<Option<String>>()
    {
        return s.into_py_any(py);
    }
    // Lone surrogates, which a Rust `String` cannot hold: CPython's UTF-32 decoder.
    let bytes: Vec<u8> = xs.iter().flat_map(|x| x.to_ne_bytes()).collect();
    let mut order: std::ffi::c_int = if cfg!(target_endian = "little") {
        -1
    } else {
        1
    };
    // SAFETY: `bytes` is a readable buffer of `bytes.len()` bytes, `c"surrogatepass"` a
    // NUL-terminated error handler name, `order` a writable int (the byte order: native);
    // the GIL is held (`py`). The result is a new reference or NULL with an exception.
    let s = unsafe {
        pyo3::ffi::PyUnicode_DecodeUTF32(
            bytes.as_ptr().cast(),
            bytes.len() as pyo3::ffi::Py_ssize_t,
            c"surrogatepass".as_ptr(),
            &mut order,
        )
    };
    // SAFETY: a new reference, or NULL with an exception set.
    Ok(unsafe { Bound::from_owned_ptr_or_err(py, s) }?.unbind())
}

impl Codec<u32> for WChar {
    fn to_py(py: Python<'_>, x: u32) -> PyResult<PyObject> {
        str_of_code_points(py, &[x])
    }
    fn from_py(o: &Bound<'_, PyAny>) -> PyResult<u32> {
        match code_points(as_str(o)?)?.as_slice() {
            &[x] => Ok(x),
            _ => Err(PyTypeError::new_err(
                "one character unicode string expected",
            )),
        }
    }
    fn seq_to_py(py: Python<'_>, xs: Vec<u32>) -> PyResult<PyObject> {
        str_of_code_points(py, &xs)
    }
    fn seq_from_py(o: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
        if let Ok(s) = o.downcast::<PyString>() {
            return code_points(s);
        }
        o.try_iter()?.map(|x| Self::from_py(&x?)).collect()
    }
}

/// `str` `s` as code points, for `.value` of a `u` array (ctypes' `TypeError` for
/// anything but a `str`).
pub(crate) fn wide_value(o: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
    code_points(as_str(o)?)
}

/// Builds one variant of enum `$e` for `$code`, binding type alias `$t` to the typecode's
/// type and `$k` to its [`Codec`] in `$mk`; a bad typecode returns a `ValueError` from the
/// enclosing function.
macro_rules! open_by_code {
    ($e:ident, $code:expr, $t:ident, $k:ident => $mk:expr) => {
        match $code {
            'b' => {
                type $t = i8;
                type $k = crate::typecode::Num;
                $e::I8($mk)
            }
            'B' => {
                type $t = u8;
                type $k = crate::typecode::Num;
                $e::U8($mk)
            }
            'h' => {
                type $t = i16;
                type $k = crate::typecode::Num;
                $e::I16($mk)
            }
            'H' => {
                type $t = u16;
                type $k = crate::typecode::Num;
                $e::U16($mk)
            }
            'i' => {
                type $t = i32;
                type $k = crate::typecode::Num;
                $e::I32($mk)
            }
            'I' => {
                type $t = u32;
                type $k = crate::typecode::Num;
                $e::U32($mk)
            }
            'l' | 'q' => {
                type $t = i64;
                type $k = crate::typecode::Num;
                $e::I64($mk)
            }
            'L' | 'Q' => {
                type $t = u64;
                type $k = crate::typecode::Num;
                $e::U64($mk)
            }
            'f' => {
                type $t = f32;
                type $k = crate::typecode::Num;
                $e::F32($mk)
            }
            'd' => {
                type $t = f64;
                type $k = crate::typecode::Num;
                $e::F64($mk)
            }
            '?' => {
                type $t = bool;
                type $k = crate::typecode::Num;
                $e::Bool($mk)
            }
            'c' => {
                type $t = u8;
                type $k = crate::typecode::Char;
                $e::Char($mk)
            }
            'u' => {
                type $t = u32;
                type $k = crate::typecode::WChar;
                $e::WChar($mk)
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

/// Runs `$body` with `$c` bound to the variant's payload, `$t` to its element type and
/// `$k` to its [`Codec`].
macro_rules! dispatch {
    ($e:ident, $cell:expr, $c:ident, $t:ident, $k:ident => $body:expr) => {
        match $cell {
            $e::I8($c) => {
                #[allow(dead_code)]
                type $t = i8;
                #[allow(dead_code)]
                type $k = crate::typecode::Num;
                $body
            }
            $e::U8($c) => {
                #[allow(dead_code)]
                type $t = u8;
                #[allow(dead_code)]
                type $k = crate::typecode::Num;
                $body
            }
            $e::I16($c) => {
                #[allow(dead_code)]
                type $t = i16;
                #[allow(dead_code)]
                type $k = crate::typecode::Num;
                $body
            }
            $e::U16($c) => {
                #[allow(dead_code)]
                type $t = u16;
                #[allow(dead_code)]
                type $k = crate::typecode::Num;
                $body
            }
            $e::I32($c) => {
                #[allow(dead_code)]
                type $t = i32;
                #[allow(dead_code)]
                type $k = crate::typecode::Num;
                $body
            }
            $e::U32($c) => {
                #[allow(dead_code)]
                type $t = u32;
                #[allow(dead_code)]
                type $k = crate::typecode::Num;
                $body
            }
            $e::I64($c) => {
                #[allow(dead_code)]
                type $t = i64;
                #[allow(dead_code)]
                type $k = crate::typecode::Num;
                $body
            }
            $e::U64($c) => {
                #[allow(dead_code)]
                type $t = u64;
                #[allow(dead_code)]
                type $k = crate::typecode::Num;
                $body
            }
            $e::F32($c) => {
                #[allow(dead_code)]
                type $t = f32;
                #[allow(dead_code)]
                type $k = crate::typecode::Num;
                $body
            }
            $e::F64($c) => {
                #[allow(dead_code)]
                type $t = f64;
                #[allow(dead_code)]
                type $k = crate::typecode::Num;
                $body
            }
            $e::Bool($c) => {
                #[allow(dead_code)]
                type $t = bool;
                #[allow(dead_code)]
                type $k = crate::typecode::Num;
                $body
            }
            $e::Char($c) => {
                #[allow(dead_code)]
                type $t = u8;
                #[allow(dead_code)]
                type $k = crate::typecode::Char;
                $body
            }
            $e::WChar($c) => {
                #[allow(dead_code)]
                type $t = u32;
                #[allow(dead_code)]
                type $k = crate::typecode::WChar;
                $body
            }
        }
    };
}

/// As `dispatch!` for the numeric types (no codec: numbers convert with PyO3's
/// conversions); a `bool`, `c` or `u` element raises `TypeError`.
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
            $e::Char(_) | $e::WChar(_) => {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "arithmetic on a character ('c' or 'u') value",
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
            Char(Obj<$w<u8>>),
            WChar(Obj<$w<u32>>),
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
                    $e::Char(c) => $e::Char(c.clone()),
                    $e::WChar(c) => $e::WChar(c.clone()),
                }
            }
        }
    };
}

pub(crate) use {cell_enum, dispatch, dispatch_num, open_by_code};
