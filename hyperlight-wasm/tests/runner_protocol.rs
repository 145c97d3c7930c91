//! The Wasm runner guest (`guest/wasm-runner`) at the protocol level, on KVM: the link call and
//! its `ModuleInfo`, export calls with scalars, strings and bytes, sync and async imports, traps
//! and limits, and the typed errors of modules and calls that break the convention.

use hyperlight_async::{Error, ErrorCode, Sandbox, SandboxConfig, SandboxError, ValueType};
use hyperlight_schema::wasm::{
    import_function_name, CoreType, ExternKind, FuncType, ImportDecl, Link, LinkOutcome,
    ModuleInfo, ProblemKind, Trap, LINK_FUNCTION,
};
use hyperlight_schema::wire::{decode_wasm_module, encode_wasm_link};

/// The heap the runner gets: wasmi, the compiled module and its linear memory live there.
const HEAP_SIZE: u64 = 32 << 20;

/// A Wasm page.
const PAGE: u64 = 64 << 10;

/// The module most tests run: scalar, string and bytes exports, a sync import (`env.add`) and an
/// async one returning a string (`env.greet`), one that always fails (`env.fail`), a bump allocator as `cabi_realloc`, and
/// functions that trap or hit a limit.
const MODULE: &str = r#"
(module
  (import "env" "add" (func $add (param i32 i32) (result i32)))
  (import "env" "greet" (func $greet (param i32 i32 i32)))
  (import "env" "fail" (func $fail (param i32) (result i32)))
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 1024))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    global.get $bump
    local.set $p
    global.get $bump
    local.get 3
    i32.add
    i32.const 7
    i32.add
    i32.const -8
    i32.and
    global.set $bump
    local.get $p)
  (func (export "add") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.add)
  (func (export "add_via_host") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    call $add)
  ;; (String) -> String and (Bytes) -> Bytes: returns its argument through a return area at 16.
  (func (export "echo") (param i32 i32) (result i32)
    i32.const 16
    local.get 0
    i32.store
    i32.const 20
    local.get 1
    i32.store
    i32.const 16)
  (func (export "bytes_len") (param i32 i32) (result i32)
    local.get 1)
  ;; (String) -> String through the host's `env.greet`, whose result lands in a return area at 32.
  (func (export "greet_via_host") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.const 32
    call $greet
    i32.const 32)
  ;; `env.greet` with a return area that is not 4-aligned.
  (func (export "greet_misaligned") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.const 33
    call $greet
    i32.const 32)
  ;; `env.greet` with a string out of bounds.
  (func (export "greet_out_of_bounds") (result i32)
    i32.const 65536
    i32.const 200000
    i32.const 32
    call $greet
    i32.const 32)
  (func (export "fail_via_host") (param i32) (result i32)
    local.get 0
    call $fail)
  ;; A return area whose string lies outside linear memory.
  (func (export "bad_result") (result i32)
    i32.const 16
    i32.const -16
    i32.store
    i32.const 20
    i32.const 100
    i32.store
    i32.const 16)
  (func (export "boom")
    unreachable)
  (func (export "div") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.div_s)
  (func (export "spin")
    (loop br 0))
  (func (export "grow") (param i32) (result i32)
    local.get 0
    memory.grow)
  (func $recurse (export "recurse") (param i32) (result i32)
    local.get 0
    i32.const 1
    i32.add
    call $recurse)
)
"#;

fn wasm(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("test WAT compiles")
}

fn decl(name: &str, params: Vec<ValueType>, result: ValueType) -> ImportDecl {
    ImportDecl {
        module: "env".into(),
        name: name.into(),
        params,
        result,
    }
}

/// The host functions the sandboxes offer, as a link request with small limits.
fn link() -> Link {
    Link {
        imports: vec![
            decl("add", vec![ValueType::I32, ValueType::I32], ValueType::I32),
            decl("greet", vec![ValueType::String], ValueType::String),
            decl("fail", vec![ValueType::I32], ValueType::I32),
        ],
        max_memory: 4 * PAGE,
        fuel: Some(10_000_000),
        max_recursion_depth: 1_000,
        max_stack_height: 100_000,
        wasi: false,
    }
}

