//! The `compute` module run in this process, outside any sandbox: by wasmi (the engine the
//! runner embeds) and, with the `wasmtime` feature, by Wasmtime (Cranelift).

use crate::compute::Compute;

/// The `compute` module instantiated by wasmi in this process (default configuration, no fuel).
pub struct Wasmi {
    store: wasmi::Store<()>,
    sha256_rounds: wasmi::TypedFunc<i32, i32>,
    nbody: wasmi::TypedFunc<i32, f64>,
}

impl Wasmi {
    /// Compiles and instantiates the module `bytes` (the `compute` module or one with its
    /// exports).
    ///
    /// # Errors
    ///
    /// If the module is invalid, has imports, or lacks the exports with their types.
    pub fn new(bytes: &[u8]) -> Result<Wasmi, wasmi::Error> {
        let engine = wasmi::Engine::default();
        let module = wasmi::Module::new(&engine, bytes)?;
        let mut store = wasmi::Store::new(&engine, ());
        let instance = wasmi::Linker::new(&engine).instantiate_and_start(&mut store, &module)?;
        Ok(Wasmi {
            sha256_rounds: instance.get_typed_func(&store, "sha256_rounds")?,
            nbody: instance.get_typed_func(&store, "nbody")?,
            store,
        })
    }
}

impl Compute for Wasmi {
    fn sha256_rounds(&mut self, n: i32) -> i32 {
        self.sha256_rounds
            .call(&mut self.store, n)
            .expect("sha256_rounds in wasmi")
    }

    fn nbody(&mut self, steps: i32) -> f64 {
        self.nbody
            .call(&mut self.store, steps)
            .expect("nbody in wasmi")
    }
}

/// The `compute` module instantiated by Wasmtime in this process (default configuration:
/// Cranelift, optimizing for speed).
#[cfg(feature = "wasmtime")]
pub struct Wasmtime {
    store: wasmtime::Store<()>,
    sha256_rounds: wasmtime::TypedFunc<i32, i32>,
    nbody: wasmtime::TypedFunc<i32, f64>,
}

#[cfg(feature = "wasmtime")]
impl Wasmtime {
    /// Compiles and instantiates the module `bytes`, as [`Wasmi::new`].
    ///
    /// # Errors
    ///
    /// As [`Wasmi::new`].
    pub fn new(bytes: &[u8]) -> wasmtime::Result<Wasmtime> {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, bytes)?;
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = wasmtime::Instance::new(&mut store, &module, &[])?;
        Ok(Wasmtime {
            sha256_rounds: instance.get_typed_func(&mut store, "sha256_rounds")?,
            nbody: instance.get_typed_func(&mut store, "nbody")?,
            store,
        })
    }
}

#[cfg(feature = "wasmtime")]
impl Compute for Wasmtime {
    fn sha256_rounds(&mut self, n: i32) -> i32 {
        self.sha256_rounds
            .call(&mut self.store, n)
            .expect("sha256_rounds in Wasmtime")
    }

    fn nbody(&mut self, steps: i32) -> f64 {
        self.nbody
            .call(&mut self.store, steps)
            .expect("nbody in Wasmtime")
    }
}
