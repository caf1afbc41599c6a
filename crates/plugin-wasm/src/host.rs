//! The wasmtime host: loading, the sandbox, and the `L7Parser` / `FlowParser` implementations.

use crate::{
    PluginConfig, ABI_VERSION, ABI_VERSION_MIN, HOOK_GRPC, HOOK_HTTP1, HOOK_HTTP2, MAX_FIELD_LEN,
    MAX_PROBE_LEN, RESULT_RECORD_LEN,
};
use fathom_model::{Direction, FlowKey, L7Protocol, ResponseStatus};
use fathom_protocols::{
    Correlation, FlowParser, L7Parser, Limits, LogInfo, Message, MessageKind, ParseCtx, ParseError,
    ParseErrorKind, Probe, ProbeInput,
};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use wasmtime::{
    Config, Engine, Instance, Linker, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, Trap,
    TypedFunc,
};

/// Why a plugin could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// The wasmtime engine could not be created.
    Engine(String),
    /// The bytes are not a valid wasm module (or failed to compile).
    Compile(String),
    /// The module could not be instantiated (it has imports, its start function trapped, limits...).
    Instantiate(String),
    /// A required export is missing or has the wrong type.
    MissingExport(&'static str, String),
    /// `fathom_abi_version()` returned a version outside [`crate::ABI_VERSION_MIN`]..=[`ABI_VERSION`].
    AbiVersion {
        /// What the plugin declared.
        found: i32,
    },
    /// The module imports a function this host does not provide.
    UnknownImport {
        /// The import's module (`deepflow`, `wasi_snapshot_preview1`...).
        module: String,
        /// The function's name.
        name: String,
    },
    /// The module speaks neither the Fathom nor the DeepFlow plugin ABI.
    NotAPlugin(String),
    /// A version-1 plugin exports HTTP hooks, which need version 2.
    HooksNeedVersion2,
    /// A version-2 plugin exports neither a parser (`fathom_probe` + `fathom_parse`) nor an HTTP hook.
    NothingToDo,
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::Engine(e) => write!(f, "cannot create the wasm engine: {e}"),
            PluginError::Compile(e) => write!(f, "cannot compile the plugin module: {e}"),
            PluginError::Instantiate(e) => write!(f, "cannot instantiate the plugin: {e}"),
            PluginError::MissingExport(name, e) => {
                write!(f, "the plugin does not export a valid `{name}`: {e}")
            }
            PluginError::AbiVersion { found } => write!(
                f,
                "plugin ABI version mismatch: the plugin declares version {found}, this host implements \
                 versions {ABI_VERSION_MIN} to {ABI_VERSION} (see docs/plugins.md)"
            ),
            PluginError::HooksNeedVersion2 => f.write_str(
                "the plugin exports HTTP hooks but declares ABI version 1; hooks need version 2 \
                 (see docs/plugins.md)",
            ),
            PluginError::NothingToDo => f.write_str(
                "the plugin exports neither a parser (fathom_probe + fathom_parse) nor an HTTP hook \
                 (fathom_on_http_request / fathom_on_http_response)",
            ),
            PluginError::UnknownImport { module, name } => write!(
                f,
                "the plugin imports `{module}::{name}`, which this host does not provide (see \
                 docs/plugins.md for the functions it links)"
            ),
            PluginError::NotAPlugin(e) => write!(f, "the module is not a plugin: {e}"),
        }
    }
}

impl std::error::Error for PluginError {}

/// Counters of one plugin (a snapshot, see [`WasmPlugin::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginStats {
    /// Guest calls made (`fathom_alloc` excluded).
    pub calls: u64,
    /// Calls that trapped (including a memory or table limit hit).
    pub traps: u64,
    /// Calls stopped because their fuel budget ran out.
    pub timeouts: u64,
    /// Calls whose result broke the ABI (bad verdict, out-of-bounds record or field, bad length).
    pub bad_results: u64,
    /// True once the plugin has been disabled.
    pub disabled: bool,
}

impl PluginStats {
    /// All failed calls.
    pub fn failures(&self) -> u64 {
        self.traps + self.timeouts + self.bad_results
    }
}

/// Loads plugins: one shared wasmtime engine, the sandbox configuration.
#[derive(Clone)]
pub struct PluginHost {
    engine: Engine,
    config: PluginConfig,
}

