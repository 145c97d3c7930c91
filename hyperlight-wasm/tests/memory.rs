//! Linear memories that grow in place: the runner moves a module's one memory into a buffer of
//! the memory's whole reach (`guest/wasm-runner/src/memory.rs`). The module must see the memory it
//! declared (size, maximum, data, growth zeroed), the host only the imports it declared, and what
//! a call grew and wrote must be gone for the next pool call. Modules the runner leaves as they
//! are must run as before.

mod common;

use hyperlight_wasm::{Error, Trap, WasmLimits, WasmSandbox};

const PAGE: i32 = 1 << 16;

fn module(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("test WAT compiles")
}

fn trap_of<T: std::fmt::Debug>(result: Result<T, Error>) -> Trap {
    match result {
        Err(Error::Trap { trap, .. }) => trap,
        other => panic!("expected a trap, got {other:?}"),
    }
}

/// A module with a function import, an exported memory of 2 pages (at most 4) and a data
/// segment: it grows, stores and loads.
const GROWER: &str = r#"
(module
  (import "env" "double" (func $double (param i32) (result i32)))
  (memory (export "memory") 2 4)
  (data (i32.const 16) "hi")
  (func (export "size") (result i32) (memory.size))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  ;; Grows by a page and stores `double(v)` 8 bytes into it; the size before, in pages.
  (func (export "grow_and_store") (param $v i32) (result i32) (local $old i32)
    (local.set $old (memory.grow (i32.const 1)))
    (i32.store (i32.add (i32.mul (local.get $old) (i32.const 65536)) (i32.const 8))
      (call $double (local.get $v)))
    (local.get $old))
  ;; Grows by a page and loads the word 8 bytes into it.
  (func (export "grow_and_load") (result i32) (local $old i32)
    (local.set $old (memory.grow (i32.const 1)))
    (i32.load (i32.add (i32.mul (local.get $old) (i32.const 65536)) (i32.const 8))))
  (func (export "peek") (param i32) (result i32) (i32.load8_u (local.get 0))))
"#;

fn grower() -> hyperlight_wasm::WasmSandboxBuilder {
    WasmSandbox::builder(module(GROWER)).import("env", "double", |x: i32| x * 2)
}

#[tokio::test]
async fn a_memory_keeps_its_type_data_and_growth() {
    let kept = grower().build().await.unwrap();
    // The host sees the module's one import, not the runner's.
    assert_eq!(kept.imports().len(), 1);
    assert_eq!(kept.imports()[0].name, "double");
    assert_eq!(kept.call::<i32>("size", ()).await.unwrap(), 2);
    assert_eq!(
        kept.call::<i32>("peek", (16i32,)).await.unwrap(),
        i32::from(b'h')
    );
    assert_eq!(
        kept.call::<i32>("grow_and_store", (21i32,)).await.unwrap(),
        2
    );
    assert_eq!(kept.call::<i32>("size", ()).await.unwrap(), 3);
    assert_eq!(kept.call::<i32>("peek", (2 * PAGE + 8,)).await.unwrap(), 42);
    // The declared maximum (4 pages) stops growth with -1, not a trap.
    assert_eq!(kept.call::<i32>("grow", (1i32,)).await.unwrap(), 3);
    assert_eq!(kept.call::<i32>("grow", (1i32,)).await.unwrap(), -1);
    assert_eq!(
        trap_of(kept.call::<i32>("peek", (4 * PAGE,)).await),
        Trap::MemoryOutOfBounds
    );
}

#[tokio::test]
async fn what_a_pool_call_grew_is_gone_for_the_next() {
    let pool = grower().pool(2).await.unwrap();
    for _ in 0..4 {
        // Every call starts from 2 pages, whatever the one before grew and wrote there.
        assert_eq!(
            pool.call::<i32>("grow_and_store", (21i32,)).await.unwrap(),
            2
        );
        assert_eq!(pool.call::<i32>("size", ()).await.unwrap(), 2);
        // The page grown again reads zero where a call before stored 42.
        assert_eq!(pool.call::<i32>("grow_and_load", ()).await.unwrap(), 0);
        assert_eq!(
            trap_of(pool.call::<i32>("peek", (2 * PAGE + 8,)).await),
            Trap::MemoryOutOfBounds
        );
    }
}

#[tokio::test]
async fn the_limit_below_the_declared_maximum_traps() {
    let sandbox = grower()
        .limits(WasmLimits {
            max_memory: 3 << 16,
            ..WasmLimits::default()
        })
        .build()
        .await
        .unwrap();
    assert_eq!(sandbox.call::<i32>("grow", (1i32,)).await.unwrap(), 2);
    assert_eq!(
        trap_of(sandbox.call::<i32>("grow", (1i32,)).await),
        Trap::MemoryLimit
    );
}

#[tokio::test]
async fn a_memory_neither_exported_nor_imported_alongside_works() {
    // No import section: the runner adds one.
    let sandbox = WasmSandbox::builder(module(
        r#"(module
             (memory 1)
             (data (i32.const 16) "hi")
             (func (export "peek") (param i32) (result i32) (i32.load8_u (local.get 0))))"#,
    ))
    .build()
    .await
    .unwrap();
    assert!(sandbox.imports().is_empty());
    assert_eq!(
        sandbox.call::<i32>("peek", (17i32,)).await.unwrap(),
        i32::from(b'i')
    );
    assert_eq!(sandbox.call::<i32>("peek", (PAGE - 1,)).await.unwrap(), 0);
    assert_eq!(
        trap_of(sandbox.call::<i32>("peek", (PAGE,)).await),
        Trap::MemoryOutOfBounds
    );
}

#[tokio::test]
async fn modules_left_as_they_are_still_run() {
    // Two memories (multi-memory): not moved.
    let two = WasmSandbox::builder(module(
        r#"(module
             (memory 1)
             (memory $b 1 2)
             (func (export "grow_b") (result i32) (memory.grow $b (i32.const 1)))
             (func (export "size_a") (result i32) (memory.size 0)))"#,
    ))
    .build()
    .await
    .unwrap();
    assert_eq!(two.call::<i32>("grow_b", ()).await.unwrap(), 1);
    assert_eq!(two.call::<i32>("grow_b", ()).await.unwrap(), -1);
    assert_eq!(two.call::<i32>("size_a", ()).await.unwrap(), 1);
    // An import from the runner's own import module: not moved, and linked as the host's.
    let own = WasmSandbox::builder(module(
        r#"(module
             (import "__hyperlight" "memory" (func $f (param i32) (result i32)))
             (memory (export "memory") 1)
             (func (export "call") (param i32) (result i32) (call $f (local.get 0))))"#,
    ))
    .import("__hyperlight", "memory", |x: i32| x + 1)
    .build()
    .await
    .unwrap();
    assert_eq!(own.imports().len(), 1);
    assert_eq!(own.call::<i32>("call", (41i32,)).await.unwrap(), 42);
}

#[tokio::test]
async fn an_invalid_module_with_a_memory_is_still_invalid() {
    // A valid memory section, then a function body that does not type-check.
    let err = common::build_error(WasmSandbox::builder(module(
        r#"(module
             (memory 1)
             (func (export "bad") (result i32) (i64.const 1)))"#,
    )))
    .await;
    assert!(matches!(err, Error::InvalidModule { .. }), "{err:?}");
}
