//! Conversions between Rust types and [`Value`]s, for typed calls on both sides.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::types::{Value, ValueType};

/// A Rust type that crosses the boundary as one [`Value`].
pub trait WireType: Sized {
    /// The wire type of `Self`.
    const TYPE: ValueType;
    /// Wraps `self` in a [`Value`].
    fn into_value(self) -> Value;
    /// Unwraps a [`Value`] of type [`Self::TYPE`]; `None` for any other type.
    fn from_value(value: Value) -> Option<Self>;
}

macro_rules! wire_type {
    ($($ty:ty => $variant:ident),* $(,)?) => {$(
        impl WireType for $ty {
            const TYPE: ValueType = ValueType::$variant;
            fn into_value(self) -> Value {
                Value::$variant(self)
            }
            fn from_value(value: Value) -> Option<Self> {
                match value {
                    Value::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    )*};
}

wire_type!(
    i32 => I32, u32 => U32, i64 => I64, u64 => U64, f32 => F32, f64 => F64, bool => Bool,
    String => String, Vec<u8> => Bytes,
);

impl WireType for () {
    const TYPE: ValueType = ValueType::Void;
    fn into_value(self) -> Value {
        Value::Void
    }
    fn from_value(value: Value) -> Option<Self> {
        matches!(value, Value::Void).then_some(())
    }
}

/// A tuple of [`WireType`]s: the arguments of a typed call (up to 16).
pub trait WireArgs: Sized {
    /// The parameter types, in order.
    fn types() -> Vec<ValueType>;
    /// The values, in order.
    fn into_values(self) -> Vec<Value>;
    /// Rebuilds the tuple; `None` if the count or any type differs.
    fn from_values(values: Vec<Value>) -> Option<Self>;
}

macro_rules! wire_args {
    ($($name:ident)*) => {
        impl<$($name: WireType),*> WireArgs for ($($name,)*) {
            fn types() -> Vec<ValueType> {
                vec![$($name::TYPE),*]
            }
            #[allow(non_snake_case)]
            fn into_values(self) -> Vec<Value> {
                let ($($name,)*) = self;
                vec![$($name.into_value()),*]
            }
            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn from_values(values: Vec<Value>) -> Option<Self> {
                let names: &[&str] = &[$(stringify!($name)),*];
                let n = names.len();
                if values.len() != n {
                    return None;
                }
                let mut it = values.into_iter();
                Some(($($name::from_value(it.next()?)?,)*))
            }
        }
    };
}

crate::for_each_arity!(wire_args);

/// What a function may return: a [`WireType`], or a `Result` of one whose error crosses the
/// boundary as a message.
pub trait IntoReturn {
    /// The declared return type.
    const TYPE: ValueType;
    /// The value to send back, or the error message.
    fn into_return(self) -> Result<Value, String>;
}

macro_rules! into_return {
    ($($ty:ty),*) => {$(
        impl IntoReturn for $ty {
            const TYPE: ValueType = <$ty as WireType>::TYPE;
            fn into_return(self) -> Result<Value, String> {
                Ok(self.into_value())
            }
        }
        impl<E: core::fmt::Display> IntoReturn for Result<$ty, E> {
            const TYPE: ValueType = <$ty as WireType>::TYPE;
            fn into_return(self) -> Result<Value, String> {
                self.map(WireType::into_value).map_err(|e| alloc::format!("{e}"))
            }
        }
    )*};
}

into_return!(i32, u32, i64, u64, f32, f64, bool, String, Vec<u8>, ());
