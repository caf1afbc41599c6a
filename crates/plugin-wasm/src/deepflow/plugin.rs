//! The wasmtime side of the DeepFlow ABI: loading, the `deepflow` imports, the parser.

use super::ctx::CtxBase;
use super::result::{self, decode_result, DeepFlowInfo};
use super::*;
use crate::host::PluginHost;
use crate::wasi::{self, HasWasi, ProcExit, WasiCtx};
use crate::{PluginError, PluginStats, WasmPlugin};
use fathom_model::{Direction, FlowKey, L7Protocol};
use fathom_protocols::{
    Correlation, FlowParser, L7Parser, Limits, LogInfo, Message, MessageHook, MessageKind,
    ParseCtx, ParseError, ParseErrorKind, Probe, ProbeInput, Transports,
};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use wasmtime::{
    Caller, Extern, Linker, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc,
};

/// The exports a DeepFlow-ABI module is recognised by (any one of them, or an import from `deepflow`).
const DEEPFLOW_EXPORTS: [&str; 3] = ["check_payload", "parse_payload", "get_hook_bitmap"];

/// What a module is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleAbi {
    /// Fathom's own ABI (`docs/plugins.md`).
    Fathom,
    /// DeepFlow's ABI.
    DeepFlow,
}

/// Which ABI `module` speaks, if any.
pub fn detect_abi(module: &Module) -> Option<ModuleAbi> {
    if module.exports().any(|e| e.name() == "fathom_abi_version") {
        return Some(ModuleAbi::Fathom);
    }
    let imports_deepflow = module.imports().any(|i| i.module() == IMPORT_MODULE);
    let exports_deepflow = module
        .exports()
        .any(|e| DEEPFLOW_EXPORTS.contains(&e.name()));
    (imports_deepflow || exports_deepflow).then_some(ModuleAbi::DeepFlow)
}

/// A plugin of either ABI, as [`PluginHost::load_any`] returns it.
#[derive(Debug, Clone)]
pub enum AnyPlugin {
    /// A Fathom-ABI plugin.
    Fathom(Arc<WasmPlugin>),
    /// A DeepFlow-ABI plugin.
    DeepFlow(Arc<DeepFlowPlugin>),
}

impl AnyPlugin {
    /// Which ABI the plugin speaks: `"fathom"` or `"deepflow"`.
    pub fn abi(&self) -> &'static str {
        match self {
            AnyPlugin::Fathom(_) => "fathom",
            AnyPlugin::DeepFlow(_) => "deepflow",
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        match self {
            AnyPlugin::Fathom(p) => p.name(),
            AnyPlugin::DeepFlow(p) => p.name(),
        }
    }

    /// The parser to register with [`fathom_protocols::Engine::register`], if the plugin parses a protocol.
    pub fn parser(&self) -> Option<Arc<dyn L7Parser>> {
        match self {
            AnyPlugin::Fathom(p) => p.has_parser().then(|| p.clone() as Arc<dyn L7Parser>),
            AnyPlugin::DeepFlow(p) => p.parses().then(|| p.clone() as Arc<dyn L7Parser>),
        }
    }

    /// The hook to register with [`fathom_protocols::Engine::add_hook`], if the plugin hooks messages.
    pub fn hook(&self) -> Option<Arc<dyn MessageHook>> {
        match self {
            AnyPlugin::Fathom(p) => p.has_hooks().then(|| p.clone() as Arc<dyn MessageHook>),
            AnyPlugin::DeepFlow(p) => p.hooks_http().then(|| p.clone() as Arc<dyn MessageHook>),
        }
    }

    /// A snapshot of its counters.
    pub fn stats(&self) -> PluginStats {
        match self {
            AnyPlugin::Fathom(p) => p.stats(),
            AnyPlugin::DeepFlow(p) => p.stats(),
        }
    }
}

