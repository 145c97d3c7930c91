//! The test Wasm modules: the Rust crates of `testing/wasm-modules` (built by the build script for
//! `wasm32-unknown-unknown`) and the hand-written text modules of `testing/wat` (compiled when
//! asked for).

use std::path::{Path, PathBuf};

/// The directory holding the built Wasm modules:
/// `<repo>/testing/wasm-modules/target/wasm32-unknown-unknown/release`.
pub const WASM_DIR: &str = env!("HYPERLIGHT_WASM_DIR");

/// The directory holding the WASI programs built for `wasm32-wasip1`:
/// `<repo>/testing/wasi-programs/target/wasm32-wasip1/release`.
pub const WASI_DIR: &str = env!("HYPERLIGHT_WASI_DIR");

/// The directory holding the same programs built for the host:
/// `<repo>/testing/wasi-programs/target/<host triple>/release`.
const WASI_NATIVE_DIR: &str = env!("HYPERLIGHT_WASI_NATIVE_DIR");

/// The bytes of the WASI program `name` (a crate of `testing/wasi-programs`: `"jsonfmt"`), built
/// for `wasm32-wasip1`; panics, naming the file, if it cannot be read.
///
/// ```
/// let jsonfmt = hyperlight_testing::wasi_program("jsonfmt");
/// assert_eq!(&jsonfmt[..4], b"\0asm");
/// ```
pub fn wasi_program(name: &str) -> Vec<u8> {
    let path = Path::new(WASI_DIR).join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read the WASI program {}: {e}", path.display()))
}

/// The path of the same program built for the host, to run as a process.
pub fn wasi_native(name: &str) -> PathBuf {
    Path::new(WASI_NATIVE_DIR).join(name)
}

/// The directory of the hand-written text modules, `<repo>/testing/wat`.
const WAT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/wat");

/// Path of the built Wasm module `name` (a crate of the `testing/wasm-modules` workspace:
/// `"plugin"` or `"compute"`), `<WASM_DIR>/<name>.wasm`.
///
/// The file exists for every crate of the workspace once this crate has been built; the function
/// does not check.
pub fn wasm_module(name: &str) -> PathBuf {
    Path::new(WASM_DIR).join(format!("{name}.wasm"))
}

/// The bytes of the built Wasm module `name` (see [`wasm_module`]); panics, naming the file, if it
/// cannot be read.
///
/// ```
/// let plugin = hyperlight_testing::wasm_bytes("plugin");
/// assert_eq!(&plugin[..4], b"\0asm");
/// ```
pub fn wasm_bytes(name: &str) -> Vec<u8> {
    let path = wasm_module(name);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read the Wasm module {}: {e}", path.display()))
}

/// The binary module compiled from the hand-written `testing/wat/<name>.wat` (e.g. `"traps"`;
/// each file's header says what it is for); panics, naming the file, if it cannot be read or does
/// not compile.
///
/// ```
/// let traps = hyperlight_testing::wat("traps");
/// assert_eq!(&traps[..4], b"\0asm");
/// ```
pub fn wat(name: &str) -> Vec<u8> {
    wat_file(&Path::new(WAT_DIR).join(format!("{name}.wat")))
}

