//! The messages that cross the hyperlight host/guest boundary, their FlatBuffer encoding, and
//! the ABI constants both sides share. `no_std` + `alloc`, so the guest library uses the very
//! same code as the host.
//!
//! ```
//! use hyperlight_schema::{FunctionCall, Value, ValueType, wire};
//!
//! let call = FunctionCall { name: "add".into(), args: vec![Value::I32(1), Value::I32(2)], return_type: ValueType::I32 };
//! let bytes = wire::encode_function_call(&call);
//! assert_eq!(wire::decode_function_call(&bytes).unwrap(), call);
//! ```
#![no_std]
#![deny(missing_docs)]
// The flatc output (`wire::generated`) is the one module allowed `unsafe`: its accessors read
// tables the verifier has checked. The hand-written code has none.
#![deny(unsafe_code)]

extern crate alloc;

pub mod abi;

/// Invokes `$m!(...)` once per arity from 0 to [`MAX_PARAMS`] with that many type-parameter names
/// (`$m!()`, `$m!(A)`, `$m!(A B)`, ..), so every crate that implements a trait for functions or
/// tuples of wire values covers the same arities.
#[macro_export]
macro_rules! for_each_arity {
    ($m:ident) => {
        $m!();
        $m!(A);
        $m!(A B);
        $m!(A B C);
        $m!(A B C D);
        $m!(A B C D E);
        $m!(A B C D E F);
        $m!(A B C D E F G);
        $m!(A B C D E F G H);
        $m!(A B C D E F G H I);
        $m!(A B C D E F G H I J);
        $m!(A B C D E F G H I J K);
        $m!(A B C D E F G H I J K L);
        $m!(A B C D E F G H I J K L M);
        $m!(A B C D E F G H I J K L M N);
        $m!(A B C D E F G H I J K L M N O);
        $m!(A B C D E F G H I J K L M N O P);
    };
}
mod convert;
mod types;
pub mod wasm;
pub mod wire;

pub use convert::{IntoReturn, WireArgs, WireType};
pub use types::*;