impl fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginHost")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// A host with fuel metering on.
    ///
    /// # Errors
    /// [`PluginError::Engine`] when wasmtime refuses the configuration.
    pub fn new(config: PluginConfig) -> Result<PluginHost, PluginError> {
        let mut wasm = Config::new();
        wasm.consume_fuel(true);
        let engine = Engine::new(&wasm).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        Ok(PluginHost { engine, config })
    }

    /// The sandbox configuration.
    pub fn config(&self) -> &PluginConfig {
        &self.config
    }

    /// The shared wasmtime engine.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compile and instantiate a plugin from wasm bytes (or, when wasmtime's `wat` feature is on, wasm
    /// text), check its ABI version, and return it ready to register with
    /// [`fathom_protocols::Engine::register`]. Its protocol is `L7Protocol::Custom(name)`.
    ///
    /// # Errors
    /// See [`PluginError`].
    pub fn load(&self, name: &str, wasm: &[u8]) -> Result<Arc<WasmPlugin>, PluginError> {
        let module =
            Module::new(&self.engine, wasm).map_err(|e| PluginError::Compile(format!("{e:#}")))?;
        self.load_module(name, &module)
    }

    /// [`PluginHost::load`] of a compiled module.
    pub(crate) fn load_module(
        &self,
        name: &str,
        module: &Module,
    ) -> Result<Arc<WasmPlugin>, PluginError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.config.max_memory_bytes)
            .table_elements(self.config.max_table_elements)
            .instances(1)
            .memories(1)
            .tables(4)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, limits);
        store.limiter(|l| l);
        store
            .set_fuel(self.config.fuel_per_call)
            .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let linker: Linker<StoreLimits> = Linker::new(&self.engine);
        let instance = linker
            .instantiate(&mut store, module)
            .map_err(|e| PluginError::Instantiate(format!("{e:#}")))?;
        let version: TypedFunc<(), i32> = export(&instance, &mut store, "fathom_abi_version")?;
        store
            .set_fuel(self.config.fuel_per_call)
            .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let found = version
            .call(&mut store, ())
            .map_err(|e| PluginError::Instantiate(format!("fathom_abi_version failed: {e:#}")))?;
        if !(ABI_VERSION_MIN..=ABI_VERSION).contains(&found) {
            return Err(PluginError::AbiVersion { found });
        }
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| PluginError::MissingExport("memory", "no exported memory".into()))?;
        let alloc = export(&instance, &mut store, "fathom_alloc")?;
        let on_request = optional(&instance, &mut store, "fathom_on_http_request")?;
        let on_response = optional(&instance, &mut store, "fathom_on_http_response")?;
        let hook_protocols: Option<TypedFunc<(), i32>> =
            optional(&instance, &mut store, "fathom_hook_protocols")?;
        let hooked = on_request.is_some() || on_response.is_some();
        let (probe, parse) = if found == 1 {
            if hooked || hook_protocols.is_some() {
                return Err(PluginError::HooksNeedVersion2);
            }
            (
                Some(export(&instance, &mut store, "fathom_probe")?),
                Some(export(&instance, &mut store, "fathom_parse")?),
            )
        } else {
            let probe = optional(&instance, &mut store, "fathom_probe")?;
            let parse = optional(&instance, &mut store, "fathom_parse")?;
            match (&probe, &parse, hooked) {
                (Some(_), None, _) => {
                    return Err(PluginError::MissingExport(
                        "fathom_parse",
                        "a plugin that exports fathom_probe must export fathom_parse".into(),
                    ))
                }
                (None, Some(_), _) => {
                    return Err(PluginError::MissingExport(
                        "fathom_probe",
                        "a plugin that exports fathom_parse must export fathom_probe".into(),
                    ))
                }
                (None, None, false) => return Err(PluginError::NothingToDo),
                _ => {}
            }
            (probe, parse)
        };
        let hook_mask = match &hook_protocols {
            Some(f) => {
                store
                    .set_fuel(self.config.fuel_per_call)
                    .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
                f.call(&mut store, ()).map_err(|e| {
                    PluginError::Instantiate(format!("fathom_hook_protocols failed: {e:#}"))
                })? & (HOOK_HTTP1 | HOOK_HTTP2 | HOOK_GRPC)
            }
            None => HOOK_HTTP1 | HOOK_HTTP2 | HOOK_GRPC,
        };
        let sandbox = Sandbox {
            alloc,
            probe,
            parse,
            on_request,
            on_response,
            memory,
            store,
            fuel: self.config.fuel_per_call,
            buf: None,
            scratch: Vec::new(),
        };
        let name: Arc<str> = Arc::from(name);
        let hooks = HookSet {
            mask: if hooked { hook_mask } else { 0 },
            request: sandbox.on_request.is_some(),
            response: sandbox.on_response.is_some(),
        };
        let has_parser = sandbox.parse.is_some();
        Ok(Arc::new(WasmPlugin {
            protocol: L7Protocol::Custom(name.clone()),
            abi_version: found,
            has_parser,
            hooks,
            shared: Arc::new(Shared {
                name,
                sandbox: Mutex::new(sandbox),
                config: self.config.clone(),
                calls: AtomicU64::new(0),
                traps: AtomicU64::new(0),
                timeouts: AtomicU64::new(0),
                bad_results: AtomicU64::new(0),
                disabled: AtomicBool::new(false),
            }),
        }))
    }
}