impl PluginHost {
    /// Compile a module, recognise its ABI (Fathom's or DeepFlow's, see [`detect_abi`]) and load it.
    ///
    /// # Errors
    /// [`PluginError::NotAPlugin`] when the module speaks neither ABI, [`PluginError::UnknownImport`] when it
    /// imports a function this host does not provide, and the errors of [`PluginHost::load`] /
    /// [`PluginHost::load_deepflow`].
    pub fn load_any(&self, name: &str, wasm: &[u8]) -> Result<AnyPlugin, PluginError> {
        let module =
            Module::new(self.engine(), wasm).map_err(|e| PluginError::Compile(format!("{e:#}")))?;
        match detect_abi(&module) {
            Some(ModuleAbi::Fathom) => self.load_module(name, &module).map(AnyPlugin::Fathom),
            Some(ModuleAbi::DeepFlow) => self
                .load_deepflow_module(name, &module)
                .map(AnyPlugin::DeepFlow),
            None => {
                let exports: Vec<String> = module.exports().map(|e| e.name().to_string()).collect();
                Err(PluginError::NotAPlugin(format!(
                    "it neither exports `fathom_abi_version` (Fathom ABI) nor imports from `deepflow` / \
                     exports `check_payload`, `parse_payload` or `get_hook_bitmap` (DeepFlow ABI); its exports: \
                     [{}]",
                    exports.join(", ")
                )))
            }
        }
    }

    /// Compile and load a DeepFlow-ABI plugin: link the `deepflow` and WASI imports, run `_initialize` or
    /// `_start`, read the hook bitmap. Its protocol is `L7Protocol::Custom(name)`.
    ///
    /// # Errors
    /// See [`PluginError`].
    pub fn load_deepflow(
        &self,
        name: &str,
        wasm: &[u8],
    ) -> Result<Arc<DeepFlowPlugin>, PluginError> {
        let module =
            Module::new(self.engine(), wasm).map_err(|e| PluginError::Compile(format!("{e:#}")))?;
        self.load_deepflow_module(name, &module)
    }

    fn load_deepflow_module(
        &self,
        name: &str,
        module: &Module,
    ) -> Result<Arc<DeepFlowPlugin>, PluginError> {
        let config = self.config();
        let name: Arc<str> = Arc::from(name);
        let linker = linker(self.engine()).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        check_imports(module)?;
        let mut store = Store::new(self.engine(), State::new(name.clone(), config));
        store.limiter(|s| &mut s.limits);
        let fuel = config.fuel_per_call.saturating_mul(FUEL_FACTOR);
        let set_fuel = |store: &mut Store<State>, f: u64| {
            store
                .set_fuel(f)
                .map_err(|e| PluginError::Engine(format!("{e:#}")))
        };
        set_fuel(
            &mut store,
            config.fuel_per_call.saturating_mul(INIT_FUEL_FACTOR),
        )?;
        let instance = linker
            .instantiate(&mut store, module)
            .map_err(|e| PluginError::Instantiate(format!("{e:#}")))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| PluginError::MissingExport("memory", "no exported memory".into()))?;
        store.data_mut().memory = Some(memory);
        // A reactor's `_initialize`, then a command's `_start` (TinyGo: runs `main`, which sets the parser).
        // `proc_exit(0)` ends `_start` normally.
        for init in ["_initialize", "_start"] {
            if let Ok(f) = instance.get_typed_func::<(), ()>(&mut store, init) {
                match f.call(&mut store, ()) {
                    Ok(()) => {}
                    Err(e) if e.downcast_ref::<ProcExit>() == Some(&ProcExit(0)) => {}
                    Err(e) => {
                        return Err(PluginError::Instantiate(format!("{init} failed: {e:#}")));
                    }
                }
            }
        }
        let get = |store: &mut Store<State>, n: &'static str| {
            instance
                .get_func(&mut *store, n)
                .map(|f| {
                    f.typed::<(), i32>(&*store)
                        .map_err(|e| PluginError::MissingExport(n, format!("{e:#}")))
                })
                .transpose()
        };
        let hook_bitmap = get(&mut store, "get_hook_bitmap")?.ok_or_else(|| {
            PluginError::MissingExport("get_hook_bitmap", "no such function".into())
        })?;
        set_fuel(&mut store, fuel)?;
        let ptr = hook_bitmap
            .call(&mut store, ())
            .map_err(|e| PluginError::Instantiate(format!("get_hook_bitmap failed: {e:#}")))?;
        let bitmap = if ptr == 0 {
            0
        } else {
            let mut b = [0u8; 16];
            memory
                .read(&store, ptr as u32 as usize, &mut b)
                .map_err(|_| {
                    PluginError::Instantiate(
                        "get_hook_bitmap returned an out-of-bounds pointer".into(),
                    )
                })?;
            u128::from_be_bytes(b)
        };
        let need = |store: &mut Store<State>, bit: u128, n: &'static str| {
            let f = get(store, n)?;
            if bitmap & bit != 0 && f.is_none() {
                return Err(PluginError::MissingExport(
                    n,
                    "the hook bitmap asks for it but it is not exported".into(),
                ));
            }
            Ok(f.filter(|_| bitmap & bit != 0))
        };
        let sandbox = Sandbox {
            check: need(&mut store, HOOK_PAYLOAD_PARSE, "check_payload")?,
            parse: need(&mut store, HOOK_PAYLOAD_PARSE, "parse_payload")?,
            on_http_req: need(&mut store, HOOK_HTTP_REQ, "on_http_req")?,
            on_http_resp: need(&mut store, HOOK_HTTP_RESP, "on_http_resp")?,
            store,
            fuel,
        };
        tracing::debug!(plugin = %name, bitmap = format!("{bitmap:#034x}"), "DeepFlow-ABI plugin loaded.");
        Ok(Arc::new(DeepFlowPlugin {
            protocol: L7Protocol::Custom(name.clone()),
            shared: Arc::new(Shared {
                name,
                bitmap,
                sandbox: Mutex::new(sandbox),
                max_failures: config.max_failures,
                max_window: config.max_parse_window.min(MAX_PAYLOAD_LEN),
                proto_num: AtomicU8::new(0),
                proto_str: OnceLock::new(),
                calls: AtomicU64::new(0),
                traps: AtomicU64::new(0),
                timeouts: AtomicU64::new(0),
                bad_results: AtomicU64::new(0),
                disabled: AtomicBool::new(false),
            }),
        }))
    }
}

