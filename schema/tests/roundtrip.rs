//! Every message type and every value round-trips through its encoding.

use hyperlight_schema::wire::{self, DecodeError};
use hyperlight_schema::{
    ErrorCode, FunctionCall, FunctionCallResult, GuestError, LogLevel, LogRecord, Value, ValueType,
    MAX_PARAMS,
};

const ALL_ERROR_CODES: [ErrorCode; 13] = [
    ErrorCode::UnknownFunction,
    ErrorCode::WrongArity,
    ErrorCode::WrongArgumentType,
    ErrorCode::WrongReturnType,
    ErrorCode::Panic,
    ErrorCode::OutOfMemory,
    ErrorCode::HostFunctionFailed,
    ErrorCode::HostCallNotAllowed,
    ErrorCode::MalformedMessage,
    ErrorCode::GuestFunctionFailed,
    ErrorCode::Cancelled,
    ErrorCode::WasmTrap,
    ErrorCode::WasmAbi,
];

const ALL_LOG_LEVELS: [LogLevel; 5] = [
    LogLevel::Trace,
    LogLevel::Debug,
    LogLevel::Info,
    LogLevel::Warn,
    LogLevel::Error,
];

/// Equality that compares floats bit for bit (NaN payloads, -0.0).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

fn assert_same_values(a: &[Value], b: &[Value]) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!(same_value(x, y), "{x:?} ({:?}) vs {y:?}", bits(x));
    }
}

fn bits(v: &Value) -> Option<u64> {
    match v {
        Value::F32(x) => Some(u64::from(x.to_bits())),
        Value::F64(x) => Some(x.to_bits()),
        _ => None,
    }
}

fn pseudo_random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// A sample of every non-void value, with edge cases.
fn sample_values() -> Vec<Value> {
    let mut v = vec![
        Value::I32(0),
        Value::I32(-1),
        Value::I32(i32::MIN),
        Value::I32(i32::MAX),
        Value::U32(0),
        Value::U32(u32::MAX),
        Value::I64(0),
        Value::I64(i64::MIN),
        Value::I64(i64::MAX),
        Value::U64(0),
        Value::U64(u64::MAX),
        Value::Bool(false),
        Value::Bool(true),
        Value::String(String::new()),
        Value::String("hello".into()),
        Value::String("héllo wörld ✓ 🦀 日本語".into()),
        Value::String("interior\0nul".into()),
        Value::Bytes(Vec::new()),
        Value::Bytes(vec![0]),
        Value::Bytes(pseudo_random_bytes(1 << 20, 7)),
    ];
    for b in [
        0u32,
        0x8000_0000, // -0.0
        0x7fc0_0000, // quiet NaN
        0x7fc0_0001, // quiet NaN with payload
        0x7f80_0001, // signalling NaN
        0xffff_ffff, // negative NaN, all payload bits
        0x7f80_0000, // +inf
        0xff80_0000, // -inf
        0x0000_0001, // smallest subnormal
        1.5f32.to_bits(),
    ] {
        v.push(Value::F32(f32::from_bits(b)));
    }
    for b in [
        0u64,
        0x8000_0000_0000_0000,
        0x7ff8_0000_0000_0000,
        0x7ff8_0000_0000_0001,
        0x7ff0_0000_0000_0001,
        0xffff_ffff_ffff_ffff,
        0x7ff0_0000_0000_0000,
        0x0000_0000_0000_0001,
        (-2.25f64).to_bits(),
    ] {
        v.push(Value::F64(f64::from_bits(b)));
    }
    v
}

fn roundtrip_call(call: &FunctionCall) -> FunctionCall {
    let bytes = wire::encode_function_call(call);
    let back = wire::decode_function_call(&bytes).unwrap_or_else(|e| panic!("{e}: {call:?}"));
    assert_eq!(back.name, call.name);
    assert_eq!(back.return_type, call.return_type);
    assert_same_values(&back.args, &call.args);
    back
}

fn roundtrip_result(result: &FunctionCallResult) {
    let bytes = wire::encode_function_call_result(result);
    let back =
        wire::decode_function_call_result(&bytes).unwrap_or_else(|e| panic!("{e}: {result:?}"));
    match (result, &back) {
        (Ok(a), Ok(b)) => assert!(same_value(a, b), "{a:?} vs {b:?}"),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("{result:?} decoded as {back:?}"),
    }
}

