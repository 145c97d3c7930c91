//! Hostile inputs: every decoder returns an error and never panics.
//!
//! Messages are crafted with the raw `flatbuffers` builder API (so a test can write any value
//! into any field, independently of the generated code) or by patching genuine encodings. The
//! schemas have no recursive types, so the verifier's depth limit cannot be reached by a message
//! the verifier follows; the table limit and the apparent-size limit are tested below.

use std::panic::{catch_unwind, AssertUnwindSafe};

use flatbuffers::{FlatBufferBuilder, TableFinishedWIPOffset, WIPOffset};
use hyperlight_schema::wire::{self, DecodeError};
use hyperlight_schema::{
    ErrorCode, FunctionCall, GuestError, LogLevel, LogRecord, Value, ValueType,
};

type Off = WIPOffset<TableFinishedWIPOffset>;

// Field slots (vtable offsets) of the schemas in schema/fbs.
const SLOT0: u16 = 4;
const SLOT1: u16 = 6;
const SLOT2: u16 = 8;
const SLOT3: u16 = 10;
const SLOT4: u16 = 12;

// `Value` union tags.
const TAG_VOID: u8 = 1;
const TAG_I32: u8 = 2;
const TAG_STRING: u8 = 9;
const TAG_BYTES: u8 = 10;
// `Outcome` union tags.
const OUTCOME_RETURN_VALUE: u8 = 1;
const OUTCOME_GUEST_ERROR: u8 = 2;
// `ValueType` enum.
const VT_I32: u8 = 0;

// ---------------------------------------------------------------------------------------------
// Raw builders

fn finish(mut fbb: FlatBufferBuilder<'_>, root: Off, ident: &str) -> Vec<u8> {
    fbb.finish(root, Some(ident));
    fbb.finished_data().to_vec()
}

/// A one-field value table; `None` leaves the field out.
fn scalar_table<T: flatbuffers::Push>(fbb: &mut FlatBufferBuilder<'_>, value: Option<T>) -> Off {
    let t = fbb.start_table();
    if let Some(v) = value {
        fbb.push_slot_always::<T>(SLOT0, v);
    }
    fbb.end_table(t)
}

/// A one-field table whose field is the offset of a NUL-terminated byte string (any bytes).
fn string_table(fbb: &mut FlatBufferBuilder<'_>, bytes: &[u8]) -> Off {
    let s = fbb.create_byte_string(bytes);
    let t = fbb.start_table();
    fbb.push_slot_always(SLOT0, s);
    fbb.end_table(t)
}

/// A table with a union field: `tag` in slot 0 and `value` in slot 1 (either may be absent).
fn union_table(fbb: &mut FlatBufferBuilder<'_>, tag: Option<u8>, value: Option<Off>) -> Off {
    let t = fbb.start_table();
    if let Some(v) = value {
        fbb.push_slot_always(SLOT1, v);
    }
    if let Some(tag) = tag {
        fbb.push_slot_always::<u8>(SLOT0, tag);
    }
    fbb.end_table(t)
}

/// A raw `FunctionCall`: `name` bytes (any), parameter tables, return type byte.
fn raw_call(
    mut fbb: FlatBufferBuilder<'_>,
    name: Option<&[u8]>,
    params: Option<&[Off]>,
    return_type: Option<u8>,
) -> Vec<u8> {
    let name = name.map(|n| fbb.create_byte_string(n));
    let params = params.map(|p| fbb.create_vector(p));
    let t = fbb.start_table();
    if let Some(n) = name {
        fbb.push_slot_always(SLOT0, n);
    }
    if let Some(p) = params {
        fbb.push_slot_always(SLOT1, p);
    }
    if let Some(r) = return_type {
        fbb.push_slot_always::<u8>(SLOT2, r);
    }
    let root = fbb.end_table(t);
    finish(fbb, root, wire::FUNCTION_CALL_IDENTIFIER)
}

