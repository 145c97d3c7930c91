//! The in-process baseline of the WASI benchmark (`benches/wasi.rs`): a WASI command run on
//! wasmi 2.0 in the benchmark's own process, with `wasmi_wasi` 2.0 (wasi-common) as its
//! preview 1: a fresh instance and WASI context per run, stdin from memory, stdout and stderr
//! captured in memory. A baseline to measure against, not a sandbox: the module runs in the
//! host process, without a VM boundary.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use wasmi::{Engine, Linker, Module, Store};
use wasmi_wasi::wasi_common::pipe::{ReadPipe, WritePipe};
use wasmi_wasi::{WasiCtx, WasiCtxBuilder};

/// A compiled WASI command, run in a fresh wasmi instance each time.
pub struct InProcessWasi {
    engine: Engine,
    module: Module,
    linker: Linker<WasiCtx>,
}

/// One run's result: exit code, stdout, stderr.
pub type Output = (i32, Vec<u8>, Vec<u8>);

/// Why a run failed.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

impl InProcessWasi {
    /// Compiles `wasm` and links `wasmi_wasi`'s preview 1.
    pub fn new(wasm: &[u8]) -> Result<Self, Error> {
        let engine = Engine::default();
        let module = Module::new(&engine, wasm)?;
        let mut linker = Linker::<WasiCtx>::new(&engine);
        wasmi_wasi::add_to_linker(&mut linker, |ctx| ctx)?;
        Ok(InProcessWasi {
            engine,
            module,
            linker,
        })
    }

    /// Runs `_start` once in a fresh instance.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Result<Output, Error> {
        let stdout = Arc::new(RwLock::new(Vec::new()));
        let stderr = Arc::new(RwLock::new(Vec::new()));
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let ctx = WasiCtxBuilder::new()
            .args(&args)?
            .stdin(Box::new(ReadPipe::new(Cursor::new(stdin.to_vec()))))
            .stdout(Box::new(WritePipe::from_shared(stdout.clone())))
            .stderr(Box::new(WritePipe::from_shared(stderr.clone())))
            .build();
        let mut store = Store::new(&self.engine, ctx);
        let instance = self
            .linker
            .instantiate_and_start(&mut store, &self.module)?;
        let start = instance.get_typed_func::<(), ()>(&store, "_start")?;
        let code = match start.call(&mut store, ()) {
            Ok(()) => 0,
            Err(e) => e.i32_exit_status().ok_or(e)?,
        };
        drop(store);
        let take = |pipe: Arc<RwLock<Vec<u8>>>| {
            std::mem::take(&mut *pipe.write().unwrap_or_else(|e| e.into_inner()))
        };
        Ok((code, take(stdout), take(stderr)))
    }
}
