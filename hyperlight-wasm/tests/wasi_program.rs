//! A Rust program built for `wasm32-wasip1` (testing/wasi-programs/jsonfmt, with serde_json from
//! crates.io) runs in a sandbox with the same output as the same source built for the host and
//! run as a process, over a corpus of inputs, arguments and environments.

use std::io::Write;
use std::process::{Command, Stdio};

use hyperlight_wasm::{WasiConfig, WasiLimits, WasiOutput, WasiRun, WasmSandbox};

/// The program's output as a process: same arguments (its own path as `argv[0]`), only the
/// given environment, same stdin.
fn native(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> WasiOutput {
    let mut child = Command::new(hyperlight_testing::wasi_native("jsonfmt"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the native jsonfmt");
    let mut pipe = child.stdin.take().expect("stdin pipe");
    // The program reads all of stdin before it writes (or exits at once on a usage error: then
    // the pipe is broken, as it would be for the sandboxed run's unread stdin).
    match pipe.write_all(stdin) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
        _ => {}
    }
    drop(pipe);
    let output = child.wait_with_output().expect("wait for jsonfmt");
    WasiOutput {
        exit_code: output.status.code().expect("exited, not killed"),
        stdout: output.stdout,
        stderr: output.stderr,
    }
}

/// Arguments (after `argv[0]`) and environment of one run.
type Invocation = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

fn corpus() -> Vec<Vec<u8>> {
    let big: Vec<String> = (0..2_000)
        .map(|i| format!(r#"{{"id":{i},"name":"item {i}","ok":{}}}"#, i % 3 == 0))
        .collect();
    vec![
        br#"{"b": [1, 2.5, -3e10, null, true], "a": {"nested": "x"}, "key": 7}"#.to_vec(),
        "{\"grüße\": \"日本語 \\u00e9 \\n tab\\t\", \"key\": [\"☃\"]}"
            .as_bytes()
            .to_vec(),
        b"[]".to_vec(),
        b"  42  ".to_vec(),
        format!("[{}]", big.join(",")).into_bytes(),
        b"{\"unterminated\": ".to_vec(),
        b"not json at all".to_vec(),
        Vec::new(),
    ]
}

#[tokio::test]
async fn the_program_in_a_sandbox_matches_the_native_build() {
    let pool = WasmSandbox::builder(hyperlight_testing::wasi_program("jsonfmt"))
        // Larger than the default limits: the builder enlarges the call buffers to match.
        .wasi(WasiConfig {
            limits: WasiLimits {
                max_stdin: 256 << 10,
                max_stdout: 512 << 10,
                ..WasiLimits::default()
            },
            deterministic: None,
        })
        .pool(2)
        .await
        .unwrap();
    let invocations: [Invocation; 5] = [
        (&[], &[]),
        (&["--compact"], &[]),
        (&["--key", "key", "--exit", "3"], &[]),
        (
            &["--compact"],
            &[("JSONFMT_WRAP", "wrapped"), ("OTHER", "1")],
        ),
        (&["--bogus"], &[]),
    ];
    let mut exit_codes = std::collections::BTreeSet::new();
    for input in corpus() {
        for (args, env) in invocations {
            let mut argv = vec!["jsonfmt".to_string()];
            argv.extend(args.iter().map(|a| a.to_string()));
            let run = WasiRun {
                args: argv,
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                stdin: input.clone(),
            };
            let sandboxed = pool.run(run).await.unwrap();
            let expected = native(args, env, &input);
            assert_eq!(
                sandboxed,
                expected,
                "args {args:?}, env {env:?}, input {:?}",
                String::from_utf8_lossy(&input[..input.len().min(80)])
            );
            exit_codes.insert(sandboxed.exit_code);
        }
    }
    // The corpus reaches success, a chosen code, a parse error and a usage error.
    assert_eq!(exit_codes.into_iter().collect::<Vec<_>>(), [0, 2, 3, 64]);
}
