//! Host functions: typed closures the guest may call, and the signatures the vCPU thread checks
//! every guest request against before any host code runs.

use std::collections::HashMap;
use std::sync::Arc;

use hyperlight_schema::{
    ErrorCode, FunctionCall, FunctionCallResult, GuestError, IntoReturn, Value, ValueType,
    WireArgs, WireType,
};

/// The declared parameter and return types of a host function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// Parameter types, in order.
    pub params: Vec<ValueType>,
    /// Return type.
    pub ret: ValueType,
}

/// Host function signatures by name: what the guest may call, and how.
pub type Signatures = HashMap<String, Signature>;

/// How a guest-chosen function name appears in an error message: quoted, and cut after 64
/// characters, so that an error never echoes a huge name back to the guest (a name may be as
/// large as the output buffer, and quoting can make it six times larger).
fn shown(name: &str) -> String {
    const MAX_CHARS: usize = 64;
    match name.char_indices().nth(MAX_CHARS) {
        None => format!("{name:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &name[..cut], name.len()),
    }
}

/// Checks a guest's host-call request against the declared signatures. The host function runs
/// only if this returns `Ok`; the error is what the guest receives.
pub fn check_call(signatures: &Signatures, call: &FunctionCall) -> Result<(), GuestError> {
    let err = |code, message| Err(GuestError { code, message });
    let Some(sig) = signatures.get(&call.name) else {
        return err(
            ErrorCode::UnknownFunction,
            format!("no host function named {}", shown(&call.name)),
        );
    };
    if call.args.len() != sig.params.len() {
        return err(
            ErrorCode::WrongArity,
            format!(
                "host function {:?} takes {} arguments, got {}",
                call.name,
                sig.params.len(),
                call.args.len()
            ),
        );
    }
    for (i, (arg, param)) in call.args.iter().zip(&sig.params).enumerate() {
        if arg.value_type() != *param {
            return err(
                ErrorCode::WrongArgumentType,
                format!(
                    "host function {:?} argument {i} must be {param:?}, got {:?}",
                    call.name,
                    arg.value_type()
                ),
            );
        }
    }
    if call.return_type != sig.ret {
        return err(
            ErrorCode::WrongReturnType,
            format!(
                "host function {:?} returns {:?}, caller expects {:?}",
                call.name, sig.ret, call.return_type
            ),
        );
    }
    Ok(())
}

/// A type-erased host function: takes checked arguments, returns a value or an error message.
pub type DynHostFn = Arc<dyn Fn(Vec<Value>) -> Result<Value, String> + Send + Sync>;

/// Runs a checked host call on `f`, turning its error or panic into the error the guest receives.
pub fn invoke(f: &DynHostFn, call: FunctionCall) -> FunctionCallResult {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(call.args)));
    host_result(&call.name, outcome)
}

/// What the guest receives for a host function's outcome: its value, or a
/// [`ErrorCode::HostFunctionFailed`] error that says whether it failed or panicked. A panic's
/// payload is dropped here, and a payload whose `Drop` panics too does not unwind out of it.
pub fn host_result(
    name: &str,
    outcome: std::thread::Result<Result<Value, String>>,
) -> FunctionCallResult {
    let failed = |message| GuestError {
        code: ErrorCode::HostFunctionFailed,
        message,
    };
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(failed(format!("host function {name:?} failed: {message}"))),
        Err(payload) => {
            crate::vcpu::contain::discard(payload);
            Err(failed(format!("host function {name:?} panicked")))
        }
    }
}

/// Host functions by name with their signatures.
#[derive(Clone, Default)]
pub struct HostFunctions {
    functions: HashMap<String, (Signature, DynHostFn)>,
    /// The functions registered with extra syscalls, and those syscalls: each runs on a worker
    /// thread of its own under a wider seccomp filter (see `crate::seccomp`).
    syscalls: HashMap<String, Vec<i64>>,
}

impl std::fmt::Debug for HostFunctions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.functions.keys()).finish()
    }
}

impl HostFunctions {
    /// Registers (or replaces) `name`.
    pub fn insert<Args, F: HostFunction<Args>>(&mut self, name: &str, f: F) {
        self.syscalls.remove(name);
        self.functions
            .insert(name.to_string(), (f.signature(), f.into_dyn()));
    }

    /// Registers (or replaces) `name` as a function that may make the syscalls `syscalls`
    /// (`libc::SYS_*`) on top of the sandbox's seccomp allowlist. It runs on a worker thread of
    /// its own whose filter allows them; see `docs/security.md`.
    pub fn insert_with_syscalls<Args, F: HostFunction<Args>>(
        &mut self,
        name: &str,
        syscalls: &[i64],
        f: F,
    ) {
        self.insert(name, f);
        self.syscalls.insert(name.to_string(), syscalls.to_vec());
    }

