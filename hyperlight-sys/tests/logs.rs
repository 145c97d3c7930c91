//! Guest log records arrive as `tracing` events with the right level and message.

mod common;

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(Level, String, String)>>>);

struct MessageVisitor(String);

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut visitor = MessageVisitor(String::new());
        event.record(&mut visitor);
        let meta = event.metadata();
        self.0
            .lock()
            .unwrap()
            .push((*meta.level(), meta.target().to_string(), visitor.0));
    }
}

#[test]
fn guest_logs_become_tracing_events() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    // The vCPU thread emits the events, so the subscriber must be global to see them.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let mut sb = common::simple().build().unwrap();
    sb.call::<()>("log_all_levels", ("hello".to_string(),))
        .unwrap();
    let events = capture.0.lock().unwrap().clone();
    let guest: Vec<_> = events
        .iter()
        .filter(|(_, target, _)| target == "hyperlight_guest")
        .collect();
    for (level, name) in [
        (Level::TRACE, "trace"),
        (Level::DEBUG, "debug"),
        (Level::INFO, "info"),
        (Level::WARN, "warn"),
        (Level::ERROR, "error"),
    ] {
        let want = format!("{name}: hello");
        assert!(
            guest.iter().any(|(l, _, m)| *l == level && *m == want),
            "missing {level} {want:?} in {guest:?}"
        );
    }
}
