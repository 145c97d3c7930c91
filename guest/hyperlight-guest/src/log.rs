//! Logging to the host: each record costs one VM exit on `PORT_LOG`.

use alloc::string::String;
use core::fmt;

use hyperlight_schema::abi::PORT_LOG;
use hyperlight_schema::wire::encode_log_record;
use hyperlight_schema::{LogLevel, LogRecord};

use crate::runtime::{output_size, send};

/// Sends one log record to the host. The macros [`trace!`](crate::trace),
/// [`debug!`](crate::debug), [`info!`](crate::info), [`warn!`](crate::warn) and
/// [`error!`](crate::error) call it with the caller's module path, file and line.
///
/// A record larger than the output buffer is sent with its message truncated (ending in `…`);
/// if even that does not fit, the record is dropped.
pub fn log(level: LogLevel, target: &str, file: &str, line: u32, args: fmt::Arguments<'_>) {
    let mut record = LogRecord {
        level,
        message: alloc::fmt::format(args),
        target: String::from(target),
        file: String::from(file),
        line,
    };
    let mut encoded = encode_log_record(&record);
    let max = output_size();
    if encoded.len() > max {
        let overhead = encoded.len() - record.message.len();
        let mut keep = max.saturating_sub(overhead + 8);
        while !record.message.is_char_boundary(keep) {
            keep -= 1;
        }
        record.message.truncate(keep);
        record.message.push('…');
        encoded = encode_log_record(&record);
    }
    // Too large even truncated: there is nothing useful to send.
    let _ = send(PORT_LOG, &encoded);
}

/// Logs at a given [`LogLevel`](crate::LogLevel): `log!(LogLevel::Info, "x = {}", x)`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {
        $crate::log::log($level, ::core::module_path!(), ::core::file!(), ::core::line!(), ::core::format_args!($($arg)+))
    };
}

/// Logs at level `Trace`, with `format!` syntax.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log!($crate::LogLevel::Trace, $($arg)+) };
}

/// Logs at level `Debug`, with `format!` syntax.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log!($crate::LogLevel::Debug, $($arg)+) };
}

/// Logs at level `Info`, with `format!` syntax.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log!($crate::LogLevel::Info, $($arg)+) };
}

/// Logs at level `Warn`, with `format!` syntax.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log!($crate::LogLevel::Warn, $($arg)+) };
}

/// Logs at level `Error`, with `format!` syntax.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log!($crate::LogLevel::Error, $($arg)+) };
}
