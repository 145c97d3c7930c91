//! Placeholder: builds nothing yet (the runner guest is built by `hyperlight-testing`).
fn main() {}