/// The inputs and outputs of the guest call in progress.
#[derive(Debug, Default)]
pub(super) struct Call {
    active: bool,
    direction: Option<Direction>,
    pub(super) base: Vec<u8>,
    pub(super) payload: Vec<u8>,
    pub(super) http_req: Option<Vec<u8>>,
    pub(super) http_resp: Option<[u8; 3]>,
    infos: Option<Vec<DeepFlowInfo>>,
    name: Option<String>,
    bad: Option<String>,
}

impl Call {
    fn begin(&mut self, direction: Direction) {
        self.active = true;
        self.direction = Some(direction);
        self.base.clear();
        self.payload.clear();
        self.http_req = None;
        self.http_resp = None;
        self.infos = None;
        self.name = None;
        self.bad = None;
    }
}

/// Store data of one DeepFlow plugin.
struct State {
    limits: StoreLimits,
    wasi: WasiCtx,
    call: Call,
    plugin: Arc<str>,
    memory: Option<Memory>,
}

impl State {
    fn new(plugin: Arc<str>, config: &crate::PluginConfig) -> State {
        State {
            limits: StoreLimitsBuilder::new()
                .memory_size(config.max_memory_bytes)
                .table_elements(config.max_table_elements)
                .instances(1)
                .memories(1)
                .tables(4)
                .trap_on_grow_failure(true)
                .build(),
            wasi: WasiCtx::new(plugin.clone()),
            call: Call::default(),
            plugin,
            memory: None,
        }
    }
}

impl HasWasi for State {
    fn wasi(&mut self) -> &mut WasiCtx {
        &mut self.wasi
    }

    fn memory(&self) -> Option<Memory> {
        self.memory
    }
}

fn guest_memory(caller: &mut Caller<'_, State>) -> Option<Memory> {
    if let Some(m) = caller.data().memory {
        return Some(m);
    }
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

fn guest_range(ptr: i32, len: i32, size: usize) -> Option<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize)?;
    (end <= size).then_some(start..end)
}

/// `vm_read_*`: copy `bytes(call)` into the guest buffer; 0 when it does not fit, is out of bounds or absent.
fn vm_read(
    mut caller: Caller<'_, State>,
    ptr: i32,
    len: i32,
    pick: fn(&Call) -> Option<&[u8]>,
    too_small: i32,
) -> i32 {
    let Some(mem) = guest_memory(&mut caller) else {
        return 0;
    };
    let (data, st) = mem.data_and_store_mut(&mut caller);
    if !st.call.active {
        return 0;
    }
    let Some(r) = guest_range(ptr, len, data.len()) else {
        return 0;
    };
    let Some(bytes) = pick(&st.call) else {
        return 0;
    };
    if bytes.len() > r.len() {
        return too_small;
    }
    data[r.start..r.start + bytes.len()].copy_from_slice(bytes);
    bytes.len() as i32
}