/// A call of `f` with one parameter made by `param`.
fn call_with_param(param: impl FnOnce(&mut FlatBufferBuilder<'_>) -> Off) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let p = param(&mut fbb);
    raw_call(fbb, Some(b"f"), Some(&[p]), Some(VT_I32))
}

/// A `FunctionCallResult` with the given outcome tag and table.
fn raw_result(
    outcome: impl FnOnce(&mut FlatBufferBuilder<'_>) -> (Option<u8>, Option<Off>),
) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let (tag, value) = outcome(&mut fbb);
    let root = union_table(&mut fbb, tag, value);
    finish(fbb, root, wire::FUNCTION_CALL_RESULT_IDENTIFIER)
}

fn raw_guest_error(
    fbb: &mut FlatBufferBuilder<'_>,
    code: Option<u16>,
    message: Option<&[u8]>,
) -> Off {
    let m = message.map(|m| fbb.create_byte_string(m));
    let t = fbb.start_table();
    if let Some(m) = m {
        fbb.push_slot_always(SLOT1, m);
    }
    if let Some(c) = code {
        fbb.push_slot_always::<u16>(SLOT0, c);
    }
    fbb.end_table(t)
}

fn raw_log_record(level: Option<u8>, strings: [Option<&[u8]>; 3], line: Option<u32>) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let s = strings.map(|s| s.map(|s| fbb.create_byte_string(s)));
    let t = fbb.start_table();
    for (slot, s) in [SLOT1, SLOT2, SLOT3].into_iter().zip(s) {
        if let Some(s) = s {
            fbb.push_slot_always(slot, s);
        }
    }
    if let Some(l) = line {
        fbb.push_slot_always::<u32>(SLOT4, l);
    }
    if let Some(l) = level {
        fbb.push_slot_always::<u8>(SLOT0, l);
    }
    let root = fbb.end_table(t);
    finish(fbb, root, wire::LOG_RECORD_IDENTIFIER)
}

// ---------------------------------------------------------------------------------------------
// Reading genuine encodings, to patch them

fn u16_at(buf: &[u8], pos: usize) -> u16 {
    u16::from_le_bytes(buf[pos..pos + 2].try_into().unwrap())
}
fn u32_at(buf: &[u8], pos: usize) -> u32 {
    u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap())
}
fn root_table(buf: &[u8]) -> usize {
    u32_at(buf, 0) as usize
}
/// Position of field `slot` of the table at `table` (which must be present).
fn field_pos(buf: &[u8], table: usize, slot: u16) -> usize {
    let vtable = (table as i64 - i64::from(u32_at(buf, table) as i32)) as usize;
    assert!(slot < u16_at(buf, vtable), "slot {slot} not in vtable");
    let off = u16_at(buf, vtable + slot as usize);
    assert_ne!(off, 0, "field {slot} absent");
    table + off as usize
}
/// Follows the uoffset at `pos`.
fn deref(buf: &[u8], pos: usize) -> usize {
    pos + u32_at(buf, pos) as usize
}

fn sample_call() -> FunctionCall {
    FunctionCall {
        name: "some_function".into(),
        args: vec![
            Value::I32(-7),
            Value::U32(7),
            Value::I64(-1 << 40),
            Value::U64(1 << 63),
            Value::F32(f32::from_bits(0x7fc0_1234)),
            Value::F64(-0.0),
            Value::Bool(true),
            Value::String("stríng".into()),
            Value::Bytes(vec![1, 2, 3, 4, 5]),
        ],
        return_type: ValueType::String,
    }
}

fn sample_log_record() -> LogRecord {
    LogRecord {
        level: LogLevel::Warn,
        message: "disk almost full".into(),
        target: "guest::fs".into(),
        file: "src/fs.rs".into(),
        line: 123,
    }
}

fn sample_encodings() -> Vec<Vec<u8>> {
    vec![
        wire::encode_function_call(&sample_call()),
        wire::encode_function_call(&FunctionCall {
            name: String::new(),
            args: vec![],
            return_type: ValueType::Void,
        }),
        wire::encode_function_call_result(&Ok(Value::String("result ✓".into()))),
        wire::encode_function_call_result(&Ok(Value::Void)),
        wire::encode_function_call_result(&Ok(Value::F64(1.0))),
        wire::encode_function_call_result(&Err(GuestError {
            code: ErrorCode::Cancelled,
            message: "cancelled".into(),
        })),
        wire::encode_guest_error(&GuestError {
            code: ErrorCode::OutOfMemory,
            message: "oom".into(),
        }),
        wire::encode_log_record(&sample_log_record()),
    ]
}

