//! `jsonfmt [--compact] [--exit CODE] [--key NAME]`: reads JSON from stdin and writes it back
//! to stdout, pretty (or compact), with the value of the key NAME only if given; the environment
//! variable `JSONFMT_WRAP`, if set, wraps the output in an object under that key. Writes a
//! summary line to stderr and exits with CODE (0 by default), or with 2 and the parse error on
//! stderr if stdin is not JSON.

use std::io::{Read, Write};
use std::process::ExitCode;

use serde_json::{Map, Value};

fn main() -> ExitCode {
    let mut compact = false;
    let mut exit = 0u8;
    let mut key = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--compact" => compact = true,
            "--exit" => exit = args.next().and_then(|c| c.parse().ok()).unwrap_or(1),
            "--key" => key = args.next(),
            other => {
                eprintln!("jsonfmt: unknown argument {other:?}");
                return ExitCode::from(64);
            }
        }
    }
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("jsonfmt: cannot read stdin: {e}");
        return ExitCode::from(74);
    }
    let mut value: Value = match serde_json::from_slice(&input) {
        Ok(value) => value,
        Err(e) => {
            eprintln!("jsonfmt: not JSON: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(key) = &key {
        value = value.get(key).cloned().unwrap_or(Value::Null);
    }
    if let Ok(wrap) = std::env::var("JSONFMT_WRAP") {
        let mut object = Map::new();
        object.insert(wrap, value);
        value = Value::Object(object);
    }
    let text = if compact {
        serde_json::to_string(&value)
    } else {
        serde_json::to_string_pretty(&value)
    };
    let text = text.expect("a Value always serializes");
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{text}").is_err() {
        return ExitCode::from(74);
    }
    eprintln!(
        "jsonfmt: {} bytes in, {} bytes out",
        input.len(),
        text.len() + 1
    );
    ExitCode::from(exit)
}
