//! The guest function registry and the dispatcher of incoming calls.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use hyperlight_schema::{
    ErrorCode, FunctionCall, FunctionCallResult, GuestError, Value, ValueType, WireArgs, WireType,
};

use crate::global::Global;

/// What a guest function may return: any [`WireType`] (`()` for "nothing"), or a `Result` of one.
///
/// - `T` is returned as the value.
/// - `Result<T, String>`: `Err(message)` becomes a [`GuestError`] with
///   [`ErrorCode::GuestFunctionFailed`] and that message.
/// - `Result<T, GuestError>`: `Err(error)` is returned as is (e.g. a failed host call propagated
///   with `?`).
///
/// A function that never returns (`|| loop {}`) has the return type `!`, which is none of these:
/// write the return type it declares to the host, `|| -> () { loop {} }`. Without it, edition
/// 2024 reports that `!` is not a `GuestReturn`, and edition 2021 that `hyperlight_main` "depends
/// on never type fallback being `()`".
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a type a guest function can return",
    label = "the function registered here returns `{Self}`",
    note = "a guest function returns a wire type (i32, u32, i64, u64, f32, f64, bool, String, Vec<u8>), `()`, or a `Result` of one with a `String` or `GuestError` error",
    note = "a function that never returns (`|| loop {{}}`) returns `!`: write the type it declares to the host, `|| -> () {{ loop {{}} }}`"
)]
pub trait GuestReturn {
    /// The declared return type.
    const TYPE: ValueType;
    /// Converts the function's return value into the call's result.
    fn into_result(self) -> FunctionCallResult;
}

macro_rules! guest_return {
    ($($ty:ty),* $(,)?) => {$(
        impl GuestReturn for $ty {
            const TYPE: ValueType = <$ty as WireType>::TYPE;
            fn into_result(self) -> FunctionCallResult {
                Ok(self.into_value())
            }
        }
    )*};
}

guest_return!(i32, u32, i64, u64, f32, f64, bool, String, Vec<u8>, ());

impl<T: WireType> GuestReturn for Result<T, String> {
    const TYPE: ValueType = T::TYPE;
    fn into_result(self) -> FunctionCallResult {
        self.map(T::into_value).map_err(|message| GuestError {
            code: ErrorCode::GuestFunctionFailed,
            message,
        })
    }
}

impl<T: WireType> GuestReturn for Result<T, GuestError> {
    const TYPE: ValueType = T::TYPE;
    fn into_result(self) -> FunctionCallResult {
        self.map(T::into_value)
    }
}

/// A Rust function or closure that can be registered as a guest function: implemented for every
/// `Fn(A1, ..., An) -> R + 'static` with `0 <= n <= 16`, each `Ai: WireType` and `R: GuestReturn`.
/// `Args` is the tuple `(A1, ..., An)`.
pub trait GuestFn<Args: WireArgs, R: GuestReturn>: 'static {
    /// Calls the function with the unpacked arguments.
    fn call(&self, args: Args) -> R;
}

macro_rules! guest_fn {
    ($($arg:ident)*) => {
        impl<Func, Ret, $($arg,)*> GuestFn<($($arg,)*), Ret> for Func
        where
            Func: Fn($($arg),*) -> Ret + 'static,
            Ret: GuestReturn,
            $($arg: WireType,)*
        {
            #[allow(non_snake_case)]
            fn call(&self, ($($arg,)*): ($($arg,)*)) -> Ret {
                self($($arg),*)
            }
        }
    };
}

hyperlight_schema::for_each_arity!(guest_fn);

type Erased = Box<dyn Fn(Vec<Value>) -> FunctionCallResult>;

/// The body of a function registered with [`register_dynamic`]: the arguments and the return
/// type the caller expects.
type Dynamic = Box<dyn Fn(Vec<Value>, ValueType) -> FunctionCallResult>;

/// A registered function: its signature and its type-erased body, or a body that checks the
/// signature itself.
enum Registered {
    Typed {
        params: Vec<ValueType>,
        ret: ValueType,
        body: Erased,
    },
    Dynamic(Dynamic),
}

/// Registered functions by name. The dispatcher clones the `Rc` out of the map, so a running
/// guest function may itself register functions.
static REGISTRY: Global<RefCell<BTreeMap<String, Rc<Registered>>>> =
    Global::new(RefCell::new(BTreeMap::new()));

