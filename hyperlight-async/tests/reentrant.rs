//! A call into a sandbox from within one of its own async host functions (directly, or through
//! another sandbox) fails at once with `Error::Reentrant` instead of waiting for itself.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyperlight_async::{Error, Sandbox};

/// A sandbox a host function reaches, set once it is built; cleared at the end of a test (a
/// sandbox held by its own host function would never be dropped).
type Slot = Arc<Mutex<Option<Sandbox>>>;

/// What the host functions saw, for the test to check.
type Seen = Arc<Mutex<Vec<Result<(), Error>>>>;

fn get(slot: &Slot) -> Sandbox {
    slot.lock().unwrap().clone().expect("the sandbox is set")
}

/// `host_fn_async(name)`: calls `add` on the sandbox in `slot`, then restores and snapshots it,
/// and records what each returned.
fn calling_back(name: &str, slot: &Slot, seen: &Seen) -> hyperlight_async::SandboxBuilder {
    let (slot, seen) = (slot.clone(), seen.clone());
    common::simple().host_fn_async(name, move || {
        let (slot, seen) = (slot.clone(), seen.clone());
        async move {
            let sb = get(&slot);
            let call = sb.call::<i32>("add", (1i32, 2i32)).await.map(drop);
            let restore = sb.restore().await;
            let snapshot = sb.snapshot().await.map(drop);
            seen.lock().unwrap().extend([call, restore, snapshot]);
            1u64
        }
    })
}

fn assert_reentrant(seen: &Seen, sandbox: u64, function: &str) {
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for result in seen.iter() {
        assert!(
            matches!(result, Err(Error::Reentrant { sandbox: s, function: f })
                if *s == sandbox && f == function),
            "{result:?}"
        );
        assert!(!result.as_ref().unwrap_err().poisons());
    }
}

/// The outer timeout only turns a deadlock into a failure.
const DEADLOCK: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_host_function_calling_its_own_sandbox_gets_reentrant_at_once() {
    let (slot, seen) = (Slot::default(), Seen::default());
    let sb = calling_back("call_me", &slot, &seen).build().await.unwrap();
    *slot.lock().unwrap() = Some(sb.clone());
    let outer = sb
        .call::<u64>("call_host_n", ("call_me".to_string(), 1u32))
        .timeout(DEADLOCK)
        .await;
    assert_eq!(outer.unwrap(), 1, "the outer call completes");
    assert_reentrant(&seen, sb.id(), "call_me");
    assert_eq!(sb.call::<i32>("add", (2i32, 3i32)).await.unwrap(), 5);
    slot.lock().unwrap().take();
}

#[tokio::test]
async fn a_call_back_through_another_sandbox_gets_reentrant_at_once() {
    // A's `to_b` calls B's `call_host_n("to_a", 1)`; B's `to_a` calls A.
    let (slot_a, slot_b, seen) = (Slot::default(), Slot::default(), Seen::default());
    let b_seen = Arc::new(Mutex::new(None));
    let a = {
        let (slot_b, b_seen) = (slot_b.clone(), b_seen.clone());
        common::simple().host_fn_async("to_b", move || {
            let (slot_b, b_seen) = (slot_b.clone(), b_seen.clone());
            async move {
                let b = get(&slot_b);
                let r = b
                    .call::<u64>("call_host_n", ("to_a".to_string(), 1u32))
                    .await;
                *b_seen.lock().unwrap() = Some(r);
                1u64
            }
        })
    }
    .build()
    .await
    .unwrap();
    let b = calling_back("to_a", &slot_a, &seen).build().await.unwrap();
    *slot_a.lock().unwrap() = Some(a.clone());
    *slot_b.lock().unwrap() = Some(b.clone());
    let outer = a
        .call::<u64>("call_host_n", ("to_b".to_string(), 1u32))
        .timeout(DEADLOCK)
        .await;
    assert_eq!(outer.unwrap(), 1);
    // B was not re-entered: its call ran, and its host function saw A refuse.
    assert!(matches!(*b_seen.lock().unwrap(), Some(Ok(1))), "{b_seen:?}");
    assert_reentrant(&seen, a.id(), "to_b");
    assert_eq!(a.call::<i32>("add", (1i32, 1i32)).await.unwrap(), 2);
    assert_eq!(b.call::<i32>("add", (2i32, 2i32)).await.unwrap(), 4);
    slot_a.lock().unwrap().take();
    slot_b.lock().unwrap().take();
}