/// `host_read_*`: hand the guest bytes to `take`; 1 on success, 0 (and the call marked bad) otherwise.
fn host_read(
    mut caller: Caller<'_, State>,
    ptr: i32,
    len: i32,
    what: &'static str,
    take: fn(&[u8], &mut Call) -> Result<(), String>,
) -> i32 {
    let Some(mem) = guest_memory(&mut caller) else {
        return 0;
    };
    let (data, st) = mem.data_and_store_mut(&mut caller);
    if !st.call.active {
        return 0;
    }
    let outcome = if len as u32 as usize > MAX_RESULT_LEN {
        Err(format!(
            "{what}: result of {} bytes (limit {MAX_RESULT_LEN})",
            len as u32
        ))
    } else {
        match guest_range(ptr, len, data.len()) {
            Some(r) => take(&data[r], &mut st.call).map_err(|e| format!("{what}: {e}")),
            None => Err(format!("{what}: buffer out of bounds")),
        }
    };
    match outcome {
        Ok(()) => 1,
        Err(e) => {
            st.call.bad.get_or_insert(e);
            0
        }
    }
}

fn take_infos(bytes: &[u8], call: &mut Call) -> Result<(), String> {
    let dir = call.direction.unwrap_or(Direction::ClientToServer);
    let infos = decode_result(bytes, dir).map_err(|e| e.to_string())?;
    call.infos = Some(infos);
    Ok(())
}

fn take_name(bytes: &[u8], call: &mut Call) -> Result<(), String> {
    let len = bytes
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .ok_or("shorter than its length prefix")?;
    let s = bytes
        .get(2..2 + len)
        .ok_or("string longer than the buffer")?;
    call.name = Some(String::from_utf8_lossy(&s[..s.len().min(64)]).into_owned());
    Ok(())
}

/// The HTTP hook result of older SDKs: has_trace u8, (trace_id, span_id, parent_span_id) when 1, then
/// (key, val) string pairs to the end.
fn take_http_result(bytes: &[u8], call: &mut Call) -> Result<(), String> {
    let mut off = 1usize;
    let mut next = || -> Option<String> {
        let l = bytes.get(off..off + 2)?;
        let l = u16::from_be_bytes([l[0], l[1]]) as usize;
        let s = bytes.get(off + 2..off + 2 + l)?;
        off += 2 + l;
        Some(String::from_utf8_lossy(s).into_owned())
    };
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let mut d = DeepFlowInfo::default();
    match bytes.first() {
        Some(0) => {}
        Some(1) => {
            let (t, s, p) = (next(), next(), next());
            if p.is_none() {
                return Err("trace ids truncated".into());
            }
            d.info.trace_id = non_empty(t);
            d.info.span_id = non_empty(s);
            d.info.parent_span_id = non_empty(p);
        }
        _ => return Err("has_trace is neither 0 nor 1".into()),
    }
    while let (Some(k), Some(v)) = (next(), next()) {
        if d.attributes.len() < result::MAX_ATTRIBUTES && !k.is_empty() {
            d.attributes.push((k, v));
        }
    }
    call.infos = Some(vec![d]);
    Ok(())
}

/// The `deepflow` functions this host links.
pub const PROVIDED: &[&str] = &[
    "wasm_log",
    "vm_read_ctx_base",
    "vm_read_payload",
    "vm_read_http_req_info",
    "vm_read_http_resp_info",
    "vm_read_custom_message_info",
    "host_read_l7_protocol_info",
    "host_read_str_result",
    "host_read_http_result",
];

/// Refuse, naming it, the first import this host does not provide (wasmtime would only say "unknown import"
/// at instantiation).
fn check_imports(module: &Module) -> Result<(), PluginError> {
    for import in module.imports() {
        let known = match import.module() {
            IMPORT_MODULE => PROVIDED.contains(&import.name()),
            wasi::MODULE => wasi::PROVIDED.contains(&import.name()),
            _ => false,
        };
        if !known {
            return Err(PluginError::UnknownImport {
                module: import.module().to_string(),
                name: import.name().to_string(),
            });
        }
    }
    Ok(())
}

