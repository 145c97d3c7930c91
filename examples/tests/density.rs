//! The density example with a small N (the full 10,000 run is in docs/performance.md).

#[test]
fn density_example_runs_and_sandboxes_share_the_snapshot() {
    let report = hyperlight_examples::density::run(100).unwrap();
    let (rss, pss) = report.per_sandbox_kib();
    // Each sandbox maps ~4.8 MiB of guest memory; sharing keeps what it owns to a small part.
    assert!(
        pss < 1024.0,
        "{pss} KiB PSS per sandbox: pages are not shared"
    );
    assert!(rss > 0.0);
}
