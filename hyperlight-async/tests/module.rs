//! The module region through the async API: a pool whose builder has a module gives every call
//! (each on a fresh sandbox made from the post-init snapshot) the same read-only bytes.

mod common;

use hyperlight_async::SandboxPool;

#[tokio::test]
async fn every_pool_call_sees_the_builders_module() {
    let module: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let pool = SandboxPool::new(common::simple().module(module.clone()), 3)
        .await
        .unwrap();
    for _ in 0..6 {
        let info: Vec<u8> = pool.call("module_info", ()).await.unwrap();
        let len = u64::from_le_bytes(info[8..16].try_into().unwrap());
        assert_eq!(len, module.len() as u64);
    }
}