/// The one builder of the host imports: `deepflow` and WASI.
fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<State>> {
    let mut l: Linker<State> = Linker::new(engine);
    let m = IMPORT_MODULE;
    l.func_wrap(
        m,
        "wasm_log",
        |mut c: Caller<'_, State>, ptr: i32, len: i32, level: i32| {
            let Some(mem) = guest_memory(&mut c) else {
                return;
            };
            let (data, st) = mem.data_and_store_mut(&mut c);
            let len = (len as u32 as usize).min(MAX_LOG_LEN);
            let Some(r) = guest_range(ptr, len as i32, data.len()) else {
                return;
            };
            let text = String::from_utf8_lossy(&data[r]);
            let plugin = &*st.plugin;
            match level {
                0 => tracing::debug!(target: "fathom_plugin_wasm::guest", plugin, "{text}"),
                1 => tracing::info!(target: "fathom_plugin_wasm::guest", plugin, "{text}"),
                _ => tracing::warn!(target: "fathom_plugin_wasm::guest", plugin, "{text}"),
            }
        },
    )?;
    l.func_wrap(
        m,
        "vm_read_ctx_base",
        |c: Caller<'_, State>, p: i32, n: i32| vm_read(c, p, n, |call| Some(&call.base), 0),
    )?;
    l.func_wrap(
        m,
        "vm_read_payload",
        |c: Caller<'_, State>, p: i32, n: i32| vm_read(c, p, n, |call| Some(&call.payload), -1),
    )?;
    l.func_wrap(
        m,
        "vm_read_http_req_info",
        |c: Caller<'_, State>, p: i32, n: i32| vm_read(c, p, n, |call| call.http_req.as_deref(), 0),
    )?;
    l.func_wrap(
        m,
        "vm_read_http_resp_info",
        |c: Caller<'_, State>, p: i32, n: i32| {
            vm_read(c, p, n, |call| call.http_resp.as_ref().map(|b| &b[..]), 0)
        },
    )?;
    l.func_wrap(
        m,
        "vm_read_custom_message_info",
        |_: Caller<'_, State>, _: i32, _: i32| 0i32,
    )?;
    l.func_wrap(
        m,
        "host_read_l7_protocol_info",
        |c: Caller<'_, State>, p: i32, n: i32| {
            host_read(c, p, n, "host_read_l7_protocol_info", take_infos)
        },
    )?;
    l.func_wrap(
        m,
        "host_read_str_result",
        |c: Caller<'_, State>, p: i32, n: i32| {
            host_read(c, p, n, "host_read_str_result", take_name)
        },
    )?;
    l.func_wrap(
        m,
        "host_read_http_result",
        |c: Caller<'_, State>, p: i32, n: i32| {
            host_read(c, p, n, "host_read_http_result", take_http_result)
        },
    )?;
    wasi::add_to_linker(&mut l)?;
    Ok(l)
}

/// Why one guest call failed.
#[derive(Debug)]
pub(super) enum Failure {
    Trap(String),
    Timeout,
    BadResult(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Trap(e) => write!(f, "trap: {e}"),
            Failure::Timeout => f.write_str("fuel budget exhausted (timeout)"),
            Failure::BadResult(e) => write!(f, "bad result: {e}"),
        }
    }
}

impl From<wasmtime::Error> for Failure {
    fn from(e: wasmtime::Error) -> Failure {
        if let Some(Trap::OutOfFuel) = e.downcast_ref::<Trap>() {
            return Failure::Timeout;
        }
        Failure::Trap(format!("{e:#}"))
    }
}

/// The instance of one plugin.
pub(super) struct Sandbox {
    store: Store<State>,
    check: Option<TypedFunc<(), i32>>,
    parse: Option<TypedFunc<(), i32>>,
    pub(super) on_http_req: Option<TypedFunc<(), i32>>,
    pub(super) on_http_resp: Option<TypedFunc<(), i32>>,
    fuel: u64,
}

/// What a handled call produced.
pub(super) struct Outcome {
    pub(super) ret: i32,
    pub(super) infos: Option<Vec<DeepFlowInfo>>,
    pub(super) name: Option<String>,
}

