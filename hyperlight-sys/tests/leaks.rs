//! Sandboxes leave no fd or thread behind.

mod common;

#[test]
fn hundred_sandboxes_leave_no_fd_or_thread() {
    // Warm up process-wide state (the KVM fd, the signal handler) first.
    drop(common::simple().build().unwrap());
    let fds = common::fd_count();
    let threads = common::thread_count();
    for i in 0..100i32 {
        let mut sb = common::simple().build().unwrap();
        assert_eq!(sb.call::<i32>("add", (i, 1i32)).unwrap(), i + 1);
        if i % 10 == 0 {
            // Some are dropped poisoned or mid-restore state too.
            let _ = sb.call::<()>("do_panic", ("x".to_string(),));
        }
    }
    assert_eq!(common::fd_count(), fds);
    assert_eq!(common::thread_count(), threads);
}
