//! The FlatBuffer encoding of a WASI run ([`WasiRunRequest`]) and its outcome ([`WasiOutcome`]);
//! decoding is as careful as for the other messages, and bounds the lists of strings.

use alloc::string::String;
use alloc::vec::Vec;

use super::{fb, into_bytes, new_builder, required, verified_root_with, DecodeError, Limits};
use crate::wasm::{WasiOutcome, WasiRunRequest, WasiStream, MAX_WASI_STRINGS};

/// File identifier of a [`WasiRunRequest`] message.
pub const WASI_RUN_IDENTIFIER: &str = fb::WASI_RUN_IDENTIFIER;
/// File identifier of a [`WasiOutcome`] message.
pub const WASI_OUTCOME_IDENTIFIER: &str = fb::WASI_OUTCOME_IDENTIFIER;

/// One root table each; strings and byte vectors are no tables.
const WASI_LIMITS: Limits = Limits {
    max_tables: 4,
    apparent_factor: 1,
};

/// Encodes a [`WasiRunRequest`] (identifier [`WASI_RUN_IDENTIFIER`]).
pub fn encode_wasi_run(run: &WasiRunRequest) -> Vec<u8> {
    let strings = run.args.iter().chain(&run.env);
    let hint = run.stdin.len() + strings.clone().map(|s| s.len() + 8).sum::<usize>();
    let mut fbb = new_builder(hint);
    let args: Vec<_> = run.args.iter().map(|a| fbb.create_string(a)).collect();
    let args = fbb.create_vector(&args);
    let env: Vec<_> = run.env.iter().map(|e| fbb.create_string(e)).collect();
    let env = fbb.create_vector(&env);
    let stdin = fbb.create_vector(&run.stdin);
    let root = fb::WasiRun::create(
        &mut fbb,
        &fb::WasiRunArgs {
            args: Some(args),
            env: Some(env),
            stdin: Some(stdin),
            max_stdout: Some(run.max_stdout),
            max_stderr: Some(run.max_stderr),
            deterministic: run.deterministic.is_some(),
            seed: run.deterministic.unwrap_or(0),
        },
    );
    fb::finish_wasi_run_buffer(&mut fbb, root);
    into_bytes(fbb)
}

/// Encodes a [`WasiOutcome`] (identifier [`WASI_OUTCOME_IDENTIFIER`]).
pub fn encode_wasi_outcome(outcome: &WasiOutcome) -> Vec<u8> {
    let mut fbb = new_builder(outcome.stdout.len() + outcome.stderr.len());
    let stdout = fbb.create_vector(&outcome.stdout);
    let stderr = fbb.create_vector(&outcome.stderr);
    let root = fb::WasiOutcome::create(
        &mut fbb,
        &fb::WasiOutcomeArgs {
            exit_code: Some(outcome.exit_code),
            stdout: Some(stdout),
            stderr: Some(stderr),
            limit: outcome.limit.map(|stream| match stream {
                WasiStream::Stdout => fb::WasiStream::Stdout,
                WasiStream::Stderr => fb::WasiStream::Stderr,
            }),
        },
    );
    fb::finish_wasi_outcome_buffer(&mut fbb, root);
    into_bytes(fbb)
}

fn strings(
    list: flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<&str>>,
    field: &'static str,
) -> Result<Vec<String>, DecodeError> {
    if list.len() > MAX_WASI_STRINGS {
        return Err(DecodeError::TooManyItems {
            field,
            count: list.len(),
            max: MAX_WASI_STRINGS,
        });
    }
    Ok(list.iter().map(String::from).collect())
}

/// Decodes a [`WasiRunRequest`], checking it as any message; at most [`MAX_WASI_STRINGS`]
/// arguments and as many environment variables.
pub fn decode_wasi_run(buf: &[u8]) -> Result<WasiRunRequest, DecodeError> {
    let run = verified_root_with::<fb::WasiRun<'_>>(buf, WASI_RUN_IDENTIFIER, WASI_LIMITS)?;
    Ok(WasiRunRequest {
        args: strings(run.args(), "WasiRun.args")?,
        env: strings(run.env(), "WasiRun.env")?,
        stdin: run.stdin().bytes().to_vec(),
        max_stdout: required(run.max_stdout(), "WasiRun.max_stdout")?,
        max_stderr: required(run.max_stderr(), "WasiRun.max_stderr")?,
        deterministic: run.deterministic().then_some(run.seed()),
    })
}

/// Decodes a [`WasiOutcome`], checking it as any message.
pub fn decode_wasi_outcome(buf: &[u8]) -> Result<WasiOutcome, DecodeError> {
    let outcome =
        verified_root_with::<fb::WasiOutcome<'_>>(buf, WASI_OUTCOME_IDENTIFIER, WASI_LIMITS)?;
    let limit = match outcome.limit() {
        None => None,
        Some(fb::WasiStream::Stdout) => Some(WasiStream::Stdout),
        Some(fb::WasiStream::Stderr) => Some(WasiStream::Stderr),
        Some(other) => {
            return Err(DecodeError::UnknownEnumValue {
                field: "WasiOutcome.limit",
                value: i64::from(other.0),
            })
        }
    };
    Ok(WasiOutcome {
        exit_code: required(outcome.exit_code(), "WasiOutcome.exit_code")?,
        stdout: outcome.stdout().bytes().to_vec(),
        stderr: outcome.stderr().bytes().to_vec(),
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn run_and_outcome_round_trip() {
        let run = WasiRunRequest {
            args: vec!["prog".into(), "--x".into()],
            env: vec!["A=1".into()],
            stdin: vec![0, 1, 2, 255],
            max_stdout: 10,
            max_stderr: 20,
            deterministic: Some(7),
        };
        assert_eq!(decode_wasi_run(&encode_wasi_run(&run)), Ok(run.clone()));
        let plain = WasiRunRequest {
            deterministic: None,
            ..run
        };
        assert_eq!(decode_wasi_run(&encode_wasi_run(&plain)), Ok(plain));
        let outcome = WasiOutcome {
            exit_code: -3,
            stdout: b"out".to_vec(),
            stderr: vec![],
            limit: Some(WasiStream::Stderr),
        };
        let bytes = encode_wasi_outcome(&outcome);
        assert_eq!(decode_wasi_outcome(&bytes), Ok(outcome));
        assert!(matches!(
            decode_wasi_run(&bytes),
            Err(DecodeError::WrongIdentifier { .. })
        ));
    }

    #[test]
    fn too_many_arguments_are_refused() {
        let run = WasiRunRequest {
            args: vec![String::new(); MAX_WASI_STRINGS + 1],
            env: vec![],
            stdin: vec![],
            max_stdout: 0,
            max_stderr: 0,
            deterministic: None,
        };
        assert!(matches!(
            decode_wasi_run(&encode_wasi_run(&run)),
            Err(DecodeError::TooManyItems { .. })
        ));
    }
}