impl Sandbox {
    /// Run `f` with the context prepared by `prepare`.
    fn run(
        &mut self,
        f: Option<TypedFunc<(), i32>>,
        direction: Direction,
        prepare: impl FnOnce(&mut Call),
    ) -> Result<Outcome, Failure> {
        let Some(f) = f else {
            return Ok(Outcome {
                ret: 0,
                infos: None,
                name: None,
            });
        };
        let call = &mut self.store.data_mut().call;
        call.begin(direction);
        prepare(call);
        let r = self
            .store
            .set_fuel(self.fuel)
            .map_err(Failure::from)
            .and_then(|()| f.call(&mut self.store, ()).map_err(Failure::from));
        let call = &mut self.store.data_mut().call;
        call.active = false;
        let ret = r?;
        if let Some(bad) = call.bad.take() {
            return Err(Failure::BadResult(bad));
        }
        Ok(Outcome {
            ret,
            infos: call.infos.take(),
            name: call.name.take(),
        })
    }
}

/// State shared by a plugin, its flows and its hook.
pub(super) struct Shared {
    pub(super) name: Arc<str>,
    pub(super) bitmap: u128,
    sandbox: Mutex<Sandbox>,
    max_failures: u64,
    max_window: usize,
    proto_num: AtomicU8,
    proto_str: OnceLock<Arc<str>>,
    calls: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    bad_results: AtomicU64,
    disabled: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Sandbox> {
        self.sandbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stats(&self) -> PluginStats {
        PluginStats {
            calls: self.calls.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            bad_results: self.bad_results.load(Ordering::Relaxed),
            disabled: self.disabled.load(Ordering::Relaxed),
        }
    }

    pub(super) fn disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    pub(super) fn fail(&self, call: &str, failure: Failure) {
        let counter = match &failure {
            Failure::Trap(_) => &self.traps,
            Failure::Timeout => &self.timeouts,
            Failure::BadResult(_) => &self.bad_results,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(plugin = %self.name, call, %failure, "DeepFlow-ABI plugin call failed");
        let failures = self.stats().failures();
        if failures >= self.max_failures && !self.disabled.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                plugin = %self.name,
                failures,
                last = %failure,
                "WASM plugin disabled after {failures} failed calls; its flows are no longer parsed"
            );
        }
    }

    /// One guest call, counted; `None` when it failed (already counted).
    pub(super) fn call(
        &self,
        what: &'static str,
        pick: fn(&Sandbox) -> Option<TypedFunc<(), i32>>,
        direction: Direction,
        prepare: impl FnOnce(&mut Call),
    ) -> Option<Outcome> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut sandbox = self.lock();
        let f = pick(&sandbox);
        match sandbox.run(f, direction, prepare) {
            Ok(o) => Some(o),
            Err(f) => {
                drop(sandbox);
                self.fail(what, f);
                None
            }
        }
    }
}

/// A loaded DeepFlow-ABI plugin: an [`L7Parser`] (when it hooks payload parsing) and a [`MessageHook`] (when
/// it hooks HTTP requests or responses).
pub struct DeepFlowPlugin {
    protocol: L7Protocol,
    pub(super) shared: Arc<Shared>,
}

impl fmt::Debug for DeepFlowPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeepFlowPlugin")
            .field("name", &self.shared.name)
            .field("hook_bitmap", &format_args!("{:#034x}", self.shared.bitmap))
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl DeepFlowPlugin {
    /// The plugin's name (its protocol name in RequestLogs unless it reports its own).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// A snapshot of its counters (guest calls of every kind).
    pub fn stats(&self) -> PluginStats {
        self.shared.stats()
    }

    /// The hook bitmap `get_hook_bitmap` returned.
    pub fn hook_bitmap(&self) -> u128 {
        self.shared.bitmap
    }

    /// True when the plugin parses payloads ([`HOOK_PAYLOAD_PARSE`]).
    pub fn parses(&self) -> bool {
        self.shared.bitmap & HOOK_PAYLOAD_PARSE != 0
    }

    /// True when the plugin hooks HTTP requests or responses.
    pub fn hooks_http(&self) -> bool {
        self.shared.bitmap & (HOOK_HTTP_REQ | HOOK_HTTP_RESP) != 0
    }

    /// The protocol name `check_payload` reported (through `host_read_str_result`), once it has.
    pub fn reported_protocol(&self) -> Option<&str> {
        self.shared.proto_str.get().map(|s| &**s)
    }
}