/// A sandbox of the runner with `module`, serving `env.add` (sync), `env.greet` (async) and
/// `env.fail` (an error).
async fn sandbox(module: Vec<u8>) -> Sandbox {
    Sandbox::builder(env!("HYPERLIGHT_WASM_RUNNER"))
        .config(SandboxConfig {
            heap_size: HEAP_SIZE,
            ..Default::default()
        })
        .module(module)
        .host_fn(&import_function_name("env", "add"), |a: i32, b: i32| {
            a.wrapping_add(b)
        })
        .host_fn_async(
            &import_function_name("env", "greet"),
            |name: String| async move {
                tokio::task::yield_now().await;
                format!("hello {name}")
            },
        )
        .host_fn_async(&import_function_name("env", "fail"), |_: i32| async {
            Err::<i32, _>("unavailable")
        })
        .build()
        .await
        .expect("runner sandbox builds")
}

async fn link_call(sandbox: &Sandbox, link: &Link) -> Result<ModuleInfo, Error> {
    let answer: Vec<u8> = sandbox
        .call(LINK_FUNCTION, (encode_wasm_link(link),))
        .await?;
    Ok(decode_wasm_module(&answer).expect("the runner's answer decodes"))
}

/// A sandbox of the runner with `text` linked, and the restore point moved past the link.
async fn linked(text: &str) -> (Sandbox, ModuleInfo) {
    let sandbox = sandbox(wasm(text)).await;
    let info = link_call(&sandbox, &link()).await.unwrap();
    assert_eq!(info.outcome, LinkOutcome::Linked, "{info:?}");
    sandbox.rebase().await.unwrap();
    (sandbox, info)
}

fn guest_error<T: std::fmt::Debug>(result: Result<T, Error>) -> (ErrorCode, String) {
    match result {
        Err(Error::Sandbox(SandboxError::GuestCall { code, message })) => (code, message),
        other => panic!("expected a guest error, got {other:?}"),
    }
}

fn assert_trap<T: std::fmt::Debug>(result: Result<T, Error>, trap: Trap) {
    let (code, message) = guest_error(result);
    assert_eq!(code, ErrorCode::WasmTrap, "{message}");
    assert_eq!(
        Trap::from_message(&message).map(|t| t.0),
        Some(trap),
        "{message}"
    );
}

#[tokio::test]
async fn link_describes_the_module() {
    let (sandbox, info) = linked(MODULE).await;
    assert!(info.problems.is_empty() && info.message.is_empty());
    let names: Vec<(&str, &str)> = info
        .imports
        .iter()
        .map(|i| (i.module.as_str(), i.name.as_str()))
        .collect();
    assert_eq!(names, [("env", "add"), ("env", "greet"), ("env", "fail")]);
    let add = info.exports.iter().find(|e| e.name == "add").unwrap();
    assert_eq!(add.kind, ExternKind::Func);
    assert_eq!(
        add.ty,
        Some(FuncType {
            params: vec![CoreType::I32; 2],
            results: vec![CoreType::I32]
        })
    );
    let memory = info.exports.iter().find(|e| e.name == "memory").unwrap();
    assert_eq!((memory.kind, &memory.ty), (ExternKind::Memory, &None));
    // One link per sandbox.
    let (code, message) = guest_error(link_call(&sandbox, &link()).await);
    assert_eq!(code, ErrorCode::GuestFunctionFailed);
    assert!(message.contains("already linked"), "{message}");
    // A request that does not decode.
    let (code, _) = guest_error(
        sandbox
            .call::<Vec<u8>>(LINK_FUNCTION, (vec![1u8, 2, 3],))
            .await,
    );
    assert_eq!(code, ErrorCode::MalformedMessage);
}

#[tokio::test]
async fn scalar_string_and_bytes_exports() {
    let (sandbox, _) = linked(MODULE).await;
    assert_eq!(sandbox.call::<i32>("add", (1i32, 2i32)).await.unwrap(), 3);
    // u32 arguments lower to i32 too.
    assert_eq!(
        sandbox.call::<u32>("add", (u32::MAX, 1u32)).await.unwrap(),
        0
    );
    let echoed: String = sandbox.call("echo", ("héllo".to_string(),)).await.unwrap();
    assert_eq!(echoed, "héllo");
    let bytes: Vec<u8> = sandbox.call("echo", (vec![0u8, 255, 7],)).await.unwrap();
    assert_eq!(bytes, [0, 255, 7]);
    let len: u32 = sandbox.call("bytes_len", (vec![9u8; 1000],)).await.unwrap();
    assert_eq!(len, 1000);
    // A result out of bounds is an ABI error, not a panic of the runner.
    let (code, message) = guest_error(sandbox.call::<String>("bad_result", ()).await);
    assert_eq!(code, ErrorCode::WasmAbi, "{message}");
    assert_eq!(sandbox.call::<i32>("add", (5i32, 6i32)).await.unwrap(), 11);
}