/// An export that may be absent; present with the wrong type is an error.
fn optional<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    instance: &Instance,
    store: &mut Store<StoreLimits>,
    name: &'static str,
) -> Result<Option<TypedFunc<P, R>>, PluginError> {
    if instance.get_func(&mut *store, name).is_none() {
        return Ok(None);
    }
    export(instance, store, name).map(Some)
}

fn export<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    instance: &Instance,
    store: &mut Store<StoreLimits>,
    name: &'static str,
) -> Result<TypedFunc<P, R>, PluginError> {
    instance
        .get_typed_func::<P, R>(store, name)
        .map_err(|e| PluginError::MissingExport(name, format!("{e:#}")))
}

/// Why one guest call failed.
#[derive(Debug)]
pub(crate) enum Failure {
    Trap(String),
    Timeout,
    BadResult(&'static str),
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
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => Failure::Timeout,
            _ => Failure::Trap(format!("{e:#}")),
        }
    }
}

/// The instance of one plugin and its store.
pub(crate) struct Sandbox {
    pub(crate) store: Store<StoreLimits>,
    pub(crate) memory: Memory,
    alloc: TypedFunc<i32, i32>,
    probe: Option<TypedFunc<(i32, i32, i32), i32>>,
    parse: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub(crate) on_request: Option<TypedFunc<(i32, i32), i32>>,
    pub(crate) on_response: Option<TypedFunc<(i32, i32), i32>>,
    fuel: u64,
    /// The buffer the last `fathom_alloc` returned (address, length): valid until the next `fathom_alloc`, so
    /// reused while it is large enough (saves a guest call per probe, parse batch and hook).
    buf: Option<(u32, usize)>,
    /// Host-side scratch for hook input records.
    pub(crate) scratch: Vec<u8>,
}

impl Sandbox {
    pub(crate) fn refuel(&mut self) -> Result<(), Failure> {
        self.store.set_fuel(self.fuel).map_err(Failure::from)
    }

    /// A guest buffer of `len` bytes from `fathom_alloc`, checked to lie in memory.
    pub(crate) fn alloc(&mut self, len: usize) -> Result<u32, Failure> {
        if let Some((at, have)) = self.buf {
            if len <= have {
                return Ok(at);
            }
        }
        self.buf = None;
        let n = i32::try_from(len).map_err(|_| Failure::BadResult("input too long"))?;
        self.refuel()?;
        let ptr = self.alloc.call(&mut self.store, n)? as u32;
        if (ptr as usize).saturating_add(len) > self.memory.data_size(&self.store) {
            return Err(Failure::BadResult(
                "fathom_alloc returned an out-of-bounds buffer",
            ));
        }
        self.buf = Some((ptr, len));
        Ok(ptr)
    }

    /// Copy `data` into a guest buffer from `fathom_alloc`; returns its guest address.
    fn copy_in(&mut self, data: &[u8]) -> Result<u32, Failure> {
        let ptr = self.alloc(data.len())?;
        self.memory
            .write(&mut self.store, ptr as usize, data)
            .map_err(|_| Failure::BadResult("fathom_alloc returned an out-of-bounds buffer"))?;
        Ok(ptr)
    }

    fn probe(&mut self, data: &[u8], dir: i32) -> Result<Probe, Failure> {
        let Some(probe) = self.probe.clone() else {
            return Ok(Probe::No);
        };
        let ptr = self.copy_in(data)?;
        self.refuel()?;
        match probe.call(&mut self.store, (ptr as i32, data.len() as i32, dir))? {
            0 => Ok(Probe::No),
            1 => Ok(Probe::Maybe),
            2 => Ok(Probe::Yes),
            _ => Err(Failure::BadResult(
                "fathom_probe returned an unknown verdict",
            )),
        }
    }

