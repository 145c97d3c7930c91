//! Each call has a tracing span with the sandbox id, function, outcome and duration, and the
//! guest's log records are emitted inside it.

mod common;

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name().to_string(), format!("{value:?}")));
    }
}

/// (span id, span name, fields)
type SpanRecord = (u64, String, Vec<(String, String)>);
/// (message, name of the enclosing span)
type EventRecord = (String, Option<String>);

#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<SpanRecord>>>,
    events: Arc<Mutex<Vec<EventRecord>>>,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        self.spans
            .lock()
            .unwrap()
            .push((id.into_u64(), attrs.metadata().name().to_string(), f.0));
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut f = Fields::default();
        values.record(&mut f);
        if let Some(span) = self
            .spans
            .lock()
            .unwrap()
            .iter_mut()
            .find(|s| s.0 == id.into_u64())
        {
            span.2.extend(f.0);
        }
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let message =
            f.0.iter()
                .find(|(k, _)| k == "message")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
        let parent = ctx.event_span(event).map(|s| s.name().to_string());
        self.events.lock().unwrap().push((message, parent));
    }
}

#[tokio::test]
async fn calls_have_spans_and_guest_logs_are_inside_them() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(capture.clone()))
        .unwrap();
    let sb = common::simple().build().await.unwrap();
    sb.call::<()>("log_all_levels", ("inside".to_string(),))
        .await
        .unwrap();
    let _ = sb.call::<u64>("divide_by_zero", (1u64,)).await;
    let spans = capture.spans.lock().unwrap().clone();
    let calls: Vec<_> = spans.iter().filter(|s| s.1 == "sandbox.call").collect();
    assert_eq!(calls.len(), 2, "{spans:?}");
    let field = |span: &SpanRecord, name: &str| {
        span.2
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    for span in &calls {
        assert_eq!(field(span, "sandbox.id"), Some(sb.id().to_string()));
        assert!(field(span, "duration_us").is_some(), "{span:?}");
    }
    assert_eq!(
        field(calls[0], "function").as_deref(),
        Some("log_all_levels")
    );
    assert_eq!(field(calls[0], "outcome").as_deref(), Some("\"ok\""));
    assert!(
        field(calls[1], "outcome").unwrap().contains("divide"),
        "{:?}",
        calls[1]
    );
    let events = capture.events.lock().unwrap().clone();
    let guest: Vec<_> = events
        .iter()
        .filter(|(m, _)| m.ends_with(": inside"))
        .collect();
    assert_eq!(guest.len(), 5, "{events:?}");
    assert!(
        guest
            .iter()
            .all(|(_, parent)| parent.as_deref() == Some("sandbox.call")),
        "{guest:?}"
    );
}
