//! Every guest log event carries the sandbox id and the called function as fields of the event
//! itself (not only of its span), so that one request's guest logs can be found in a busy
//! server's log even by formatters that drop span fields.

mod common;

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name().to_string(), format!("{value:?}")));
    }
}

/// An event's own fields: (name, value).
type EventFields = Vec<(String, String)>;

/// The fields of every event of target `hyperlight_guest`, as the event itself carries them.
#[derive(Clone, Default)]
struct GuestEvents(Arc<Mutex<Vec<EventFields>>>);

impl<S: Subscriber> Layer<S> for GuestEvents {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "hyperlight_guest" {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        self.0.lock().unwrap().push(f.0);
    }
}

fn field<'a>(event: &'a [(String, String)], name: &str) -> Option<&'a str> {
    event
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_log_events_carry_sandbox_id_and_function() {
    let capture = GuestEvents::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(capture.clone()))
        .unwrap();
    let a = common::simple().build().await.unwrap();
    let b = common::simple().build().await.unwrap();
    assert_ne!(a.id(), b.id());
    const CALLS: usize = 20;
    // Both sandboxes log at once, on their own vCPU threads: their events interleave.
    let run = |sandbox: hyperlight_async::Sandbox| async move {
        for i in 0..CALLS {
            let tag = format!("sandbox {} call {i}", sandbox.id());
            sandbox.call::<()>("log_all_levels", (tag,)).await.unwrap();
        }
    };
    tokio::join!(tokio::spawn(run(a.clone())), tokio::spawn(run(b.clone())))
        .0
        .unwrap();
    let events = capture.0.lock().unwrap().clone();
    // Five levels per call (the test subscriber enables them all).
    assert_eq!(events.len(), 2 * CALLS * 5, "{events:?}");
    for sandbox in [&a, &b] {
        let id = sandbox.id().to_string();
        let own: Vec<_> = events
            .iter()
            .filter(|e| field(e, "sandbox.id") == Some(id.as_str()))
            .collect();
        assert_eq!(own.len(), CALLS * 5, "{events:?}");
        let tag = format!("sandbox {id} call ");
        for event in own {
            assert_eq!(
                field(event, "function"),
                Some("log_all_levels"),
                "{event:?}"
            );
            let message = field(event, "message").unwrap();
            assert!(message.contains(&tag), "{event:?}");
        }
    }
}