    /// Read and validate the result record at guest address `at`.
    fn record(&self, at: u32, remaining: usize) -> Result<Record, Failure> {
        let mem = self.memory.data(&self.store);
        let rec = (at as usize)
            .checked_add(RESULT_RECORD_LEN)
            .and_then(|end| mem.get(at as usize..end))
            .ok_or(Failure::BadResult("result record out of bounds"))?;
        let u32_at = |i: usize| {
            rec.get(i..i + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
                .unwrap_or(0)
        };
        let u64_at = |i: usize| {
            rec.get(i..i + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .unwrap_or(0)
        };
        let byte = |i: usize| rec.get(i).copied().unwrap_or(0);
        let consumed = u32_at(0) as usize;
        if consumed == 0 || consumed > remaining {
            return Err(Failure::BadResult("consumed length out of range"));
        }
        let kind = match byte(4) {
            0 => Some(MessageKind::Request),
            1 => Some(MessageKind::Response),
            2 => Some(MessageKind::OneWay),
            3 => Some(MessageKind::Event),
            4 => None,
            _ => return Err(Failure::BadResult("unknown message kind")),
        };
        let status = match byte(5) {
            0 => None,
            1 => Some(ResponseStatus::Ok),
            2 => Some(ResponseStatus::ClientError),
            3 => Some(ResponseStatus::ServerError),
            _ => return Err(Failure::BadResult("unknown response status")),
        };
        let flags = byte(6);
        let mut fields: [Option<String>; 6] = Default::default();
        for (i, field) in fields.iter_mut().enumerate() {
            let ptr = u32_at(24 + 8 * i) as usize;
            let len = u32_at(28 + 8 * i) as usize;
            if len == 0 {
                continue;
            }
            if len > MAX_FIELD_LEN {
                return Err(Failure::BadResult("string field too long"));
            }
            let bytes = mem
                .get(ptr..ptr + len)
                .ok_or(Failure::BadResult("string field out of bounds"))?;
            *field = Some(String::from_utf8_lossy(bytes).into_owned());
        }
        let [request_type, request_domain, request_resource, endpoint, response_exception, response_result] =
            fields;
        let id = (flags & 1 != 0).then(|| u64_at(8));
        let info = LogInfo {
            request_type,
            request_domain,
            request_resource,
            endpoint,
            request_id: id,
            response_code: (flags & 2 != 0).then(|| u64_at(16) as i64),
            response_status: status,
            response_exception,
            response_result,
            ..LogInfo::default()
        };
        Ok(Record {
            consumed,
            kind,
            id,
            info,
        })
    }
}

struct Record {
    consumed: usize,
    kind: Option<MessageKind>,
    id: Option<u64>,
    info: LogInfo,
}

/// State shared by a plugin and its flows.
pub(crate) struct Shared {
    name: Arc<str>,
    sandbox: Mutex<Sandbox>,
    config: PluginConfig,
    pub(crate) calls: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    bad_results: AtomicU64,
    disabled: AtomicBool,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Sandbox> {
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

    pub(crate) fn disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    /// Count a failed call; disable the plugin after too many.
    pub(crate) fn fail(&self, call: &str, failure: Failure) {
        let counter = match &failure {
            Failure::Trap(_) => &self.traps,
            Failure::Timeout => &self.timeouts,
            Failure::BadResult(_) => &self.bad_results,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(plugin = %self.name, call, %failure, "WASM plugin call failed");
        let failures = self.stats().failures();
        if failures >= self.config.max_failures && !self.disabled.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                plugin = %self.name,
                failures,
                last = %failure,
                "WASM plugin disabled after {failures} failed calls; its flows are no longer parsed"
            );
        }
    }
}

fn dir_code(direction: Direction) -> i32 {
    match direction {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    }
}

/// Which HTTP hooks a plugin exports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HookSet {
    /// `fathom_hook_protocols()` bits (0 when the plugin has no hook).
    pub(crate) mask: i32,
    pub(crate) request: bool,
    pub(crate) response: bool,
}

/// A loaded plugin: an [`L7Parser`] for `L7Protocol::Custom(name)` when it exports a parser, and a
/// [`fathom_protocols::MessageHook`] for HTTP/1, HTTP/2 and gRPC messages when it exports HTTP hooks (ABI v2).
pub struct WasmPlugin {
    protocol: L7Protocol,
    abi_version: i32,
    has_parser: bool,
    pub(crate) hooks: HookSet,
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for WasmPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmPlugin")
            .field("name", &self.shared.name)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl WasmPlugin {
    /// The plugin's name (its protocol name in RequestLogs).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// A snapshot of its counters.
    pub fn stats(&self) -> PluginStats {
        self.shared.stats()
    }

    /// The ABI version the plugin declared.
    pub fn abi_version(&self) -> i32 {
        self.abi_version
    }

    /// True when it exports a parser (`fathom_probe` + `fathom_parse`): register it with
    /// [`fathom_protocols::Engine::register`].
    pub fn has_parser(&self) -> bool {
        self.has_parser
    }

    /// True when it exports an HTTP hook: add it with [`fathom_protocols::Engine::add_hook`].
    pub fn has_hooks(&self) -> bool {
        self.hooks.request || self.hooks.response
    }
}

impl L7Parser for WasmPlugin {
    fn protocol(&self) -> L7Protocol {
        self.protocol.clone()
    }

