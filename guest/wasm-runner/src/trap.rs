//! wasmi's traps as the protocol's [`Trap`]s.

use alloc::string::{String, ToString};

use hyperlight_guest::schema::wasm::Trap;
use wasmi::errors::{ErrorKind, InstantiationError, MemoryError, TableError};
use wasmi::TrapCode;

/// The trap of a failed wasmi call, and its detail: empty for a trap the protocol names, the
/// engine's text for any other failure ([`Trap::Other`]) and for a memory or table that could
/// not be created at instantiation ([`Trap::MemoryLimit`]: past the limits, or no heap left).
pub fn from_wasmi(error: &wasmi::Error) -> (Trap, String) {
    let Some(code) = error.as_trap_code() else {
        let trap = match error.kind() {
            ErrorKind::Instantiation(
                InstantiationError::FailedToInstantiateMemory(
                    MemoryError::ResourceLimiterDeniedAllocation,
                )
                | InstantiationError::FailedToInstantiateTable(
                    TableError::ResourceLimiterDeniedAllocation,
                ),
            ) => Trap::MemoryLimit,
            _ => Trap::Other,
        };
        return (trap, error.to_string());
    };
    let trap = match code {
        TrapCode::UnreachableCodeReached => Trap::Unreachable,
        TrapCode::MemoryOutOfBounds => Trap::MemoryOutOfBounds,
        TrapCode::TableOutOfBounds => Trap::TableOutOfBounds,
        TrapCode::IndirectCallToNull => Trap::IndirectCallToNull,
        TrapCode::IntegerDivisionByZero => Trap::IntegerDivisionByZero,
        TrapCode::IntegerOverflow => Trap::IntegerOverflow,
        TrapCode::BadConversionToInteger => Trap::BadConversionToInteger,
        TrapCode::StackOverflow => Trap::StackOverflow,
        TrapCode::BadSignature => Trap::BadSignature,
        TrapCode::OutOfFuel => Trap::OutOfFuel,
        TrapCode::GrowthOperationLimited => Trap::MemoryLimit,
        other => return (Trap::Other, String::from(other.trap_message())),
    };
    (trap, String::new())
}