#[test]
fn doc_example() {
    let call = FunctionCall {
        name: "add".into(),
        args: vec![Value::I32(1), Value::I32(2)],
        return_type: ValueType::I32,
    };
    let bytes = wire::encode_function_call(&call);
    assert_eq!(wire::decode_function_call(&bytes).unwrap(), call);
    assert_eq!(&bytes[4..8], wire::FUNCTION_CALL_IDENTIFIER.as_bytes());
}

#[test]
fn every_value_roundtrips_as_a_single_argument() {
    for value in sample_values() {
        for return_type in ValueType::ALL {
            roundtrip_call(&FunctionCall {
                name: "f".into(),
                args: vec![value.clone()],
                return_type,
            });
        }
    }
}

#[test]
fn every_value_roundtrips_as_a_return_value() {
    roundtrip_result(&Ok(Value::Void));
    for value in sample_values() {
        roundtrip_result(&Ok(value));
    }
}

#[test]
fn calls_without_arguments_and_odd_names_roundtrip() {
    for name in [
        "",
        "a",
        "namespace::function_name",
        "ünïcødé 🦀",
        "nul\0inside",
    ] {
        roundtrip_call(&FunctionCall {
            name: name.into(),
            args: vec![],
            return_type: ValueType::Void,
        });
    }
    let long = "x".repeat(100_000);
    roundtrip_call(&FunctionCall {
        name: long,
        args: vec![],
        return_type: ValueType::Bytes,
    });
}

#[test]
fn max_params_of_every_type_roundtrip() {
    let values = sample_values();
    // All the same small type (the most tables per byte: the apparent-size worst case).
    for value in values
        .iter()
        .filter(|v| !matches!(v, Value::Bytes(b) if b.len() > 1))
    {
        let call = FunctionCall {
            name: "g".into(),
            args: vec![value.clone(); MAX_PARAMS],
            return_type: ValueType::U64,
        };
        roundtrip_call(&call);
    }
    // Sixteen different values.
    for chunk in values.chunks(MAX_PARAMS) {
        roundtrip_call(&FunctionCall {
            name: "h".into(),
            args: chunk.to_vec(),
            return_type: ValueType::String,
        });
    }
    // Sixteen large arguments.
    let big: Vec<Value> = (0..MAX_PARAMS as u64)
        .map(|i| Value::Bytes(pseudo_random_bytes(100_000, i + 1)))
        .collect();
    roundtrip_call(&FunctionCall {
        name: "big".into(),
        args: big,
        return_type: ValueType::Void,
    });
}

#[test]
fn too_many_args_are_rejected() {
    for count in [MAX_PARAMS + 1, 40, 100] {
        let call = FunctionCall {
            name: "f".into(),
            args: vec![Value::I32(1); count],
            return_type: ValueType::I32,
        };
        let bytes = wire::encode_function_call(&call);
        assert_eq!(
            wire::decode_function_call(&bytes),
            Err(DecodeError::TooManyArgs {
                count,
                max: MAX_PARAMS
            })
        );
    }
    // Far too many: the verifier's table limit stops it first.
    let call = FunctionCall {
        name: "f".into(),
        args: vec![Value::I32(1); 1000],
        return_type: ValueType::I32,
    };
    let bytes = wire::encode_function_call(&call);
    assert!(matches!(
        wire::decode_function_call(&bytes),
        Err(DecodeError::Invalid { .. })
    ));
}

#[test]
fn void_argument_is_rejected() {
    let call = FunctionCall {
        name: "f".into(),
        args: vec![Value::I32(1), Value::Void, Value::I32(2)],
        return_type: ValueType::I32,
    };
    let bytes = wire::encode_function_call(&call);
    assert_eq!(
        wire::decode_function_call(&bytes),
        Err(DecodeError::VoidArgument { index: 1 })
    );
}

