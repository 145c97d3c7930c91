//! What a linked module exports, and the check of a call against it before any Wasm runs.

use std::collections::HashMap;

use hyperlight_async::{Value, ValueType};
use hyperlight_schema::wasm::{
    is_indirect, lower_export, Extern, ExternKind, FuncType, REALLOC_EXPORT,
};

use crate::error::Error;
use crate::wasi::{WasiConfig, WasiLimits, WasiRun};

/// A module's exports, as the runner reported them after linking.
#[derive(Debug)]
pub(crate) struct Exports {
    functions: HashMap<String, FuncType>,
    all: Vec<Extern>,
    imports: Vec<Extern>,
    has_realloc: bool,
    /// WASI's configuration, if the module was linked with it.
    wasi: Option<WasiConfig>,
}

impl Exports {
    pub(crate) fn new(all: Vec<Extern>, imports: Vec<Extern>, wasi: Option<WasiConfig>) -> Self {
        let functions: HashMap<String, FuncType> = all
            .iter()
            .filter(|e| e.kind == ExternKind::Func)
            .filter_map(|e| Some((e.name.clone(), e.ty.clone()?)))
            .collect();
        let realloc = FuncType {
            params: vec![hyperlight_schema::wasm::CoreType::I32; 4],
            results: vec![hyperlight_schema::wasm::CoreType::I32],
        };
        let has_realloc = functions.get(REALLOC_EXPORT) == Some(&realloc);
        Exports {
            functions,
            all,
            imports,
            has_realloc,
            wasi,
        }
    }

    /// The encoded request of a WASI run, checked against the limits.
    pub(crate) fn wasi_request(&self, run: WasiRun) -> Result<Vec<u8>, Error> {
        let config = self.wasi.as_ref().ok_or(Error::WasiDisabled)?;
        crate::wasi::request(config, run)
    }

    /// The WASI limits (the defaults without WASI).
    pub(crate) fn wasi_limits(&self) -> WasiLimits {
        self.wasi.map(|c| c.limits).unwrap_or_default()
    }

    /// Every export (functions, memories, tables, globals) in the module's order.
    pub(crate) fn all(&self) -> &[Extern] {
        &self.all
    }

    /// Every import, in the module's order.
    pub(crate) fn imports(&self) -> &[Extern] {
        &self.imports
    }

    /// Checks a call of `name` with `args` for a `result` against the export's core type.
    pub(crate) fn check(&self, name: &str, args: &[Value], result: ValueType) -> Result<(), Error> {
        let Some(declared) = self.functions.get(name) else {
            return Err(Error::UnknownExport {
                name: name.to_string(),
            });
        };
        let types: Vec<ValueType> = args.iter().map(Value::value_type).collect();
        let called = lower_export(&types, result);
        if called.as_ref() != Some(declared) {
            return Err(Error::ExportType {
                name: name.to_string(),
                declared: declared.clone(),
                called,
            });
        }
        if types.iter().any(|&t| is_indirect(t)) && !self.has_realloc {
            return Err(Error::Abi {
                export: name.to_string(),
                message: format!(
                    "a String or Vec<u8> argument needs the export `{REALLOC_EXPORT}` of type \
                     (param i32 i32 i32 i32) (result i32), which the module lacks"
                ),
            });
        }
        Ok(())
    }
}
