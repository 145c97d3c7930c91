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

extern crate alloc;

pub mod abi;
mod convert;
mod types;
pub mod wire;

pub use convert::{IntoReturn, WireArgs, WireType};
pub use types::*;