    /// Removes `name`, if registered.
    pub fn remove(&mut self, name: &str) {
        self.syscalls.remove(name);
        self.functions.remove(name);
    }

    /// The functions registered with extra syscalls, and those syscalls.
    pub(crate) fn extra_syscalls(&self) -> &HashMap<String, Vec<i64>> {
        &self.syscalls
    }

    /// Replaces what runs for `name` (keeping its signature) by `f`, which makes no extra
    /// syscalls itself: the stub that hands calls to the function's worker thread.
    pub(crate) fn replace_runner(&mut self, name: &str, f: DynHostFn) {
        self.syscalls.remove(name);
        if let Some((_, runner)) = self.functions.get_mut(name) {
            *runner = f;
        }
    }

    /// The declared signatures.
    pub fn signatures(&self) -> Signatures {
        self.functions
            .iter()
            .map(|(name, (sig, _))| (name.clone(), sig.clone()))
            .collect()
    }

    /// The function registered as `name`.
    pub fn get(&self, name: &str) -> Option<&DynHostFn> {
        self.functions.get(name).map(|(_, f)| f)
    }
}

/// A Rust closure usable as a host function: `Fn(A, B, ..) -> R` with up to 16 [`WireType`]
/// parameters and a return of [`IntoReturn`] (a wire type, or `Result` of one).
pub trait HostFunction<Args>: Send + Sync + 'static {
    /// The declared signature.
    fn signature(&self) -> Signature;
    /// Erases the argument types.
    fn into_dyn(self) -> DynHostFn;
}

macro_rules! host_function {
    ($($name:ident)*) => {
        impl<Func, Ret, $($name),*> HostFunction<($($name,)*)> for Func
        where
            Func: Fn($($name),*) -> Ret + Send + Sync + 'static,
            Ret: IntoReturn,
            $($name: WireType + 'static,)*
        {
            fn signature(&self) -> Signature {
                Signature { params: <($($name,)*) as WireArgs>::types(), ret: Ret::TYPE }
            }
            #[allow(non_snake_case)]
            fn into_dyn(self) -> DynHostFn {
                Arc::new(move |args: Vec<Value>| {
                    let ($($name,)*) = <($($name,)*) as WireArgs>::from_values(args)
                        .ok_or_else(|| String::from("argument types do not match the signature"))?;
                    (self)($($name),*).into_return()
                })
            }
        }
    };
}

hyperlight_schema::for_each_arity!(host_function);

#[cfg(test)]
mod tests {
    use super::*;

    fn sigs() -> Signatures {
        let add = |a: i32, b: i32| a + b;
        Signatures::from([("add".to_string(), add.signature())])
    }

    fn call(name: &str, args: Vec<Value>, ret: ValueType) -> FunctionCall {
        FunctionCall {
            name: name.into(),
            args,
            return_type: ret,
        }
    }

    #[test]
    fn checks_name_arity_types_and_return() {
        let s = sigs();
        let ok = call("add", vec![Value::I32(1), Value::I32(2)], ValueType::I32);
        assert_eq!(check_call(&s, &ok), Ok(()));
        let code = |c: FunctionCall| check_call(&s, &c).unwrap_err().code;
        assert_eq!(
            code(call("nope", vec![], ValueType::I32)),
            ErrorCode::UnknownFunction
        );
        assert_eq!(
            code(call("add", vec![Value::I32(1)], ValueType::I32)),
            ErrorCode::WrongArity
        );
        assert_eq!(
            code(call(
                "add",
                vec![Value::I32(1), Value::Bool(true)],
                ValueType::I32
            )),
            ErrorCode::WrongArgumentType
        );
        assert_eq!(
            code(call(
                "add",
                vec![Value::I32(1), Value::I32(2)],
                ValueType::String
            )),
            ErrorCode::WrongReturnType
        );
    }

    #[test]
    fn typed_closure_runs_through_dyn() {
        let f = (|a: String, n: u32| a.repeat(n as usize)).into_dyn();
        assert_eq!(
            f(vec![Value::String("ab".into()), Value::U32(2)]),
            Ok(Value::String("abab".into()))
        );
        let failing = (|x: i32| if x > 0 { Ok(x) } else { Err("negative") }).into_dyn();
        assert_eq!(failing(vec![Value::I32(-1)]), Err("negative".to_string()));
    }
}
