//! Panics of host code on the vCPU thread, shared by `host_panics.rs` and
//! `host_panics_backtrace.rs` (the same tests with `RUST_BACKTRACE=1`, under which the default
//! panic hook captures a backtrace on the dying thread before it unwinds).
//!
//! The tests install one global `tracing` subscriber (guest logs and call spans are handled on
//! the vCPU thread, so a thread-local default would not see them) whose layer panics only on
//! what these tests mark: guest log records that contain [`LOG_BOMB`], and entering the span of
//! a call of [`SPAN_BOMB`].

use std::collections::HashSet;
use std::sync::{Mutex, Once};
use std::time::Duration;

use hyperlight_sys::{Error, Sandbox};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// A guest log record containing this makes the layer panic.
pub const LOG_BOMB: &str = "subscriber-bomb";
/// Entering the span of a call of this guest function makes the layer panic.
pub const SPAN_BOMB: &str = "nop";

/// The longest any call or restore here may take before the test calls it a hang.
const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0 += &format!("{}={value:?} ", field.name());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0 += &format!("{}={value} ", field.name());
    }
}

/// Panics on marked guest log records and on entering marked call spans.
#[derive(Default)]
struct Bomb {
    marked_spans: Mutex<HashSet<u64>>,
}

impl<S: Subscriber> Layer<S> for Bomb {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut text = Text::default();
        event.record(&mut text);
        if event.metadata().target() == "hyperlight_guest" && text.0.contains(LOG_BOMB) {
            panic!("a tracing layer panics on a guest log record");
        }
    }
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut text = Text::default();
        attrs.record(&mut text);
        if text.0.contains(&format!("function={SPAN_BOMB} ")) {
            self.marked_spans.lock().unwrap().insert(id.into_u64());
        }
    }
    fn on_enter(&self, id: &Id, _: Context<'_, S>) {
        if self.marked_spans.lock().unwrap().contains(&id.into_u64()) {
            panic!("a tracing layer panics entering a call span");
        }
    }
}

/// Installs the panicking layer (and, with `backtrace`, sets `RUST_BACKTRACE=1`, which the
/// panic hook reads once per process) before the first sandbox of the process.
pub fn init(backtrace: bool) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if backtrace {
            std::env::set_var("RUST_BACKTRACE", "1");
        }
        let subscriber = tracing_subscriber::registry().with(Bomb::default());
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

/// Runs `f` on a thread of its own and returns its result, failing the test if it takes longer
/// than [`DEADLINE`] (a hang).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = flume::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|e| panic!("{what} did not return within {DEADLINE:?}: {e:?}"))
}

/// A payload whose `Drop` panics: `catch_unwind` catches the first panic, dropping its payload
/// panics again.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("the panic payload panics when dropped");
    }
}

fn builder() -> hyperlight_sys::SandboxBuilder {
    Sandbox::builder(hyperlight_testing::simple_guest())
        .host_fn("host_add", |a: i32, b: i32| a.wrapping_add(b))
        .host_fn("bomb", |_: i32| -> i32 {
            std::panic::panic_any(PanicsOnDrop)
        })
}

/// After a contained panic: the sandbox answers right away (no hang), correctly after a
/// restore, and `other` (built before the panic) is unaffected.
fn works_after(mut sb: Sandbox, other: Sandbox) {
    let (mut sb, restored) = within("restore", move || {
        let r = sb.restore();
        (sb, r)
    });
    restored.expect("restore after the panic");
    let (_, sum) = within("a call after restore", move || {
        let r = sb.call::<i32>("call_host_add", (40i32, 2i32));
        (sb, r)
    });
    assert_eq!(sum.unwrap(), 42);
    let (_, other) = within("a call on another sandbox", move || {
        let mut other = other;
        let r = other.call::<i32>("add", (2i32, 3i32));
        (other, r)
    });
    assert_eq!(other.unwrap(), 5);
}

/// A sync host function panics with a payload whose `Drop` panics: the guest receives the
/// ordinary "host function panicked" error, as for any panic, and the vCPU thread lives on.
pub fn host_function_panic_whose_payload_panics_on_drop() {
    let mut sb = builder().build().unwrap();
    let other = builder().build().unwrap();
    let (sb, seen) = within("the panicking call", move || {
        let r = sb.call::<String>("call_host_raw", ("bomb".to_string(), 1i32));
        (sb, r)
    });
    let seen = seen.expect("the call completes: the guest got the host function's error");
    assert!(
        seen.starts_with("err:HostFunctionFailed") && seen.contains("panicked"),
        "{seen}"
    );
    // The thread still runs the sandbox, no restore needed; then the shared checks.
    let (sb, again) = within("the next call", move || {
        let mut sb = sb;
        let r = sb.call::<i32>("call_host_add", (1i32, 2i32));
        (sb, r)
    });
    assert_eq!(again.unwrap(), 3);
    works_after(sb, other);
}

/// A tracing layer panics on a guest log record (the guest chooses when records are emitted):
/// the call fails with [`Error::HostPanic`], the sandbox is poisoned until restored.
pub fn tracing_layer_panics_on_a_guest_log() {
    let mut sb = builder().build().unwrap();
    let other = builder().build().unwrap();
    let (sb, failed) = within("the call whose log panics", move || {
        let r = sb.call::<()>("log_all_levels", (LOG_BOMB.to_string(),));
        (sb, r)
    });
    match failed {
        Err(Error::HostPanic { message, .. }) => {
            assert!(message.contains("guest log record"), "{message}")
        }
        other => panic!("expected HostPanic, got {other:?}"),
    }
    let (sb, poisoned) = within("the next call", move || {
        let mut sb = sb;
        let r = sb.call::<i32>("add", (1i32, 1i32));
        (sb, r)
    });
    assert!(
        matches!(poisoned, Err(Error::Poisoned { .. })),
        "{poisoned:?}"
    );
    works_after(sb, other);
}

/// A tracing layer panics entering the span of a call, on the vCPU thread, outside any host
/// function: the call fails with [`Error::HostPanic`], and the restore builds a new VM.
pub fn tracing_layer_panics_entering_a_call_span() {
    let mut sb = builder().build().unwrap();
    let other = builder().build().unwrap();
    let (sb, failed) = within("the call whose span panics", move || {
        let r = sb.call::<()>(SPAN_BOMB, ());
        (sb, r)
    });
    match failed {
        Err(Error::HostPanic { message, .. }) => {
            assert!(message.contains("call span"), "{message}")
        }
        other => panic!("expected HostPanic, got {other:?}"),
    }
    works_after(sb, other);
}

/// The `#[test]` functions of the scenarios above; `$backtrace` says whether to run them with
/// `RUST_BACKTRACE=1`.
#[macro_export]
macro_rules! panic_tests {
    ($backtrace:expr) => {
        #[test]
        fn a_host_function_panic_whose_payload_panics_on_drop_is_contained() {
            panics::init($backtrace);
            panics::host_function_panic_whose_payload_panics_on_drop();
        }

        #[test]
        fn a_tracing_layer_that_panics_on_a_guest_log_fails_the_call_not_the_thread() {
            panics::init($backtrace);
            panics::tracing_layer_panics_on_a_guest_log();
        }

        #[test]
        fn a_tracing_layer_that_panics_entering_a_call_span_fails_the_call_not_the_thread() {
            panics::init($backtrace);
            panics::tracing_layer_panics_entering_a_call_span();
        }
    };
}
