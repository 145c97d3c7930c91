//! A `tracing` layer that panics on a guest log record (which runs on the vCPU thread) fails
//! that call with `HostPanic`; the sandbox restores itself before the next call, and another
//! sandbox is unaffected.

mod common;

use hyperlight_async::{Error, SandboxError};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// A guest log record containing this makes the layer panic.
const LOG_BOMB: &str = "subscriber-bomb";

struct Bomb;

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for Bomb {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        if message.0.contains(LOG_BOMB) {
            panic!("a tracing layer panics on a guest log record");
        }
    }
}

#[tokio::test]
async fn a_tracing_layer_that_panics_on_a_guest_log_fails_the_call_and_the_sandbox_restores() {
    // Global: the vCPU thread emits the guest's records.
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Bomb)).unwrap();
    let sb = common::simple().build().await.unwrap();
    let other = common::simple().build().await.unwrap();
    assert_eq!(sb.call::<u64>("counter", ()).await.unwrap(), 1);
    let failed = sb
        .call::<()>("log_all_levels", (LOG_BOMB.to_string(),))
        .await;
    match &failed {
        Err(e @ Error::Sandbox(SandboxError::HostPanic { message, .. })) => {
            assert!(message.contains("guest log record"), "{message}");
            assert!(e.poisons());
        }
        other => panic!("expected HostPanic, got {other:?}"),
    }
    assert_eq!(sb.call::<u64>("counter", ()).await.unwrap(), 1, "restored");
    assert_eq!(
        sb.call::<i32>("call_host_add", (1i32, 2i32)).await.unwrap(),
        3
    );
    assert_eq!(other.call::<i32>("add", (2i32, 2i32)).await.unwrap(), 4);
}