fn flow_id_of(flow: &FlowKey) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    flow.hash(&mut h);
    h.finish()
}

/// The base context of bytes travelling `direction` on `flow`.
pub(super) fn base_ctx(
    flow: &FlowKey,
    direction: Direction,
    l7: u8,
    time_us: u64,
    flow_id: u64,
    buf_size: usize,
) -> CtxBase<'static> {
    let (ip_src, ip_dst, port_src, port_dst) = match direction {
        Direction::ClientToServer => (flow.ip_src, flow.ip_dst, flow.port_src, flow.port_dst),
        Direction::ServerToClient => (flow.ip_dst, flow.ip_src, flow.port_dst, flow.port_src),
    };
    CtxBase {
        ip_src,
        ip_dst,
        port_src,
        port_dst,
        l4: flow.l4_protocol,
        l7,
        time_us,
        direction,
        process_name: None,
        flow_id,
        buf_size: buf_size.clamp(1, MAX_PAYLOAD_LEN) as u16,
    }
}

impl L7Parser for DeepFlowPlugin {
    fn protocol(&self) -> L7Protocol {
        self.protocol.clone()
    }

    fn transports(&self) -> Transports {
        Transports::Both
    }

    fn probe(&self, input: &ProbeInput<'_>) -> Probe {
        if !self.parses() || self.shared.disabled() || input.payload.is_empty() {
            return Probe::No;
        }
        let data = input
            .payload
            .get(..crate::MAX_PROBE_LEN)
            .unwrap_or(input.payload);
        let ctx = base_ctx(
            input.flow,
            input.direction,
            0,
            0,
            flow_id_of(input.flow),
            data.len(),
        );
        let Some(out) = self.shared.call(
            "check_payload",
            |s| s.check.clone(),
            input.direction,
            |call| {
                ctx.encode(&mut call.base);
                call.payload.extend_from_slice(data);
            },
        ) else {
            return Probe::No;
        };
        match out.ret {
            0 => Probe::No,
            n @ 1..=255 => {
                self.shared.proto_num.store(n as u8, Ordering::Relaxed);
                if let Some(name) = out.name.filter(|n| !n.is_empty()) {
                    let _ = self
                        .shared
                        .proto_str
                        .set(Arc::from(name.to_ascii_lowercase()));
                }
                Probe::Yes
            }
            _ => {
                self.shared.fail(
                    "check_payload",
                    Failure::BadResult(format!("check_payload returned {}", out.ret)),
                );
                Probe::No
            }
        }
    }

    fn new_flow(&self, flow: &FlowKey, _limits: &Limits) -> Box<dyn FlowParser> {
        Box::new(DeepFlowFlow {
            shared: self.shared.clone(),
            flow: *flow,
            flow_id: flow_id_of(flow),
            retries: [0; 2],
            pending: [None, None],
        })
    }
}

/// A message whose parts (`is_end: false`) are being merged.
struct Pending {
    msg: Message,
    attributes: Vec<(String, String)>,
    parts: u32,
}

/// Per-flow state.
struct DeepFlowFlow {
    shared: Arc<Shared>,
    flow: FlowKey,
    flow_id: u64,
    retries: [u8; 2],
    pending: [Option<Pending>; 2],
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    }
}

/// Tags from DeepFlow attributes.
pub(super) fn add_tags(info: &mut LogInfo, attributes: Vec<(String, String)>) {
    info.tags.extend(attributes);
}

impl DeepFlowFlow {
    fn protocol_override(&self, reported: Option<String>) -> Option<L7Protocol> {
        let name = reported
            .map(|s| s.to_ascii_lowercase())
            .or_else(|| self.shared.proto_str.get().map(|s| s.to_string()))?;
        (*name != *self.shared.name).then(|| L7Protocol::Custom(Arc::from(name)))
    }

    fn emit(&mut self, d: usize, p: Pending, out: &mut Vec<Message>) {
        let mut msg = p.msg;
        add_tags(&mut msg.info, p.attributes);
        out.push(msg);
        let _ = d;
    }