/// Registers `f` as the guest function `name`, with its parameter and return types taken from its
/// Rust signature. Registering a name again replaces the earlier function.
///
/// The return type must be a [`GuestReturn`]; a closure that never returns needs it written out:
/// `register_fn("spin", || -> () { loop {} })`.
///
/// ```ignore
/// hyperlight_guest::register_fn("add", |a: i32, b: i32| a + b);
/// hyperlight_guest::register_fn("greet", |name: String| -> Result<String, String> {
///     if name.is_empty() { Err("empty name".into()) } else { Ok(format!("hello {name}")) }
/// });
/// ```
pub fn register_fn<Args, R, F>(name: &str, f: F)
where
    Args: WireArgs + 'static,
    R: GuestReturn + 'static,
    F: GuestFn<Args, R>,
{
    let params = Args::types();
    let body: Erased = Box::new(move |values: Vec<Value>| match Args::from_values(values) {
        Some(args) => f.call(args).into_result(),
        // The dispatcher checked count and types against `Args::types()` already.
        None => Err(GuestError {
            code: ErrorCode::WrongArgumentType,
            message: String::from("arguments do not match the declared parameters"),
        }),
    });
    let function = Registered::Typed {
        params,
        ret: R::TYPE,
        body,
    };
    REGISTRY
        .borrow_mut()
        .insert(String::from(name), Rc::new(function));
}

/// Registers `f` as the guest function `name` with a signature known only at run time: the
/// dispatcher checks nothing but the name, and `f` gets the call's arguments and the return type
/// the caller expects, and must check both (answering a mismatch with
/// [`ErrorCode::WrongArity`], [`ErrorCode::WrongArgumentType`] or [`ErrorCode::WrongReturnType`]).
/// For guests that serve functions they learn at run time, such as the exports of a WebAssembly
/// module. Registering a name again replaces the earlier function.
///
/// ```ignore
/// hyperlight_guest::register_dynamic("sum", |args, ret| {
///     let mut sum = 0i64;
///     for arg in args {
///         let Value::I64(x) = arg else { return Err(wrong_type()) };
///         sum += x;
///     }
///     if ret != ValueType::I64 { return Err(wrong_return()) }
///     Ok(Value::I64(sum))
/// });
/// ```
pub fn register_dynamic(
    name: &str,
    f: impl Fn(Vec<Value>, ValueType) -> FunctionCallResult + 'static,
) {
    REGISTRY.borrow_mut().insert(
        String::from(name),
        Rc::new(Registered::Dynamic(Box::new(f))),
    );
}

/// Whether a guest function of that name is registered.
pub fn is_registered(name: &str) -> bool {
    REGISTRY.borrow().contains_key(name)
}

/// Checks `call` against the registered signature of its function and runs it.
pub(crate) fn dispatch(call: FunctionCall) -> FunctionCallResult {
    let FunctionCall {
        name,
        args,
        return_type,
    } = call;
    let function = REGISTRY.borrow().get(name.as_str()).cloned();
    let Some(function) = function else {
        return Err(error(
            ErrorCode::UnknownFunction,
            format!("guest function `{name}` is not registered"),
        ));
    };
    let (params, ret, body) = match &*function {
        Registered::Typed { params, ret, body } => (params, *ret, body),
        Registered::Dynamic(body) => {
            drop(name);
            return body(args, return_type);
        }
    };
    if args.len() != params.len() {
        return Err(error(
            ErrorCode::WrongArity,
            format!(
                "guest function `{name}` takes {} arguments, got {}",
                params.len(),
                args.len()
            ),
        ));
    }
    for (i, (arg, &expected)) in args.iter().zip(params).enumerate() {
        let actual = arg.value_type();
        if actual != expected {
            return Err(error(
                ErrorCode::WrongArgumentType,
                format!(
                    "guest function `{name}` argument {i} must be {expected:?}, got {actual:?}"
                ),
            ));
        }
    }
    if return_type != ret {
        return Err(error(
            ErrorCode::WrongReturnType,
            format!("guest function `{name}` returns {ret:?}, the caller expects {return_type:?}"),
        ));
    }
    drop(name);
    body(args)
}