/// [`wat`] for a path.
fn wat_file(path: &Path) -> Vec<u8> {
    wat::parse_file(path).unwrap_or_else(|e| panic!("cannot compile {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use wasmparser::{ExternalKind, FuncType, Parser, Payload, TypeRef, ValType};

    use ValType::{F32, F64, I32, I64};

    #[test]
    fn every_wat_file_compiles() {
        let mut compiled = 0;
        for entry in std::fs::read_dir(WAT_DIR).expect("testing/wat") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|ext| ext == "wat") {
                let bytes = wat_file(&path);
                wasmparser::validate(&bytes)
                    .unwrap_or_else(|e| panic!("{} is not valid: {e}", path.display()));
                compiled += 1;
            }
        }
        assert!(compiled >= 12, "only {compiled} .wat files in {WAT_DIR}");
    }

    /// The exports and function imports of a module, by name, with their core signatures
    /// (`"module.name"` for imports), and the names of its non-function exports.
    struct Interface {
        exports: BTreeMap<String, FuncType>,
        other_exports: Vec<String>,
        imports: BTreeMap<String, FuncType>,
    }

    fn interface(bytes: &[u8]) -> Interface {
        let mut types = Vec::new();
        let mut functions = Vec::new();
        let mut interface = Interface {
            exports: BTreeMap::new(),
            other_exports: Vec::new(),
            imports: BTreeMap::new(),
        };
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.expect("a valid module") {
                Payload::TypeSection(reader) => {
                    for ty in reader.into_iter_err_on_gc_types() {
                        types.push(ty.expect("a function type"));
                    }
                }
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        let import = import.expect("an import");
                        let TypeRef::Func(index) = import.ty else {
                            panic!("import {}.{} is not a function", import.module, import.name)
                        };
                        functions.push(index);
                        interface.imports.insert(
                            format!("{}.{}", import.module, import.name),
                            types[index as usize].clone(),
                        );
                    }
                }
                Payload::FunctionSection(reader) => {
                    for index in reader {
                        functions.push(index.expect("a function"));
                    }
                }
                Payload::ExportSection(reader) => {
                    for export in reader {
                        let export = export.expect("an export");
                        if export.kind == ExternalKind::Func {
                            let ty = &types[functions[export.index as usize] as usize];
                            interface.exports.insert(export.name.to_owned(), ty.clone());
                        } else {
                            interface.other_exports.push(export.name.to_owned());
                        }
                    }
                }
                _ => {}
            }
        }
        interface
    }

    /// Checks that the module `name` is a Wasm binary with exactly the given function exports and
    /// imports, each with its core signature, and that its other exports are its memory and the
    /// two immutable globals rustc's wasm linking exports from every cdylib.
    fn check_interface(
        name: &str,
        exports: &[(&str, &[ValType], &[ValType])],
        imports: &[(&str, &[ValType], &[ValType])],
    ) {
        let bytes = wasm_bytes(name);
        assert_eq!(&bytes[..4], b"\0asm", "{name}: Wasm magic");
        let interface = interface(&bytes);
        let expected = |list: &[(&str, &[ValType], &[ValType])]| -> BTreeMap<String, FuncType> {
            list.iter()
                .map(|(name, params, results)| {
                    (
                        name.to_string(),
                        FuncType::new(params.iter().copied(), results.iter().copied()),
                    )
                })
                .collect()
        };
        assert_eq!(interface.exports, expected(exports), "{name}: exports");
        assert_eq!(interface.imports, expected(imports), "{name}: imports");
        assert_eq!(
            interface.other_exports,
            ["memory", "__data_end", "__heap_base"],
            "{name}: other exports"
        );
    }

    #[test]
    fn plugin_follows_the_convention() {
        check_interface(
            "plugin",
            &[
                ("add", &[I32, I32], &[I32]),
                ("add64", &[I64, I64], &[I64]),
                ("mul_f32", &[F32, F32], &[F32]),
                ("mul_f64", &[F64, F64], &[F64]),
                ("negate", &[I32], &[I32]),
                ("wrapping_u64", &[I64], &[I64]),
                ("upper", &[I32, I32], &[I32]),
                ("reverse", &[I32, I32], &[I32]),
                ("concat", &[I32, I32, I32, I32], &[I32]),
                ("len_of", &[I32, I32], &[I32]),
                ("echo_host", &[I32, I32], &[I32]),
                ("sum_host", &[I32], &[I64]),
                ("lookup", &[I32, I32], &[I32]),
                ("bytes_host", &[I32, I32], &[I32]),
                ("scalars_host", &[], &[F64]),
                ("counter", &[], &[I32]),
                ("fail", &[I32], &[]),
                ("cabi_realloc", &[I32, I32, I32, I32], &[I32]),
                ("cabi_post_upper", &[I32], &[]),
                ("cabi_post_reverse", &[I32], &[]),
                ("cabi_post_concat", &[I32], &[]),
                ("cabi_post_echo_host", &[I32], &[]),
            ],
            &[
                ("env.host_echo", &[I32, I32, I32], &[]),
                ("env.lookup", &[I32, I32, I32], &[]),
                ("env.host_bytes", &[I32, I32, I32], &[]),
                ("env.host_add", &[I32, I32], &[I32]),
                ("env.host_f32", &[F32], &[F32]),
                ("env.host_f64", &[F64], &[F64]),
                ("env.host_i64", &[I64], &[I64]),
            ],
        );
    }

    #[test]
    fn compute_follows_the_convention() {
        check_interface(
            "compute",
            &[
                ("sha256", &[I32, I32], &[I32]),
                ("sha256_rounds", &[I32], &[I32]),
                ("nbody", &[I32], &[F64]),
                ("cabi_realloc", &[I32, I32, I32, I32], &[I32]),
                ("cabi_post_sha256", &[I32], &[]),
            ],
            &[],
        );
    }
}