    /// Turn the plugin's records for `window` into messages.
    fn messages(
        &mut self,
        infos: Vec<DeepFlowInfo>,
        ctx: &ParseCtx<'_>,
        len: usize,
        out: &mut Vec<Message>,
    ) {
        let d = dir_index(ctx.direction);
        let mut cursor = 0usize;
        for rec in infos {
            let kind = rec.kind.unwrap_or(match ctx.direction {
                Direction::ClientToServer => MessageKind::Request,
                Direction::ServerToClient => MessageKind::Response,
            });
            let own_len = match kind {
                MessageKind::Request => rec.req_len,
                _ => rec.resp_len,
            };
            let start = cursor.min(len);
            let end = match own_len {
                Some(l) => start.saturating_add(l as usize).min(len),
                None => len,
            };
            if own_len.is_some() {
                cursor = end;
            }
            let correlation = match rec.request_id {
                Some(id) => Correlation::ById(u64::from(id)),
                None => Correlation::Fifo,
            };
            let mut info = rec.info;
            info.protocol = self.protocol_override(rec.protocol);
            let msg = Message::new(
                ctx.direction,
                kind,
                correlation,
                ctx.pos(start),
                ctx.pos(end),
            )
            .with_info(info);
            let part = Pending {
                msg,
                attributes: rec.attributes,
                parts: 1,
            };
            match (rec.is_end, self.pending[d].take()) {
                (None, prev) => {
                    if let Some(prev) = prev {
                        self.emit(d, prev, out);
                    }
                    self.emit(d, part, out);
                }
                (Some(end), prev) => {
                    let merged = match prev {
                        None => part,
                        Some(mut prev) => {
                            prev.msg.info.fill_from(part.msg.info);
                            // The parts are contiguous stream bytes (or the same bytes): the message spans them.
                            prev.msg.end = part.msg.end.max(prev.msg.end);
                            prev.msg.wire_bytes = prev.msg.end.saturating_sub(prev.msg.start);
                            prev.attributes.extend(part.attributes);
                            prev.attributes.truncate(result::MAX_ATTRIBUTES);
                            prev.parts += 1;
                            prev
                        }
                    };
                    if end || merged.parts >= MAX_MERGE_PARTS {
                        self.emit(d, merged, out);
                    } else {
                        self.pending[d] = Some(merged);
                    }
                }
            }
        }
    }
}

impl FlowParser for DeepFlowFlow {
    fn parse(
        &mut self,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError> {
        if self.shared.disabled() {
            return Err(ParseError::new(ParseErrorKind::Unsupported, 0));
        }
        if data.is_empty() {
            return Ok(0);
        }
        let window = data.get(..self.shared.max_window).unwrap_or(data);
        let d = dir_index(ctx.direction);
        let base = base_ctx(
            &self.flow,
            ctx.direction,
            self.shared.proto_num.load(Ordering::Relaxed),
            ctx.time_us,
            self.flow_id,
            window.len(),
        );
        let outcome = self.shared.call(
            "parse_payload",
            |s| s.parse.clone(),
            ctx.direction,
            |call| {
                base.encode(&mut call.base);
                call.payload.extend_from_slice(window);
            },
        );
        let Some(outcome) = outcome else {
            return Err(ParseError::new(ParseErrorKind::Invalid, 0));
        };
        match outcome.ret {
            1 => {
                self.retries[d] = 0;
                self.messages(outcome.infos.unwrap_or_default(), ctx, window.len(), out);
                Ok(window.len())
            }
            0 => {
                if ctx.datagram
                    || window.len() >= self.shared.max_window
                    || self.retries[d] >= MAX_RETRIES
                {
                    self.retries[d] = 0;
                    Err(ParseError::new(ParseErrorKind::Invalid, 0))
                } else {
                    self.retries[d] += 1;
                    Ok(0)
                }
            }
            r => {
                self.shared.fail(
                    "parse_payload",
                    Failure::BadResult(format!("parse_payload returned {r}")),
                );
                Err(ParseError::new(ParseErrorKind::Invalid, 0))
            }
        }
    }

    fn on_gap(&mut self, direction: Direction, _lost: u64) {
        let d = dir_index(direction);
        self.retries[d] = 0;
        self.pending[d] = None;
    }

    fn on_close(&mut self, _end_offsets: [u64; 2], out: &mut Vec<Message>) {
        for d in 0..2 {
            if let Some(p) = self.pending[d].take() {
                self.emit(d, p, out);
            }
        }
    }
}
