//! WASI preview 1 command modules on KVM: stdin in, stdout and stderr out, the exit code;
//! everything else refused with its errno; limits as typed errors; sleeps cancelled by the
//! timeout; deterministic clocks and randomness.

mod common;

use std::time::Duration;

use hyperlight_wasm::{
    Error, ProblemKind, WasiConfig, WasiLimit, WasiLimits, WasiOutput, WasiRun, WasmSandbox,
};

fn run(args: &[&str], stdin: &[u8]) -> WasiRun {
    WasiRun {
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        stdin: stdin.to_vec(),
    }
}

#[tokio::test]
async fn a_command_reads_stdin_writes_stdout_and_stderr_and_exits_with_its_code() {
    let sandbox = common::wat("wasi_echo")
        .wasi(WasiConfig::default())
        .build()
        .await
        .unwrap();
    let output = sandbox
        .run(run(&["echo", "a", "b"], b"hello, sandbox"))
        .await
        .unwrap();
    assert_eq!(
        output,
        WasiOutput {
            exit_code: 3,
            stdout: b"hello, sandbox".to_vec(),
            stderr: b"run 1\n".to_vec(),
        }
    );
    // A fresh instance per run: the global the first run incremented is back to 0.
    let big: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    let output = sandbox.run(run(&["echo"], &big)).await.unwrap();
    assert_eq!(
        (output.exit_code, output.stderr.as_slice()),
        (1, &b"run 1\n"[..])
    );
    assert_eq!(output.stdout, big);
}

#[tokio::test]
async fn a_sandbox_can_keep_its_instance_between_runs_and_a_pool_never_does() {
    let builder = common::wat("wasi_echo").wasi(WasiConfig::default());
    let kept = builder.clone().fresh_per_call(false).build().await.unwrap();
    for n in 1..=2 {
        let output = kept.run(run(&[], b"")).await.unwrap();
        assert_eq!(output.stderr, format!("run {n}\n").into_bytes());
        assert_eq!(output.exit_code, 0);
    }
    let pool = builder.pool(2).await.unwrap();
    for _ in 0..3 {
        let output = pool.run(run(&["x"], b"pooled")).await.unwrap();
        assert_eq!(output.stdout, b"pooled");
        assert_eq!(output.stderr, b"run 1\n");
    }
}

#[tokio::test]
async fn files_sockets_and_closed_descriptors_get_their_errno() {
    let sandbox = common::wat("wasi_deny")
        .wasi(WasiConfig::default())
        .build()
        .await
        .unwrap();
    let output = sandbox.run(run(&["deny"], b"")).await.unwrap();
    assert_eq!(output.exit_code, 0);
    // EBADF 8, ENOTCAPABLE 76, ENOSYS 52, ESPIPE 70, EFAULT 21, EINVAL 28; an empty read at the
    // end of stdin (errno 0, 0 bytes); fd_close(0) succeeds and later reads are EBADF; fd 1 is
    // a character device (2).
    assert_eq!(
        output.stdout,
        [8, 76, 8, 76, 8, 0, 0, 8, 52, 70, 76, 21, 28, 0, 8, 0, 2]
    );
}