fn error(code: ErrorCode, message: String) -> GuestError {
    GuestError { code, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn call(name: &str, args: Vec<Value>, return_type: ValueType) -> FunctionCallResult {
        dispatch(FunctionCall {
            name: name.to_string(),
            args,
            return_type,
        })
    }

    fn code(result: FunctionCallResult) -> ErrorCode {
        result.expect_err("the call should fail").code
    }

    // One test only: the registry is a global that assumes a single thread.
    #[test]
    fn registry_and_dispatch() {
        register_fn("add", |a: i32, b: i32| a + b);
        register_fn("nothing", || ());
        register_fn("fails", |x: u32| -> Result<u32, String> {
            if x == 0 {
                Err("zero".to_string())
            } else {
                Ok(x)
            }
        });
        register_fn("passes_error", || -> Result<String, GuestError> {
            Err(GuestError {
                code: ErrorCode::HostFunctionFailed,
                message: "host".to_string(),
            })
        });
        #[allow(clippy::too_many_arguments)]
        fn sixteen(
            a: Int,
            b: Int,
            c: Int,
            d: Int,
            e: Int,
            f: Int,
            g: Int,
            h: Int,
            i: Int,
            j: Int,
            k: Int,
            l: Int,
            m: Int,
            n: Int,
            o: Int,
            p: String,
        ) -> String {
            alloc::format!(
                "{}{p}",
                a + b + c + d + e + f + g + h + i + j + k + l + m + n + o
            )
        }
        type Int = i64;
        register_fn("sixteen", sixteen);
        assert!(is_registered("add") && !is_registered("missing"));

        assert_eq!(
            call("add", vec![Value::I32(2), Value::I32(3)], ValueType::I32),
            Ok(Value::I32(5))
        );
        assert_eq!(call("nothing", vec![], ValueType::Void), Ok(Value::Void));
        assert_eq!(
            call("fails", vec![Value::U32(7)], ValueType::U32),
            Ok(Value::U32(7))
        );
        assert_eq!(
            call("fails", vec![Value::U32(0)], ValueType::U32),
            Err(GuestError {
                code: ErrorCode::GuestFunctionFailed,
                message: "zero".to_string()
            })
        );
        assert_eq!(
            code(call("passes_error", vec![], ValueType::String)),
            ErrorCode::HostFunctionFailed
        );
        let mut args: Vec<Value> = (1..=15).map(Value::I64).collect();
        args.push(Value::String("!".to_string()));
        assert_eq!(
            call("sixteen", args, ValueType::String),
            Ok(Value::String("120!".to_string()))
        );

        let unknown = call("missing", vec![], ValueType::Void).unwrap_err();
        assert_eq!(unknown.code, ErrorCode::UnknownFunction);
        assert!(unknown.message.contains("`missing`"), "{}", unknown.message);
        let arity = call("add", vec![Value::I32(1)], ValueType::I32).unwrap_err();
        assert_eq!(arity.code, ErrorCode::WrongArity);
        assert_eq!(
            arity.message,
            "guest function `add` takes 2 arguments, got 1"
        );
        let arg = call("add", vec![Value::I32(1), Value::U32(2)], ValueType::I32).unwrap_err();
        assert_eq!(arg.code, ErrorCode::WrongArgumentType);
        assert_eq!(
            arg.message,
            "guest function `add` argument 1 must be I32, got U32"
        );
        let ret = call("add", vec![Value::I32(1), Value::I32(2)], ValueType::String).unwrap_err();
        assert_eq!(ret.code, ErrorCode::WrongReturnType);
        assert_eq!(
            ret.message,
            "guest function `add` returns I32, the caller expects String"
        );

        // A registered function may register others while it runs; re-registering replaces.
        register_fn("registers", || register_fn("late", || 1u64));
        assert_eq!(call("registers", vec![], ValueType::Void), Ok(Value::Void));
        assert_eq!(call("late", vec![], ValueType::U64), Ok(Value::U64(1)));
        register_fn("late", || 2u64);
        assert_eq!(call("late", vec![], ValueType::U64), Ok(Value::U64(2)));

        // A dynamic function gets every call of its name, unchecked, with the expected type.
        register_dynamic("dynamic", |args, ret| {
            Ok(Value::String(alloc::format!("{} {ret:?}", args.len())))
        });
        assert_eq!(
            call(
                "dynamic",
                vec![Value::I32(1), Value::Bool(true)],
                ValueType::F64
            ),
            Ok(Value::String("2 F64".to_string()))
        );
        register_fn("dynamic", || 3u32);
        assert_eq!(call("dynamic", vec![], ValueType::U32), Ok(Value::U32(3)));
    }
}