const IDENTIFIERS: [&str; 4] = [
    wire::FUNCTION_CALL_IDENTIFIER,
    wire::FUNCTION_CALL_RESULT_IDENTIFIER,
    wire::GUEST_ERROR_IDENTIFIER,
    wire::LOG_RECORD_IDENTIFIER,
];

/// Runs every decoder on `buf`; panics (with the input in hex) if one panics. Returns how many
/// decoders accepted it.
fn decode_all(buf: &[u8]) -> usize {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut ok = 0;
        if let Ok(call) = wire::decode_function_call(buf) {
            // Whatever decodes re-encodes to a message that decodes to the same thing.
            let again = wire::decode_function_call(&wire::encode_function_call(&call)).unwrap();
            assert_eq!(format!("{again:?}"), format!("{call:?}"));
            assert!(call.args.len() <= hyperlight_schema::MAX_PARAMS);
            assert!(call.args.iter().all(|a| *a != Value::Void));
            ok += 1;
        }
        if let Ok(result) = wire::decode_function_call_result(buf) {
            let again =
                wire::decode_function_call_result(&wire::encode_function_call_result(&result))
                    .unwrap();
            assert_eq!(format!("{again:?}"), format!("{result:?}"));
            ok += 1;
        }
        if let Ok(error) = wire::decode_guest_error(buf) {
            assert_eq!(
                wire::decode_guest_error(&wire::encode_guest_error(&error)),
                Ok(error)
            );
            ok += 1;
        }
        if let Ok(record) = wire::decode_log_record(buf) {
            assert_eq!(
                wire::decode_log_record(&wire::encode_log_record(&record)),
                Ok(record)
            );
            ok += 1;
        }
        ok
    }));
    match outcome {
        Ok(n) => n,
        Err(_) => panic!("a decoder panicked on input {}", hex(buf)),
    }
}

