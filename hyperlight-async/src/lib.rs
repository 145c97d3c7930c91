//! Await guest calls in micro-VM sandboxes from Tokio.
//!
//! A [`Sandbox`] is a KVM micro-VM running an untrusted guest. Its blocking work (creating the
//! VM, running the vCPU) happens on dedicated threads; this crate lets async code await it:
//!
//! ```
//! use std::time::Duration;
//! use hyperlight_async::{Error, Sandbox, SandboxPool};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let sandbox = Sandbox::builder(hyperlight_testing::simple_guest())
//!     // A sync host function runs on the vCPU thread; an async one in the awaiting task.
//!     .host_fn("host_add", |a: i32, b: i32| a + b)
//!     .host_fn_async("host_echo", |s: String| async move {
//!         tokio::time::sleep(Duration::from_millis(1)).await;
//!         s
//!     })
//!     .default_timeout(Duration::from_secs(1))
//!     .build()
//!     .await?;
//! let sum: i32 = sandbox.call("call_host_add", (1i32, 2i32)).await?;
//! let echo: String = sandbox.call("call_host_echo_string", ("hi".to_string(),)).await?;
//! // A call that runs too long is kicked out of the guest; the sandbox is restored before
//! // its next call.
//! let spun = sandbox.call::<()>("infinite_loop", ()).timeout(Duration::from_millis(10)).await;
//! assert!(matches!(spun, Err(Error::Timeout { .. })));
//! assert_eq!(sum + 1, sandbox.call::<i32>("add", (sum, 1i32)).await?);
//! assert_eq!(echo, "hi");
//!
//! // A pool of sandboxes created from the guest's post-init snapshot: every call starts fresh.
//! let pool = SandboxPool::new(Sandbox::builder(hyperlight_testing::simple_guest()), 4).await?;
//! assert_eq!(pool.call::<u64>("counter", ()).await?, 1);
//! assert_eq!(pool.call::<u64>("counter", ()).await?, 1);
//! # Ok::<(), Error>(())
//! # }).unwrap();
//! ```
//!
//! Clones of a `Sandbox` share one VM; its calls run in FIFO order. Dropping a call future
//! cancels the call (see [`Call`] for the cancel-safety contract of each future).
#![forbid(unsafe_code)]

mod error;
mod host;
pub mod metrics;
mod pool;
mod sandbox;

pub use error::Error;
pub use host::{AsyncHostFunction, DynAsyncHostFn, HostFuture};
pub use hyperlight_sys::schema::{ErrorCode, Value, ValueType, WireArgs, WireType};
pub use hyperlight_sys::Error as SandboxError;
// What the builder, its `SandboxConfig` and the errors name, so that configuring a sandbox and
// matching its errors needs no direct dependency on `hyperlight-sys`.
pub use hyperlight_sys::hypervisor::select::{HypervisorChoice, HypervisorPaths};
pub use hyperlight_sys::hypervisor::Hypervisor;
pub use hyperlight_sys::{Access, OnDenied, SeccompPolicy};
pub use hyperlight_sys::{
    DoorbellStats, GuestBinary, InterruptHandle, SandboxConfig, SandboxSource, Snapshot,
};
pub use hyperlight_sys::{HostFunction, Signature};
pub use pool::{PoolCall, PoolStats, SandboxPool};
pub use sandbox::{Call, FromCallValue, Sandbox, SandboxBuilder};