#[tokio::test]
async fn imports_call_the_host() {
    let (sandbox, _) = linked(MODULE).await;
    assert_eq!(
        sandbox
            .call::<i32>("add_via_host", (40i32, 2i32))
            .await
            .unwrap(),
        42
    );
    let greeting: String = sandbox
        .call("greet_via_host", ("wasm".to_string(),))
        .await
        .unwrap();
    assert_eq!(greeting, "hello wasm");
    // A host function's error reaches the caller as is, not as a trap.
    let (code, message) = guest_error(sandbox.call::<i32>("fail_via_host", (1i32,)).await);
    assert_eq!(code, ErrorCode::HostFunctionFailed, "{message}");
    assert!(message.contains("unavailable"), "{message}");
    // A module that hands an import bad pointers gets an ABI error; the runner does not panic.
    for export in ["greet_misaligned", "greet_out_of_bounds"] {
        let args = if export == "greet_misaligned" {
            vec![hyperlight_async::Value::String("x".into())]
        } else {
            vec![]
        };
        let result = sandbox.call_value(export, args, ValueType::String).await;
        let (code, message) = guest_error(result);
        assert_eq!(code, ErrorCode::WasmAbi, "{export}: {message}");
    }
    assert_eq!(
        sandbox
            .call::<i32>("add_via_host", (1i32, 2i32))
            .await
            .unwrap(),
        3
    );
}

#[tokio::test]
async fn wrong_typed_calls_are_refused_before_wasm_runs() {
    let (sandbox, _) = linked(MODULE).await;
    let (code, message) = guest_error(sandbox.call::<i32>("add", (1i64, 2i64)).await);
    assert_eq!(code, ErrorCode::WrongArgumentType);
    assert!(
        message.contains("add") && message.contains("(param i32 i32) (result i32)"),
        "{message}"
    );
    let (code, _) = guest_error(sandbox.call::<i64>("add", (1i32, 2i32)).await);
    assert_eq!(code, ErrorCode::WrongReturnType);
    let (code, _) = guest_error(sandbox.call::<i32>("no_such_export", ()).await);
    assert_eq!(code, ErrorCode::UnknownFunction);
}

#[tokio::test]
async fn traps_are_typed_and_the_sandbox_recovers() {
    let (sandbox, _) = linked(MODULE).await;
    assert_trap(sandbox.call::<()>("boom", ()).await, Trap::Unreachable);
    sandbox.restore().await.unwrap();
    assert_eq!(sandbox.call::<i32>("add", (1i32, 2i32)).await.unwrap(), 3);
    assert_trap(
        sandbox.call::<i32>("div", (1i32, 0i32)).await,
        Trap::IntegerDivisionByZero,
    );
    assert_trap(
        sandbox.call::<i32>("div", (i32::MIN, -1i32)).await,
        Trap::IntegerOverflow,
    );
    sandbox.restore().await.unwrap();
    assert_eq!(sandbox.call::<i32>("div", (7i32, 2i32)).await.unwrap(), 3);
}

#[tokio::test]
async fn limits_stop_the_module() {
    let (sandbox, _) = linked(MODULE).await;
    // Fuel: each call starts with the full amount, so calls after a spin still run.
    assert_trap(sandbox.call::<()>("spin", ()).await, Trap::OutOfFuel);
    assert_eq!(sandbox.call::<i32>("add", (1i32, 2i32)).await.unwrap(), 3);
    // Memory: 2 pages, at most 4.
    assert_eq!(sandbox.call::<i32>("grow", (1i32,)).await.unwrap(), 2);
    assert_trap(
        sandbox.call::<i32>("grow", (2i32,)).await,
        Trap::MemoryLimit,
    );
    // Recursion.
    assert_trap(
        sandbox.call::<i32>("recurse", (0i32,)).await,
        Trap::StackOverflow,
    );
    sandbox.restore().await.unwrap();
    assert_eq!(sandbox.call::<i32>("grow", (0i32,)).await.unwrap(), 2);
}