fn hex(buf: &[u8]) -> String {
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn invalid(r: Result<impl std::fmt::Debug, DecodeError>) -> String {
    match r {
        Err(DecodeError::Invalid { reason }) => reason,
        other => panic!("expected DecodeError::Invalid, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn empty_and_short_buffers() {
    for len in 0..wire::MIN_MESSAGE_SIZE {
        let buf = vec![0u8; len];
        let e = DecodeError::TooShort {
            len,
            min: wire::MIN_MESSAGE_SIZE,
        };
        assert_eq!(wire::decode_function_call(&buf).unwrap_err(), e);
        assert_eq!(wire::decode_function_call_result(&buf).unwrap_err(), e);
        assert_eq!(wire::decode_guest_error(&buf).unwrap_err(), e);
        assert_eq!(wire::decode_log_record(&buf).unwrap_err(), e);
    }
}

#[test]
fn oversized_buffer_is_rejected_before_anything_else() {
    let buf = vec![0u8; wire::MAX_MESSAGE_SIZE + 1];
    let e = DecodeError::TooLarge {
        len: buf.len(),
        max: wire::MAX_MESSAGE_SIZE,
    };
    assert_eq!(wire::decode_function_call(&buf), Err(e.clone()));
    assert_eq!(wire::decode_log_record(&buf), Err(e));
}

#[test]
fn garbage_is_rejected() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    for len in [8usize, 9, 12, 16, 31, 64, 100, 1000, 4096] {
        for fill in [0x00u8, 0xff, 0x41, 0x80] {
            for ident in IDENTIFIERS {
                let mut buf = vec![fill; len];
                buf[4..8].copy_from_slice(ident.as_bytes());
                assert_eq!(decode_all(&buf), 0, "{}", hex(&buf));
            }
        }
        for ident in IDENTIFIERS {
            let mut buf: Vec<u8> = (0..len).map(|_| next(&mut seed) as u8).collect();
            buf[4..8].copy_from_slice(ident.as_bytes());
            assert_eq!(decode_all(&buf), 0, "{}", hex(&buf));
        }
    }
    // Random identifiers: all WrongIdentifier.
    let buf = b"\x08\0\0\0XXXX\0\0\0\0".to_vec();
    assert!(
        matches!(wire::decode_guest_error(&buf), Err(DecodeError::WrongIdentifier { found, .. }) if &found == b"XXXX")
    );
}

#[test]
fn every_truncation_of_a_valid_message_is_rejected() {
    for buf in sample_encodings() {
        assert_eq!(decode_all(&buf), 1);
        let whole = decoded(&buf);
        for len in 0..buf.len() {
            // Cutting only trailing padding (after the last string's NUL) leaves the same
            // message; any other cut is an error.
            let cut = &buf[..len];
            match decode_all(cut) {
                0 => {}
                _ => assert_eq!(
                    decoded(cut),
                    whole,
                    "prefix of {len} bytes of {}",
                    hex(&buf)
                ),
            }
        }
        // The padding is at most 3 bytes: anything shorter is always rejected.
        for len in 0..buf.len().saturating_sub(3) {
            assert_eq!(
                decode_all(&buf[..len]),
                0,
                "prefix of {len} bytes of {}",
                hex(&buf)
            );
        }
    }
}

/// The debug text of whatever `buf` decodes to, with any decoder.
fn decoded(buf: &[u8]) -> Option<String> {
    let call = wire::decode_function_call(buf)
        .ok()
        .map(|v| format!("{v:?}"));
    let result = wire::decode_function_call_result(buf)
        .ok()
        .map(|v| format!("{v:?}"));
    let error = wire::decode_guest_error(buf).ok().map(|v| format!("{v:?}"));
    let log = wire::decode_log_record(buf).ok().map(|v| format!("{v:?}"));
    call.or(result).or(error).or(log)
}

#[test]
fn huge_offsets_are_rejected() {
    for ident in IDENTIFIERS {
        for root in [
            0xffff_fff0u32,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            64,
            12,
        ] {
            let mut buf = root.to_le_bytes().to_vec();
            buf.extend_from_slice(ident.as_bytes());
            buf.extend_from_slice(&[0u8; 8]);
            assert_eq!(decode_all(&buf), 0);
        }
    }
    // A huge offset in the name field and in the parameter vector of a genuine call.
    let good = wire::encode_function_call(&sample_call());
    let root = root_table(&good);
    for slot in [SLOT0, SLOT1] {
        for value in [0x7fff_fff0u32, 0xffff_fffc, 0x8000_0000] {
            let mut buf = good.clone();
            let pos = field_pos(&buf, root, slot);
            buf[pos..pos + 4].copy_from_slice(&value.to_le_bytes());
            invalid(wire::decode_function_call(&buf));
        }
    }
    // A vtable soffset pointing far outside the buffer.
    let mut buf = good.clone();
    buf[root..root + 4].copy_from_slice(&i32::MIN.to_le_bytes());
    invalid(wire::decode_function_call(&buf));
    // A huge element count in the parameter vector.
    for count in [0x7fff_ffffu32, 0xffff_ffff, 10_000, 17] {
        let mut buf = good.clone();
        let vec = deref(&buf, field_pos(&buf, root, SLOT1));
        buf[vec..vec + 4].copy_from_slice(&count.to_le_bytes());
        invalid(wire::decode_function_call(&buf));
    }
}

#[test]
fn a_message_of_one_type_with_another_types_identifier_does_not_panic() {
    for buf in sample_encodings() {
        for ident in IDENTIFIERS {
            let mut patched = buf.clone();
            patched[4..8].copy_from_slice(ident.as_bytes());
            decode_all(&patched);
        }
    }
}

#[test]
fn unknown_enum_values_in_genuine_messages() {
    // LogRecord.level: patch the byte of a genuine record.
    let good = wire::encode_log_record(&sample_log_record());
    let pos = field_pos(&good, root_table(&good), SLOT0);
    assert_eq!(good[pos], 3); // Warn
    for value in 5..=255u8 {
        let mut buf = good.clone();
        buf[pos] = value;
        assert_eq!(
            wire::decode_log_record(&buf),
            Err(DecodeError::UnknownEnumValue {
                field: "LogRecord.level",
                value: i64::from(value)
            })
        );
    }

    // GuestError.code (u16).
    let good = wire::encode_guest_error(&GuestError {
        code: ErrorCode::Panic,
        message: "p".into(),
    });
    let pos = field_pos(&good, root_table(&good), SLOT0);
    assert_eq!(u16_at(&good, pos), 4); // Panic
    for value in (13..=u16::MAX).step_by(97).chain([13, 14, u16::MAX]) {
        let mut buf = good.clone();
        buf[pos..pos + 2].copy_from_slice(&value.to_le_bytes());
        assert_eq!(
            wire::decode_guest_error(&buf),
            Err(DecodeError::UnknownEnumValue {
                field: "GuestError.code",
                value: i64::from(value)
            })
        );
    }

    // FunctionCall.return_type.
    let good = wire::encode_function_call(&sample_call());
    let pos = field_pos(&good, root_table(&good), SLOT2);
    for value in 10..=255u8 {
        let mut buf = good.clone();
        buf[pos] = value;
        assert_eq!(
            wire::decode_function_call(&buf),
            Err(DecodeError::UnknownEnumValue {
                field: "FunctionCall.return_type",
                value: i64::from(value)
            })
        );
    }

    // The Value union tag of the first parameter.
    let root = root_table(&good);
    let params = deref(&good, field_pos(&good, root, SLOT1));
    let first = deref(&good, params + 4);
    let pos = field_pos(&good, first, SLOT0);
    assert_eq!(good[pos], TAG_I32);
    for tag in 11..=255u8 {
        let mut buf = good.clone();
        buf[pos] = tag;
        assert_eq!(
            wire::decode_function_call(&buf),
            Err(DecodeError::UnknownValueType { tag })
        );
    }
    // Tag NONE with a value present.
    let mut buf = good.clone();
    buf[pos] = 0;
    assert_eq!(
        wire::decode_function_call(&buf),
        Err(DecodeError::MissingField { field: "value" })
    );
    // Tag of another type: the verifier checks the table as that type.
    for tag in 1..=10u8 {
        let mut buf = good.clone();
        buf[pos] = tag;
        decode_all(&buf);
    }

    // The Outcome union tag.
    let good = wire::encode_function_call_result(&Ok(Value::I32(1)));
    let pos = field_pos(&good, root_table(&good), SLOT0);
    assert_eq!(good[pos], OUTCOME_RETURN_VALUE);
    for tag in 3..=255u8 {
        let mut buf = good.clone();
        buf[pos] = tag;
        assert_eq!(
            wire::decode_function_call_result(&buf),
            Err(DecodeError::UnknownOutcome { tag })
        );
    }
    // The outcome claims to be a GuestError but is a ReturnValue: an error, no panic.
    let mut buf = good.clone();
    buf[pos] = OUTCOME_GUEST_ERROR;
    assert!(wire::decode_function_call_result(&buf).is_err());
}

#[test]
fn unknown_enum_values_built_raw() {
    // Unknown union tags whose value offset points anywhere: the value is never read.
    for tag in [11u8, 200, 255] {
        let buf = call_with_param(|fbb| {
            let v = scalar_table::<i32>(fbb, Some(1));
            union_table(fbb, Some(tag), Some(v))
        });
        assert_eq!(
            wire::decode_function_call(&buf),
            Err(DecodeError::UnknownValueType { tag })
        );
    }
    let buf = raw_result(|fbb| {
        let v = scalar_table::<i32>(fbb, Some(1));
        let rv = union_table(fbb, Some(77), Some(v));
        (Some(OUTCOME_RETURN_VALUE), Some(rv))
    });
    assert_eq!(
        wire::decode_function_call_result(&buf),
        Err(DecodeError::UnknownValueType { tag: 77 })
    );
    let buf = raw_result(|fbb| {
        let e = raw_guest_error(fbb, Some(1000), Some(b"x"));
        (Some(OUTCOME_GUEST_ERROR), Some(e))
    });
    assert_eq!(
        wire::decode_function_call_result(&buf),
        Err(DecodeError::UnknownEnumValue {
            field: "GuestError.code",
            value: 1000
        })
    );
    let buf = raw_log_record(Some(9), [Some(b"m"), Some(b"t"), Some(b"f")], Some(1));
    assert_eq!(
        wire::decode_log_record(&buf),
        Err(DecodeError::UnknownEnumValue {
            field: "LogRecord.level",
            value: 9
        })
    );
}

#[test]
fn missing_fields() {
    // Absent scalars are reported by name.
    let buf = call_with_param(|fbb| {
        let v = scalar_table::<i32>(fbb, None);
        union_table(fbb, Some(TAG_I32), Some(v))
    });
    assert_eq!(
        wire::decode_function_call(&buf),
        Err(DecodeError::MissingField {
            field: "I32Value.value"
        })
    );
    for (tag, field) in [
        (3, "U32Value.value"),
        (4, "I64Value.value"),
        (5, "U64Value.value"),
        (6, "F32Value.value"),
        (7, "F64Value.value"),
        (8, "BoolValue.value"),
    ] {
        let buf = raw_result(|fbb| {
            let v = scalar_table::<u8>(fbb, None);
            let rv = union_table(fbb, Some(tag), Some(v));
            (Some(OUTCOME_RETURN_VALUE), Some(rv))
        });
        assert_eq!(
            wire::decode_function_call_result(&buf),
            Err(DecodeError::MissingField { field })
        );
    }
    let mut fbb = FlatBufferBuilder::new();
    let p = {
        let v = scalar_table::<i32>(&mut fbb, Some(1));
        union_table(&mut fbb, Some(TAG_I32), Some(v))
    };
    let buf = raw_call(fbb, Some(b"f"), Some(&[p]), None);
    assert_eq!(
        wire::decode_function_call(&buf),
        Err(DecodeError::MissingField {
            field: "FunctionCall.return_type"
        })
    );
    let buf = raw_log_record(None, [Some(b"m"), Some(b"t"), Some(b"f")], Some(1));
    assert_eq!(
        wire::decode_log_record(&buf),
        Err(DecodeError::MissingField {
            field: "LogRecord.level"
        })
    );
    let buf = raw_log_record(Some(0), [Some(b"m"), Some(b"t"), Some(b"f")], None);
    assert_eq!(
        wire::decode_log_record(&buf),
        Err(DecodeError::MissingField {
            field: "LogRecord.line"
        })
    );
    let mut fbb = FlatBufferBuilder::new();
    let e = raw_guest_error(&mut fbb, None, Some(b"x"));
    assert_eq!(
        wire::decode_guest_error(&finish(fbb, e, wire::GUEST_ERROR_IDENTIFIER)),
        Err(DecodeError::MissingField {
            field: "GuestError.code"
        })
    );
    let buf = raw_result(|_| (Some(0), None));
    assert!(wire::decode_function_call_result(&buf).is_err());

    // Absent required strings, vectors and unions fail verification.
    invalid(wire::decode_function_call(&raw_call(
        FlatBufferBuilder::new(),
        None,
        Some(&[]),
        Some(VT_I32),
    ))); // name
    invalid(wire::decode_function_call(&raw_call(
        FlatBufferBuilder::new(),
        Some(b"f"),
        None,
        Some(VT_I32),
    ))); // parameters
    invalid(wire::decode_function_call(&call_with_param(|fbb| {
        union_table(fbb, None, None)
    })));
    invalid(wire::decode_function_call(&call_with_param(|fbb| {
        union_table(fbb, Some(TAG_I32), None)
    })));
    invalid(wire::decode_function_call(&call_with_param(|fbb| {
        let v = scalar_table::<i32>(fbb, Some(1));
        union_table(fbb, None, Some(v))
    })));
    invalid(wire::decode_function_call(&call_with_param(|fbb| {
        let v = scalar_table::<i32>(fbb, None); // a StringValue without its string
        union_table(fbb, Some(TAG_STRING), Some(v))
    })));
    invalid(wire::decode_function_call_result(&raw_result(|_| {
        (None, None)
    })));
    invalid(wire::decode_function_call_result(&raw_result(|fbb| {
        (
            Some(OUTCOME_GUEST_ERROR),
            Some(raw_guest_error(fbb, Some(1), None)),
        )
    })));
    for i in 0..3 {
        let mut strings: [Option<&[u8]>; 3] = [Some(b"m"), Some(b"t"), Some(b"f")];
        strings[i] = None;
        invalid(wire::decode_log_record(&raw_log_record(
            Some(0),
            strings,
            Some(1),
        )));
    }
    // And the complete raw messages do decode, so the tests above test what they claim.
    assert_eq!(
        wire::decode_log_record(&raw_log_record(
            Some(4),
            [Some(b"m"), Some(b"t"), Some(b"f")],
            Some(9)
        ))
        .unwrap()
        .level,
        LogLevel::Error
    );
    let buf = call_with_param(|fbb| {
        let v = scalar_table::<i32>(fbb, Some(5));
        union_table(fbb, Some(TAG_I32), Some(v))
    });
    assert_eq!(
        wire::decode_function_call(&buf).unwrap().args,
        vec![Value::I32(5)]
    );
}

#[test]
fn void_argument_built_raw_is_rejected() {
    let buf = call_with_param(|fbb| {
        let v = fbb.start_table();
        let v = fbb.end_table(v);
        union_table(fbb, Some(TAG_VOID), Some(v))
    });
    assert_eq!(
        wire::decode_function_call(&buf),
        Err(DecodeError::VoidArgument { index: 0 })
    );
}

#[test]
fn invalid_utf8_is_rejected() {
    let bad: &[&[u8]] = &[
        b"\xff",
        b"abc\xc3",
        b"\xed\xa0\x80",
        b"\xc0\xaf",
        b"ok\x80ok",
    ];
    for &s in bad {
        let r = wire::decode_function_call(&raw_call(
            FlatBufferBuilder::new(),
            Some(s),
            Some(&[]),
            Some(VT_I32),
        ));
        assert!(invalid(r).contains("Utf8"));
        let buf = call_with_param(|fbb| {
            let v = string_table(fbb, s);
            union_table(fbb, Some(TAG_STRING), Some(v))
        });
        assert!(invalid(wire::decode_function_call(&buf)).contains("Utf8"));
        let buf = raw_result(|fbb| {
            let v = string_table(fbb, s);
            let rv = union_table(fbb, Some(TAG_STRING), Some(v));
            (Some(OUTCOME_RETURN_VALUE), Some(rv))
        });
        invalid(wire::decode_function_call_result(&buf));
        let mut fbb = FlatBufferBuilder::new();
        let e = raw_guest_error(&mut fbb, Some(1), Some(s));
        invalid(wire::decode_guest_error(&finish(
            fbb,
            e,
            wire::GUEST_ERROR_IDENTIFIER,
        )));
        for i in 0..3 {
            let mut strings: [Option<&[u8]>; 3] = [Some(b"m"), Some(b"t"), Some(b"f")];
            strings[i] = Some(s);
            invalid(wire::decode_log_record(&raw_log_record(
                Some(0),
                strings,
                Some(1),
            )));
        }
    }
    // The same bytes as a byte vector are fine.
    let buf = call_with_param(|fbb| {
        let v = string_table(fbb, b"\xff\xfe");
        union_table(fbb, Some(TAG_BYTES), Some(v))
    });
    assert_eq!(
        wire::decode_function_call(&buf).unwrap().args,
        vec![Value::Bytes(vec![0xff, 0xfe])]
    );
}

#[test]
fn shared_objects_cannot_amplify_a_message() {
    // Sixteen parameters all pointing to one 64 KiB byte vector: a valid DAG whose tree is 16
    // times the buffer. The apparent-size limit rejects it.
    let mut fbb = FlatBufferBuilder::new();
    let bytes = fbb.create_vector(&vec![7u8; 64 * 1024]);
    let mut params = Vec::new();
    for _ in 0..16 {
        let t = fbb.start_table();
        fbb.push_slot_always(SLOT0, bytes);
        let v = fbb.end_table(t);
        params.push(union_table(&mut fbb, Some(TAG_BYTES), Some(v)));
    }
    let buf = raw_call(fbb, Some(b"f"), Some(&params), Some(VT_I32));
    assert!(invalid(wire::decode_function_call(&buf)).contains("Apparent size"));

    // Sixteen copies of the offset of one parameter table.
    let mut fbb = FlatBufferBuilder::new();
    let s = string_table(&mut fbb, &[b'a'; 64 * 1024]);
    let p = union_table(&mut fbb, Some(TAG_STRING), Some(s));
    let buf = raw_call(fbb, Some(b"f"), Some(&[p; 16]), Some(VT_I32));
    invalid(wire::decode_function_call(&buf));

    // Sharing small objects stays within the slack and is accepted.
    let mut fbb = FlatBufferBuilder::new();
    let v = scalar_table::<i32>(&mut fbb, Some(3));
    let p = union_table(&mut fbb, Some(TAG_I32), Some(v));
    let buf = raw_call(fbb, Some(b"f"), Some(&[p; 16]), Some(VT_I32));
    assert_eq!(
        wire::decode_function_call(&buf).unwrap().args,
        vec![Value::I32(3); 16]
    );
}

#[test]
fn too_many_tables_are_rejected_without_decoding() {
    // A thousand distinct parameters: the verifier stops at MAX_TABLES.
    let mut fbb = FlatBufferBuilder::new();
    let params: Vec<Off> = (0..1000)
        .map(|i| {
            let v = scalar_table::<i32>(&mut fbb, Some(i));
            union_table(&mut fbb, Some(TAG_I32), Some(v))
        })
        .collect();
    let buf = raw_call(fbb, Some(b"f"), Some(&params), Some(VT_I32));
    assert!(invalid(wire::decode_function_call(&buf)).contains("Too many tables"));
    // A hundred thousand copies of one parameter: stopped too (by the apparent size first).
    let mut fbb = FlatBufferBuilder::new();
    let v = scalar_table::<i32>(&mut fbb, Some(3));
    let p = union_table(&mut fbb, Some(TAG_I32), Some(v));
    let buf = raw_call(fbb, Some(b"f"), Some(&vec![p; 100_000]), Some(VT_I32));
    invalid(wire::decode_function_call(&buf));
}

// ---------------------------------------------------------------------------------------------
// Mutation fuzzing

fn next(state: &mut u64) -> u64 {
    // xorshift64*
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn mutated_valid_messages_never_panic() {
    let inputs = sample_encodings();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut accepted = 0;
    // SCHEMA_FUZZ_ITERATIONS=N runs longer (e.g. with --release).
    let iterations: usize = std::env::var("SCHEMA_FUZZ_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    for i in 0..iterations {
        let mut buf = inputs[i % inputs.len()].clone();
        let mutations = 1 + next(&mut seed) % 4;
        for _ in 0..mutations {
            let r = next(&mut seed);
            let len = buf.len().max(1);
            let pos = (r >> 8) as usize % len;
            match r % 8 {
                0 | 1 => {
                    if let Some(b) = buf.get_mut(pos) {
                        *b = (r >> 40) as u8;
                    }
                }
                2 | 3 => {
                    if let Some(b) = buf.get_mut(pos) {
                        *b ^= 1 << ((r >> 40) % 8);
                    }
                }
                4 => {
                    let v = [0u8, 0xff, 0x7f, 0x80, 1][(r >> 40) as usize % 5];
                    if let Some(b) = buf.get_mut(pos) {
                        *b = v;
                    }
                }
                5 => {
                    // A random 32-bit value at an aligned position (offsets, lengths).
                    let pos = pos & !3;
                    if pos + 4 <= buf.len() {
                        buf[pos..pos + 4].copy_from_slice(&((r >> 32) as u32).to_le_bytes());
                    }
                }
                6 => buf.truncate(pos),
                _ => {
                    // Give it another type's identifier (type confusion beyond the check).
                    if buf.len() >= 8 {
                        buf[4..8].copy_from_slice(IDENTIFIERS[(r >> 40) as usize % 4].as_bytes());
                    }
                }
            }
        }
        accepted += decode_all(&buf);
    }
    // Some mutations (e.g. of a string's bytes or a scalar) leave a valid message.
    eprintln!("{accepted} of {iterations} mutated messages still decode");
    assert!(accepted > 0);
}
