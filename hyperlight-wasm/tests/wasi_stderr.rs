//! A WASI program's stderr lines are `tracing` events that carry the id of the sandbox that ran
//! them, from a `WasmSandbox` and from each sandbox of a `WasmPool`. One test in this binary:
//! it installs the process's subscriber.

use std::sync::{Arc, Mutex};

use hyperlight_wasm::{WasiConfig, WasiRun, WasmSandbox};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// The `sandbox.id` (if any) and the `stderr` line of an event.
type Line = (Option<u64>, String);

/// Every event with a `stderr` field.
#[derive(Clone, Default)]
struct StderrEvents(Arc<Mutex<Vec<Line>>>);

#[derive(Default)]
struct Fields {
    sandbox: Option<u64>,
    stderr: Option<String>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "sandbox.id" {
            self.sandbox = Some(value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "stderr" {
            self.stderr = Some(value.to_string());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "stderr" {
            self.stderr = Some(format!("{value:?}"));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for StderrEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(stderr) = fields.stderr {
            self.0.lock().unwrap().push((fields.sandbox, stderr));
        }
    }
}

fn bad_json() -> WasiRun {
    WasiRun {
        args: vec!["jsonfmt".into()],
        env: vec![],
        stdin: b"not json".to_vec(),
    }
}

#[tokio::test]
async fn stderr_lines_carry_the_sandbox_id() {
    let events = StderrEvents::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(events.clone()))
        .unwrap();
    let builder = WasmSandbox::builder(hyperlight_testing::wasi_program("jsonfmt"))
        .wasi(WasiConfig::default());
    let sandbox = builder.clone().build().await.unwrap();
    let out = sandbox.run(bad_json()).await.unwrap();
    assert_ne!(out.exit_code, 0);
    let line = String::from_utf8(out.stderr).unwrap();
    let line = line.lines().next().unwrap().to_string();
    assert_eq!(
        events.0.lock().unwrap().as_slice(),
        [(Some(sandbox.id()), line.clone())]
    );
    // A pool's runs name the pool sandbox that ran them: one of the pool's, not the one above.
    let pool = builder.pool(2).await.unwrap();
    for _ in 0..4 {
        pool.run(bad_json()).await.unwrap();
    }
    let events = events.0.lock().unwrap();
    assert_eq!(events.len(), 5);
    for (id, stderr) in &events[1..] {
        assert_eq!(stderr, &line);
        assert!(matches!(id, Some(id) if *id != sandbox.id()), "{id:?}");
    }
}