#[tokio::test]
async fn output_past_its_limit_is_a_typed_error() {
    let limits = WasiLimits {
        max_stdout: 10_000,
        ..WasiLimits::default()
    };
    let sandbox = common::wat("wasi_flood")
        .wasi(WasiConfig {
            limits,
            deterministic: None,
        })
        .build()
        .await
        .unwrap();
    for _ in 0..2 {
        match sandbox.run(run(&[], b"")).await {
            Err(Error::WasiLimit {
                limit: WasiLimit::Stdout,
                max: 10_000,
            }) => {}
            other => panic!("expected the stdout limit, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn input_past_its_limits_is_refused_before_anything_runs() {
    let limits = WasiLimits {
        max_stdin: 100,
        max_args: 10,
        max_env: 10,
        ..WasiLimits::default()
    };
    let sandbox = common::wat("wasi_echo")
        .wasi(WasiConfig {
            limits,
            deterministic: None,
        })
        .build()
        .await
        .unwrap();
    let cases = [
        (run(&[], &[0; 101]), WasiLimit::Stdin, 100),
        (run(&["0123456789"], b""), WasiLimit::Args, 10),
        (
            WasiRun {
                env: vec![("KEY".into(), "value-x".into())],
                ..WasiRun::default()
            },
            WasiLimit::Env,
            10,
        ),
    ];
    for (input, want, max) in cases {
        match sandbox.run(input).await {
            Err(Error::WasiLimit { limit, max: m }) => assert_eq!((limit, m), (want, max)),
            other => panic!("expected {want:?}, got {other:?}"),
        }
    }
    assert!(matches!(
        sandbox.run(run(&["a\0b"], b"")).await,
        Err(Error::WasiInput { .. })
    ));
    // Within the limits it runs.
    assert_eq!(
        sandbox.run(run(&["ok"], &[7; 100])).await.unwrap().stdout,
        [7; 100]
    );
}

#[tokio::test]
async fn a_sleep_past_the_timeout_is_cancelled_and_the_sandbox_recovers() {
    let sandbox = common::wat("wasi_sleep")
        .wasi(WasiConfig::default())
        .build()
        .await
        .unwrap();
    let result = sandbox
        .run(run(&[], b""))
        .timeout(Duration::from_millis(200))
        .await;
    assert!(
        matches!(
            result,
            Err(Error::Sandbox(hyperlight_async::Error::Timeout { .. }))
        ),
        "{result:?}"
    );
    // The sandbox serves the next run: it sleeps again, and is cancelled again.
    let again = sandbox
        .run(run(&[], b""))
        .timeout(Duration::from_millis(50))
        .await;
    assert!(matches!(
        again,
        Err(Error::Sandbox(hyperlight_async::Error::Timeout { .. }))
    ));
}

#[tokio::test]
async fn deterministic_runs_repeat_their_clocks_and_randomness() {
    let config = WasiConfig {
        limits: WasiLimits::default(),
        deterministic: Some(42),
    };
    let sandbox = common::wat("wasi_sleep")
        .wasi(config)
        .build()
        .await
        .unwrap();
    let first = sandbox.run(run(&[], b"")).await.unwrap();
    let second = sandbox.run(run(&[], b"")).await.unwrap();
    assert_eq!(first, second);
    let stdout = &first.stdout;
    assert_eq!(stdout.len(), 32);
    let advance = u64::from_le_bytes(stdout[0..8].try_into().unwrap());
    // The 60 s sleep advanced the clock without waiting, plus one tick for the reading.
    assert_eq!(advance, 60_000_000_000 + 1_000);
    assert_ne!(&stdout[8..24], &[0u8; 16][..]);
    assert_eq!(u64::from_le_bytes(stdout[24..32].try_into().unwrap()), 7);
    let other_seed = common::wat("wasi_sleep")
        .wasi(WasiConfig {
            deterministic: Some(43),
            ..config
        })
        .build()
        .await
        .unwrap();
    let third = other_seed.run(run(&[], b"")).await.unwrap();
    assert_ne!(&third.stdout[8..24], &stdout[8..24]);
}

#[tokio::test]
async fn without_wasi_its_imports_are_missing_and_runs_are_refused() {
    let plain = WasmSandbox::builder(hyperlight_testing::wat("wasi_echo"))
        .build()
        .await;
    match plain {
        Err(Error::Link { problems }) => {
            assert!(problems.iter().all(|p| p.kind == ProblemKind::Missing));
            assert_eq!(problems.len(), 4);
        }
        other => panic!("expected link problems, got {other:?}"),
    }
    let reactor = common::wat("state").build().await.unwrap();
    assert!(matches!(
        reactor.run(WasiRun::default()).await,
        Err(Error::WasiDisabled)
    ));
}

#[tokio::test]
async fn clocks_randomness_and_sleeps_come_from_the_host() {
    let sandbox = common::wat("wasi_clock")
        .wasi(WasiConfig::default())
        .build()
        .await
        .unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    };
    let word = |bytes: &[u8], at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let before = now();
    let first = sandbox.run(run(&[], b"")).await.unwrap().stdout;
    let after = now();
    assert_eq!(first.len(), 88);
    // Every call succeeded (the last errno is the event's).
    assert_eq!(&first[80..88], &[0u8; 8][..]);
    let realtime = word(&first, 0);
    assert!(
        before <= realtime && realtime <= after,
        "{before} {realtime} {after}"
    );
    assert_eq!(word(&first, 8), 1);
    // OS randomness: the two calls differ, and so does the next run's.
    assert_ne!(&first[16..32], &first[32..48]);
    let second = sandbox.run(run(&[], b"")).await.unwrap().stdout;
    assert_ne!(&first[16..48], &second[16..48]);
    // The monotonic clock moved on across the sleep; the absolute subscription already due gave
    // one event with its userdata.
    assert!(word(&first, 56) > word(&first, 48));
    assert_eq!((word(&first, 64), word(&first, 72)), (1, 6));
}

#[tokio::test]
async fn a_wasi_import_of_the_wrong_type_or_an_unknown_name_does_not_link() {
    let wasm = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_open_everything" (func))
          (func (export "_start")))"#,
    )
    .unwrap();
    let problems = match WasmSandbox::builder(wasm)
        .wasi(WasiConfig::default())
        .build()
        .await
    {
        Err(Error::Link { problems }) => problems,
        other => panic!("expected link problems, got {other:?}"),
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].kind, ProblemKind::Mistyped);
    assert_eq!(
        problems[0].registered.as_ref().map(ToString::to_string),
        Some("(param i32 i32 i32 i32) (result i32)".to_string())
    );
    assert_eq!(
        (problems[1].name.as_str(), problems[1].kind),
        ("fd_open_everything", ProblemKind::Missing)
    );
}