    fn probe(&self, input: &ProbeInput<'_>) -> Probe {
        if !self.has_parser || self.shared.disabled() || input.payload.is_empty() {
            return Probe::No;
        }
        let data = input.payload.get(..MAX_PROBE_LEN).unwrap_or(input.payload);
        self.shared.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.shared.lock().probe(data, dir_code(input.direction));
        result.unwrap_or_else(|f| {
            self.shared.fail("fathom_probe", f);
            Probe::No
        })
    }

    fn new_flow(&self, _flow: &FlowKey, _limits: &Limits) -> Box<dyn FlowParser> {
        Box::new(WasmFlow {
            shared: self.shared.clone(),
            resync: [false; 2],
        })
    }
}

/// Per-flow state: only whether each direction must resynchronise after a gap.
struct WasmFlow {
    shared: Arc<Shared>,
    resync: [bool; 2],
}

impl FlowParser for WasmFlow {
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
        let window = data
            .get(..self.shared.config.max_parse_window)
            .unwrap_or(data);
        let d = dir_code(ctx.direction) as usize;
        let mut guard = self.shared.lock();
        let sandbox: &mut Sandbox = &mut guard;
        let Some(parse) = sandbox.parse.clone() else {
            return Err(ParseError::new(ParseErrorKind::Unsupported, 0));
        };
        let base = match sandbox.copy_in(window) {
            Ok(p) => p,
            Err(f) => {
                self.shared.fail("fathom_alloc", f);
                return Err(ParseError::new(ParseErrorKind::Invalid, 0));
            }
        };
        let emitted = out.len();
        let mut off = 0usize;
        while off < window.len() {
            let dir = d as i32 | if self.resync[d] { 2 } else { 0 };
            self.shared.calls.fetch_add(1, Ordering::Relaxed);
            let step = sandbox.refuel().and_then(|()| {
                let at = base.wrapping_add(off as u32) as i32;
                let rest = (window.len() - off) as i32;
                Ok(parse.call(&mut sandbox.store, (at, rest, dir))?)
            });
            let rec = match step {
                Ok(0) => break,
                Ok(r) if r < 0 => {
                    if off > 0 {
                        break;
                    }
                    return Err(ParseError::new(ParseErrorKind::Invalid, off));
                }
                Ok(r) => sandbox.record(r as u32, window.len() - off),
                Err(f) => Err(f),
            };
            let rec = match rec {
                Ok(rec) => rec,
                Err(f) => {
                    self.shared.fail("fathom_parse", f);
                    out.truncate(emitted);
                    return Err(ParseError::new(ParseErrorKind::Invalid, 0));
                }
            };
            let start = ctx.pos(off);
            off += rec.consumed;
            if let Some(kind) = rec.kind {
                self.resync[d] = false;
                let correlation = match (kind, rec.id) {
                    (MessageKind::Request | MessageKind::Response, Some(id)) => {
                        Correlation::ById(id)
                    }
                    (MessageKind::Request | MessageKind::Response, None) => Correlation::Fifo,
                    _ => Correlation::Unpaired,
                };
                out.push(
                    Message::new(ctx.direction, kind, correlation, start, ctx.pos(off))
                        .with_info(rec.info),
                );
            }
        }
        Ok(off)
    }

    fn on_gap(&mut self, direction: Direction, _lost: u64) {
        self.resync[dir_code(direction) as usize] = true;
    }
}
