//! Run WebAssembly modules in hyperlight micro-VMs, awaited from Tokio.
//!
//! A [`WasmSandbox`] is a micro-VM whose guest is the Wasm runner (wasmi, built for the
//! sandbox's ring-3 guest): raw `.wasm` bytes go in, the runner validates, compiles and
//! instantiates them inside the VM, and the host calls the module's exports. The module's
//! imports are host functions, sync or async; `String` and `Vec<u8>` cross through the
//! Component Model's canonical ABI for core modules (`cabi_realloc`, `(ptr, len)` pairs, a
//! return area: see `docs/wasm.md`), so modules from stock toolchains work.
//!
//! ```
//! use std::time::Duration;
//! use hyperlight_wasm::{Error, Trap, WasmSandbox};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // A module written in Rust and built for wasm32-unknown-unknown (testing/wasm-modules/plugin).
//! let wasm = hyperlight_testing::wasm_bytes("plugin");
//! let sandbox = WasmSandbox::builder(wasm)
//!     // Every import the module declares must be provided, with the types it declares.
//!     .import("env", "host_add", |a: i32, b: i32| a.wrapping_add(b))
//!     .import("env", "host_echo", |s: String| s)
//!     .import("env", "host_bytes", |b: Vec<u8>| b)
//!     .import("env", "host_f32", |x: f32| x)
//!     .import("env", "host_f64", |x: f64| x)
//!     .import("env", "host_i64", |x: i64| x)
//!     // An async import: the module waits in a VM exit while the future runs.
//!     .import_async("env", "lookup", |key: String| async move {
//!         tokio::time::sleep(Duration::from_millis(1)).await;
//!         format!("value of {key}")
//!     })
//!     .build()
//!     .await?;
//!
//! let n: i32 = sandbox.call("add", (1i32, 2i32)).await?;
//! let loud: String = sandbox.call("upper", ("hi".to_string(),)).await?;
//! let found: String = sandbox.call("lookup", ("k".to_string(),)).await?;
//! assert_eq!((n, loud.as_str(), found.as_str()), (3, "HI", "value of k"));
//!
//! // Wrong types are refused before anything runs; a trap is a typed error, and the
//! // instance is restored after it.
//! assert!(matches!(
//!     sandbox.call::<i32>("add", (1i64, 2i64)).await,
//!     Err(Error::ExportType { .. })
//! ));
//! assert!(matches!(
//!     sandbox.call::<()>("fail", (0i32,)).await,
//!     Err(Error::Trap { trap: Trap::Unreachable, .. })
//! ));
//! assert_eq!(sandbox.call::<i32>("counter", ()).await?, 1);
//! # Ok::<(), Error>(())
//! # }).unwrap();
//! ```
//!
//! A [`WasmPool`] gives every call a fresh instance, restored from the snapshot taken right
//! after instantiation. Timeouts and cancellation work as for native sandboxes, also while an
//! async import is pending.
//!
//! WASI programs (command modules built for `wasm32-wasip1`) run with
//! [`WasmSandboxBuilder::wasi`] and [`WasmSandbox::run`] / [`WasmPool::run`]: arguments,
//! environment and stdin in, exit code, stdout and stderr out, in a fresh instance per run, with
//! clocks, randomness and sleeps from the host and no file system or network (`docs/wasm.md` lists
//! every preview 1 function):
//!
//! ```
//! use hyperlight_wasm::{Error, WasiConfig, WasiRun, WasmSandbox};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // A Rust program using serde_json, built for wasm32-wasip1 (testing/wasi-programs/jsonfmt).
//! let pool = WasmSandbox::builder(hyperlight_testing::wasi_program("jsonfmt"))
//!     .wasi(WasiConfig::default())
//!     .pool(1)
//!     .await?;
//! let run = WasiRun {
//!     args: vec!["jsonfmt".into(), "--compact".into()],
//!     env: vec![],
//!     stdin: br#"{"b": 1, "a": [true]}"#.to_vec(),
//! };
//! let output = pool.run(run).await?;
//! assert_eq!(output.exit_code, 0);
//! assert_eq!(output.stdout, b"{\"a\":[true],\"b\":1}\n");
//! assert!(output.stderr.starts_with(b"jsonfmt: "));
//! # Ok::<(), Error>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]

mod builder;
mod call;
mod error;
mod exports;
mod limits;
mod pool;
mod sandbox;
mod wasi;

pub use builder::WasmSandboxBuilder;
pub use call::WasmCall;
pub use error::Error;
pub use hyperlight_schema::wasm::{
    CoreType, Extern, ExternKind, FuncType, LinkProblem, ProblemKind, Trap,
};
pub use limits::WasmLimits;
pub use pool::WasmPool;
pub use sandbox::WasmSandbox;
pub use wasi::{WasiCall, WasiConfig, WasiLimit, WasiLimits, WasiOutput, WasiRun};
