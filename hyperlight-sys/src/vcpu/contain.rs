//! Containing panics of host code that runs on a vCPU thread: host functions, `tracing`
//! subscribers, and the runtime's own code between them. A panic there must not end the thread
//! (every later request of its sandbox would fail), so each is caught, reported as an error, and
//! its payload disposed of without letting a second panic out.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The message of a panic payload: the `&str` or `String` that `panic!` carries, or a note that
/// the payload is of another type (`std::panic::panic_any`).
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic payload that is not a string".to_string()
    }
}

/// Drops a panic payload whose `Drop` may panic itself: that second panic is caught, and its
/// own payload, which might panic again, is leaked (one allocation per such panic).
pub(crate) fn discard(payload: Box<dyn Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// Runs `f`, turning a panic into its message (the payload is [`discard`]ed).
pub(crate) fn run<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let text = message(&*payload);
        discard(payload);
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct PanicsOnDrop;

    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("dropped");
        }
    }

    #[test]
    fn a_panic_becomes_its_message_even_if_its_payload_panics_when_dropped() {
        assert_eq!(run(|| 7), Ok(7));
        assert_eq!(
            run(|| panic!("plain {}", 1)),
            Err::<(), _>("plain 1".into())
        );
        assert_eq!(run(|| panic!("static")), Err::<(), _>("static".into()));
        let odd = run(|| std::panic::panic_any(PanicsOnDrop));
        assert_eq!(
            odd,
            Err::<(), _>("a panic payload that is not a string".into())
        );
    }
}
