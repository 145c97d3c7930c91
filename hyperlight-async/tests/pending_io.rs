//! The async sandbox's automatic restore never finishes a guest's pending `in` on top of the
//! restored memory (issue 12, finding 1; the blocking paths are in hyperlight-sys's
//! `tests/pending_io.rs`), nor does a pool's restore between calls.

use hyperlight_async::{Sandbox, SandboxPool};

/// What every byte of the hostile guest's marker page holds after init.
const MARKER: u64 = 0xa5a5_a5a5_a5a5_a5a5;
/// One of the sixteen protocol ports, open to ring 3 in both directions.
const OPEN_PORT: u32 = 0x100;

/// The first and last words of the marker page.
async fn marker_words(sb: &Sandbox, page: u64) -> [u64; 2] {
    let mut words = [0; 2];
    for (word, addr) in words.iter_mut().zip([page, page + 4096 - 8]) {
        *word = sb.call::<u64>("read_addr", (addr,)).await.unwrap();
    }
    words
}

#[tokio::test]
async fn the_automatic_restore_never_finishes_a_pending_in() {
    let sb = Sandbox::builder(hyperlight_testing::guest_path("hostile"))
        .build()
        .await
        .unwrap();
    let page = sb.call::<u64>("marker_page", ()).await.unwrap();
    assert_eq!(marker_words(&sb, page).await, [MARKER; 2]);
    for _ in 0..3 {
        let r = sb.call::<()>("ins", (OPEN_PORT, page, 4096u32)).await;
        assert!(r.is_err(), "an `in` ends the call");
        // The next call restores first: the page is as init left it.
        assert_eq!(marker_words(&sb, page).await, [MARKER; 2]);
    }
}

#[tokio::test]
async fn a_pool_never_finishes_a_pending_in() {
    let builder = Sandbox::builder(hyperlight_testing::guest_path("hostile"));
    let pool = SandboxPool::new(builder, 1).await.unwrap();
    let page = pool.call::<u64>("marker_page", ()).await.unwrap();
    for _ in 0..3 {
        let r = pool.call::<()>("ins", (OPEN_PORT, page, 4096u32)).await;
        assert!(r.is_err(), "an `in` ends the call");
        for addr in [page, page + 4096 - 8] {
            assert_eq!(
                pool.call::<u64>("read_addr", (addr,)).await.unwrap(),
                MARKER
            );
        }
    }
}