#[tokio::test]
async fn invalid_modules_are_reported() {
    let sandbox = sandbox(b"\0asm\x01\0\0\0not a section".to_vec()).await;
    let info = link_call(&sandbox, &link()).await.unwrap();
    assert_eq!(info.outcome, LinkOutcome::Invalid);
    assert!(!info.message.is_empty());
    // An import returning a string needs `cabi_realloc`.
    let text = r#"(module
        (import "env" "greet" (func (param i32 i32 i32)))
        (memory (export "memory") 1))"#;
    let sandbox = self::sandbox(wasm(text)).await;
    let info = link_call(&sandbox, &link()).await.unwrap();
    assert_eq!(info.outcome, LinkOutcome::Invalid);
    assert!(info.message.contains("cabi_realloc"), "{}", info.message);
    // The runner's own names are reserved.
    let text = r#"(module (func (export "__hyperlight_wasm_link")))"#;
    let sandbox = self::sandbox(wasm(text)).await;
    let info = link_call(&sandbox, &link()).await.unwrap();
    assert_eq!(info.outcome, LinkOutcome::Invalid);
}

#[tokio::test]
async fn unlinkable_imports_are_listed_together() {
    let text = r#"(module
        (import "env" "nope" (func (param i32)))
        (import "env" "add" (func (param i64) (result i64)))
        (import "env" "mem" (memory 1)))"#;
    let sandbox = sandbox(wasm(text)).await;
    let info = link_call(&sandbox, &link()).await.unwrap();
    assert_eq!(info.outcome, LinkOutcome::Unlinkable);
    let problems: Vec<(&str, ProblemKind)> = info
        .problems
        .iter()
        .map(|p| (p.name.as_str(), p.kind))
        .collect();
    assert_eq!(
        problems,
        [
            ("nope", ProblemKind::Missing),
            ("add", ProblemKind::Mistyped),
            ("mem", ProblemKind::Unsupported)
        ]
    );
    let mistyped = &info.problems[1];
    assert_eq!(
        mistyped.declared,
        Some(FuncType {
            params: vec![CoreType::I64],
            results: vec![CoreType::I64]
        })
    );
    assert_eq!(
        mistyped.registered,
        Some(FuncType {
            params: vec![CoreType::I32; 2],
            results: vec![CoreType::I32]
        })
    );
    // Nothing was instantiated, so nothing is exported.
    let (code, _) = guest_error(sandbox.call::<()>("anything", ()).await);
    assert_eq!(code, ErrorCode::UnknownFunction);
}

#[tokio::test]
async fn a_memory_past_the_limit_is_refused_at_instantiation() {
    let text = r#"(module (memory (export "memory") 100))"#;
    let sandbox = sandbox(wasm(text)).await;
    let info = link_call(&sandbox, &link()).await.unwrap();
    assert_eq!(info.outcome, LinkOutcome::InitTrapped, "{info:?}");
    assert_eq!(
        Trap::from_message(&info.message).map(|t| t.0),
        Some(Trap::MemoryLimit),
        "{}",
        info.message
    );
}

#[tokio::test]
async fn a_trapping_start_function_is_reported() {
    let text = r#"(module (func $start unreachable) (start $start))"#;
    let sandbox = sandbox(wasm(text)).await;
    let info = link_call(&sandbox, &link()).await.unwrap();
    assert_eq!(info.outcome, LinkOutcome::InitTrapped);
    assert_eq!(
        Trap::from_message(&info.message).map(|t| t.0),
        Some(Trap::Unreachable),
        "{}",
        info.message
    );
}

/// wasmi's frames must live on its own heap-allocated stack, not on the guest's: with its
/// tail-call dispatch built soft-float (handlers ending in calls, docs/wasm.md), 5,000 levels of
/// `call` or 1,500 of `call_indirect` overflowed a 256 KiB guest stack: a fault of the guest, not
/// a trap. The runner's SSE2 target ends them in jumps.
#[tokio::test]
async fn unbounded_recursion_traps_without_overflowing_the_guest_stack() {
    let text = r#"(module
      (type $t (func (param i32) (result i32)))
      (table 1 funcref)
      (elem (i32.const 0) $indirect)
      (func $direct (export "direct") (param i32) (result i32)
        local.get 0
        call $direct)
      (func $indirect (export "indirect") (param i32) (result i32)
        local.get 0
        i32.const 0
        call_indirect (type $t)))"#;
    let sandbox = sandbox(wasm(text)).await;
    let unbounded = Link {
        max_recursion_depth: u32::MAX,
        max_stack_height: 1_000_000,
        fuel: None,
        ..link()
    };
    let info = link_call(&sandbox, &unbounded).await.unwrap();
    assert_eq!(info.outcome, LinkOutcome::Linked, "{info:?}");
    for export in ["direct", "indirect"] {
        assert_trap(
            sandbox.call::<i32>(export, (0i32,)).await,
            Trap::StackOverflow,
        );
    }
}
