//! Async host functions: `async` closures the guest may call. They run in the task that awaits
//! the guest call, so cancelling the call drops them too.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;
use hyperlight_sys::host_fn::{host_result, Signature};
use hyperlight_sys::schema::{
    FunctionCall, FunctionCallResult, IntoReturn, Value, WireArgs, WireType,
};

/// The future a type-erased async host function returns.
pub type HostFuture = Pin<Box<dyn Future<Output = Result<Value, String>> + Send>>;

/// A type-erased async host function.
pub type DynAsyncHostFn = Arc<dyn Fn(Vec<Value>) -> HostFuture + Send + Sync>;

/// An async closure usable as a host function: `Fn(A, B, ..) -> impl Future<Output = R>` with
/// up to 16 [`WireType`] parameters and a return of [`IntoReturn`] (a wire type, or a `Result`
/// of one whose error the guest receives as a message).
pub trait AsyncHostFunction<Args>: Send + Sync + 'static {
    /// The declared signature.
    fn signature(&self) -> Signature;
    /// Erases the argument types.
    fn into_dyn(self) -> DynAsyncHostFn;
}

macro_rules! async_host_function {
    ($($name:ident)*) => {
        impl<Func, Fut, Ret, $($name),*> AsyncHostFunction<($($name,)*)> for Func
        where
            Func: Fn($($name),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Ret> + Send + 'static,
            Ret: IntoReturn,
            $($name: WireType + 'static,)*
        {
            fn signature(&self) -> Signature {
                Signature { params: <($($name,)*) as WireArgs>::types(), ret: Ret::TYPE }
            }
            #[allow(non_snake_case)]
            fn into_dyn(self) -> DynAsyncHostFn {
                Arc::new(move |args: Vec<Value>| -> HostFuture {
                    match <($($name,)*) as WireArgs>::from_values(args) {
                        Some(($($name,)*)) => {
                            let future = (self)($($name),*);
                            Box::pin(async move { future.await.into_return() })
                        }
                        None => Box::pin(async {
                            Err(String::from("argument types do not match the signature"))
                        }),
                    }
                })
            }
        }
    };
}

hyperlight_sys::schema::for_each_arity!(async_host_function);

/// Runs a checked host call on `f`; its error or panic becomes the error the guest receives.
pub(crate) async fn invoke(f: &DynAsyncHostFn, call: FunctionCall) -> FunctionCallResult {
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| f(call.args))) {
        Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
        Err(panic) => Err(panic),
    };
    host_result(&call.name, outcome)
}
