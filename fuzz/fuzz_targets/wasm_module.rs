//! End to end on KVM: arbitrary module bytes through the WebAssembly runner. The input is a
//! module (seeded with the Rust-built test modules, which libFuzzer then mutates); the target
//! builds a `WasmSandbox` of it (validation, compilation, linking and instantiation all run in
//! the guest) with two imports registered (`env.host_add (i32, i32) -> i32` and
//! `env.host_echo (String) -> String`), then calls up to 8 of its function exports whose core
//! types are scalars, with arguments taken from the input's last bytes, under fuel and a
//! timeout.
//!
//! Checks, besides "never panics": the build ends in `Ok` or a typed error of the runner or the
//! sandbox, never `Error::Protocol` (the runner must always answer well-formed messages, whatever
//! the module); every call ends in a value of the requested type or a typed error; after any
//! failed call the same sandbox answers the next call (it was restored).
#![no_main]

use std::cell::RefCell;
use std::time::Duration;

use hyperlight_async::{OnDenied, SandboxConfig, SeccompPolicy, Value, ValueType};
use hyperlight_wasm::{CoreType, Error, ExternKind, WasmLimits, WasmSandbox};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static RUNTIME: RefCell<tokio::runtime::Runtime> = RefCell::new(
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
    );
}

/// The wire type a scalar core type is called with, and a value of it from `seed`.
fn scalar(ty: CoreType, seed: u64) -> Option<(ValueType, Value)> {
    Some(match ty {
        CoreType::I32 => (ValueType::I32, Value::I32(seed as i32)),
        CoreType::I64 => (ValueType::I64, Value::I64(seed as i64)),
        CoreType::F32 => (ValueType::F32, Value::F32(f32::from_bits(seed as u32))),
        CoreType::F64 => (ValueType::F64, Value::F64(f64::from_bits(seed))),
        CoreType::Other => return None,
    })
}

fn check_build(result: &Result<WasmSandbox, Error>) {
    match result {
        Ok(_)
        | Err(Error::InvalidModule { .. })
        | Err(Error::Link { .. })
        | Err(Error::InitTrapped { .. })
        | Err(Error::Sandbox(_)) => {}
        Err(other) => panic!("building a sandbox of a hostile module failed with {other:?}"),
    }
}

async fn run(data: &[u8]) {
    // AddressSanitizer maps memory with MAP_FIXED on any thread, the vCPU thread included (see
    // fuzz/src/kvm.rs).
    let config = SandboxConfig {
        heap_size: 48 << 20,
        seccomp: SeccompPolicy::Enabled {
            extra: vec![libc::SYS_mmap],
            on_denied: OnDenied::default(),
        },
        ..SandboxConfig::default()
    };
    let built = WasmSandbox::builder(data.to_vec())
        .config(config)
        .limits(WasmLimits {
            max_memory: 4 << 20,
            fuel: Some(1_000_000),
            ..WasmLimits::default()
        })
        .default_timeout(Duration::from_secs(2))
        .import("env", "host_add", |a: i32, b: i32| a.wrapping_add(b))
        .import("env", "host_echo", |s: String| s)
        .build()
        .await;
    check_build(&built);
    let Ok(sandbox) = built else { return };
    let tail = data.get(data.len().saturating_sub(8)..).unwrap_or_default();
    let seed = tail.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
    let exports: Vec<_> = sandbox
        .exports()
        .iter()
        .filter(|e| e.kind == ExternKind::Func)
        .filter_map(|e| Some((e.name.clone(), e.ty.clone()?)))
        .take(8)
        .collect();
    for (name, ty) in exports {
        let Some(args) = ty
            .params
            .iter()
            .enumerate()
            .map(|(i, &t)| scalar(t, seed.rotate_left(i as u32 * 7)).map(|(_, v)| v))
            .collect::<Option<Vec<Value>>>()
        else {
            continue;
        };
        let result = match ty.results.as_slice() {
            [] => ValueType::Void,
            [one] => match scalar(*one, 0) {
                Some((t, _)) => t,
                None => continue,
            },
            _ => continue,
        };
        match sandbox.call_value(&name, args.clone(), result).await {
            Ok(value) => assert_eq!(value.value_type(), result, "export {name}"),
            Err(Error::Trap { .. } | Error::Abi { .. } | Error::Sandbox(_)) => {
                // Restored: the same call runs again from the instantiated state.
                let again = sandbox.call_value(&name, args, result).await;
                assert!(
                    !matches!(again, Err(Error::UnknownExport { .. } | Error::ExportType { .. })),
                    "export {name} after a failed call: {again:?}"
                );
            }
            Err(other) => panic!("export {name}: a checked call failed with {other:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    RUNTIME.with(|runtime| runtime.borrow().block_on(run(data)));
});
