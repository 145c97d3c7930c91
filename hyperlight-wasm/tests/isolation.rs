//! Isolation between pool calls on KVM: what one call writes to linear memory, globals or tables
//! is gone for the next (with a positive control: without a restore it stays).

mod common;

#[tokio::test]
async fn pool_calls_start_from_the_instantiated_state() {
    // Positive control: one sandbox without restores keeps every kind of state.
    let kept = common::wat("state").build().await.unwrap();
    assert_eq!(kept.call::<i32>("bump_global", ()).await.unwrap(), 1);
    assert_eq!(kept.call::<i32>("bump_global", ()).await.unwrap(), 2);
    kept.call::<()>("store", (64i32, 0x5ec7e7i32))
        .await
        .unwrap();
    assert_eq!(kept.call::<i32>("load", (64i32,)).await.unwrap(), 0x5ec7e7);
    kept.call::<()>("set_slot", ()).await.unwrap();
    assert_eq!(kept.call::<i32>("slot_is_set", ()).await.unwrap(), 1);
    // ... and a restore clears all of it.
    kept.restore().await.unwrap();
    assert_eq!(kept.call::<i32>("bump_global", ()).await.unwrap(), 1);
    assert_eq!(kept.call::<i32>("load", (64i32,)).await.unwrap(), 0);
    assert_eq!(kept.call::<i32>("slot_is_set", ()).await.unwrap(), 0);

    let pool = common::wat("state").pool(2).await.unwrap();
    for _ in 0..4 {
        assert_eq!(pool.call::<i32>("bump_global", ()).await.unwrap(), 1);
        pool.call::<()>("store", (64i32, 0x5ec7e7i32))
            .await
            .unwrap();
        assert_eq!(pool.call::<i32>("load", (64i32,)).await.unwrap(), 0);
        pool.call::<()>("set_slot", ()).await.unwrap();
        assert_eq!(pool.call::<i32>("slot_is_set", ()).await.unwrap(), 0);
    }
}

#[tokio::test]
async fn a_rust_module_in_a_pool_and_fresh_per_call() {
    let pool = common::plugin().pool(2).await.unwrap();
    for _ in 0..5 {
        assert_eq!(pool.call::<i32>("counter", ()).await.unwrap(), 1);
    }
    let fresh = common::plugin().fresh_per_call(true).build().await.unwrap();
    for _ in 0..3 {
        assert_eq!(fresh.call::<i32>("counter", ()).await.unwrap(), 1);
    }
    let kept = common::plugin().build().await.unwrap();
    for want in 1..=3 {
        assert_eq!(kept.call::<i32>("counter", ()).await.unwrap(), want);
    }
    // Traps in a pool leave nothing behind either.
    assert!(pool.call::<()>("fail", (1i32,)).await.is_err());
    assert_eq!(
        pool.call::<String>("upper", ("a".to_string(),))
            .await
            .unwrap(),
        "A"
    );
}
