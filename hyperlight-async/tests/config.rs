//! Everything the builder, its configuration and its errors name comes from `hyperlight_async`:
//! this file uses no other hyperlight crate (but the test guests' paths).

use hyperlight_async::{
    Access, Error, HypervisorChoice, HypervisorPaths, OnDenied, Sandbox, SandboxConfig,
    SandboxError, SeccompPolicy,
};

#[tokio::test]
async fn a_sandbox_is_configured_and_its_errors_matched_with_this_crate_alone() {
    let config = SandboxConfig {
        hypervisor: HypervisorChoice::Kvm,
        hypervisor_paths: HypervisorPaths::default(),
        seccomp: SeccompPolicy::Enabled {
            extra: Vec::new(),
            on_denied: OnDenied::default(),
        },
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::builder(hyperlight_testing::simple_guest())
        .config(config)
        .build()
        .await
        .unwrap();
    assert_eq!(sandbox.call::<i32>("add", (40i32, 2i32)).await.unwrap(), 42);
    // A write to the null page.
    let fault = sandbox
        .call::<()>("write_addr", (8u64, 1u64))
        .await
        .unwrap_err();
    assert!(
        matches!(
            fault,
            Error::Sandbox(SandboxError::MemoryViolation {
                addr: 8,
                access: Access::Write,
                ..
            })
        ),
        "{fault:?}"
    );
}