#[test]
fn guest_errors_roundtrip_alone_and_in_results() {
    for code in ALL_ERROR_CODES {
        for message in ["", "boom", "panicked at 'ünïcødé' 🦀"] {
            let error = GuestError {
                code,
                message: message.into(),
            };
            let bytes = wire::encode_guest_error(&error);
            assert_eq!(wire::decode_guest_error(&bytes), Ok(error.clone()));
            roundtrip_result(&Err(error));
        }
    }
    let error = GuestError {
        code: ErrorCode::Panic,
        message: "m".repeat(1 << 20),
    };
    assert_eq!(
        wire::decode_guest_error(&wire::encode_guest_error(&error)),
        Ok(error)
    );
}

#[test]
fn log_records_roundtrip() {
    for level in ALL_LOG_LEVELS {
        for line in [0, 1, 42, u32::MAX] {
            let record = LogRecord {
                level,
                message: format!("message at {level:?} ✓"),
                target: "guest::module".into(),
                file: "src/main.rs".into(),
                line,
            };
            assert_eq!(
                wire::decode_log_record(&wire::encode_log_record(&record)),
                Ok(record)
            );
        }
    }
    let empty = LogRecord {
        level: LogLevel::Info,
        message: String::new(),
        target: String::new(),
        file: String::new(),
        line: 0,
    };
    assert_eq!(
        wire::decode_log_record(&wire::encode_log_record(&empty)),
        Ok(empty)
    );
}

#[test]
fn messages_over_the_size_limit_are_rejected() {
    let call = FunctionCall {
        name: "f".into(),
        args: vec![Value::Bytes(vec![0xab; wire::MAX_MESSAGE_SIZE])],
        return_type: ValueType::Void,
    };
    let bytes = wire::encode_function_call(&call);
    assert!(bytes.len() > wire::MAX_MESSAGE_SIZE);
    assert_eq!(
        wire::decode_function_call(&bytes),
        Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: wire::MAX_MESSAGE_SIZE
        })
    );
    // Just under the limit still decodes.
    let call = FunctionCall {
        name: "f".into(),
        args: vec![Value::Bytes(vec![0xab; wire::MAX_MESSAGE_SIZE - 256])],
        return_type: ValueType::Void,
    };
    roundtrip_call(&call);
}

#[test]
fn each_decoder_rejects_the_other_message_types() {
    let call = wire::encode_function_call(&FunctionCall {
        name: "f".into(),
        args: vec![],
        return_type: ValueType::Void,
    });
    let result = wire::encode_function_call_result(&Ok(Value::Void));
    let error = wire::encode_guest_error(&GuestError {
        code: ErrorCode::Panic,
        message: "x".into(),
    });
    let log = wire::encode_log_record(&LogRecord {
        level: LogLevel::Info,
        message: "m".into(),
        target: "t".into(),
        file: "f".into(),
        line: 1,
    });
    let wrong = |r: Result<(), DecodeError>| {
        assert!(
            matches!(r, Err(DecodeError::WrongIdentifier { .. })),
            "{r:?}"
        )
    };
    for (i, buf) in [&call, &result, &error, &log].into_iter().enumerate() {
        if i != 0 {
            wrong(wire::decode_function_call(buf).map(drop));
        }
        if i != 1 {
            wrong(wire::decode_function_call_result(buf).map(drop));
        }
        if i != 2 {
            wrong(wire::decode_guest_error(buf).map(drop));
        }
        if i != 3 {
            wrong(wire::decode_log_record(buf).map(drop));
        }
    }
}

#[test]
fn decode_error_display_is_informative() {
    let e = DecodeError::TooManyArgs { count: 17, max: 16 };
    assert_eq!(
        e.to_string(),
        "call has 17 arguments, more than the limit of 16"
    );
    let e = DecodeError::UnknownEnumValue {
        field: "LogRecord.level",
        value: 200,
    };
    assert!(e.to_string().contains("LogRecord.level") && e.to_string().contains("200"));
    let e = DecodeError::WrongIdentifier {
        expected: "HLFC",
        found: *b"HL\0\xff",
    };
    assert!(e.to_string().contains("HLFC"), "{e}");
    let boxed: Box<dyn std::error::Error> = Box::new(DecodeError::MissingField { field: "x" });
    assert_eq!(boxed.to_string(), "missing field `x`");
}
