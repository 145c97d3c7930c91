//! `HYPERLIGHT_SECCOMP=off` does not turn the default filter off silently (issue 12, finding 3):
//! the first sandbox built without a filter because of it logs one warning. Its own test
//! binary, since it sets the variable for the whole process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tracing_subscriber::layer::SubscriberExt;

/// Counts warnings that name the variable.
struct Warnings(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, _: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0 += &format!("{value:?}");
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if *event.metadata().level() == tracing::Level::WARN
            && message.0.contains("HYPERLIGHT_SECCOMP=off")
        {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn gettid() -> u64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u64 }
}

#[test]
fn the_operator_override_is_logged_once() {
    std::env::set_var(hyperlight_sys::seccomp::SECCOMP_ENV, "off");
    let warnings = Arc::new(AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(Warnings(warnings.clone()));
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let hostile = hyperlight_testing::guest_path("hostile");
    let mut sandboxes: Vec<_> = (0..2)
        .map(|_| {
            hyperlight_sys::Sandbox::builder(hostile.clone())
                .host_fn("host_tid", gettid)
                .build()
                .unwrap()
        })
        .collect();
    assert_eq!(
        warnings.load(Ordering::SeqCst),
        1,
        "one warning per process"
    );
    // And the override did take effect: the vCPU threads are not filtered.
    for sb in &mut sandboxes {
        let tid = sb
            .call::<u64>("host_call_flood", ("host_tid".to_string(), 1u32))
            .unwrap();
        assert_ne!(tid, gettid());
        assert_eq!(
            hyperlight_sys::seccomp::thread_seccomp_mode(tid as i32),
            Some(0)
        );
    }
}
