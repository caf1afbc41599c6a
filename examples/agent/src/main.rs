//! `fathom-agent`: the reference agent binary (argument parsing and wiring; the pipeline is in the library).

use clap::{Parser, ValueEnum};
use fathom_agent::{run_pcap, DamagedCapture, Output, RunOptions, Summary};
use fathom_metrics::{DriverOptions, MetricsDriver};
use fathom_protocols::{L7Parser, MessageHook};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum JsonKind {
    Logs,
    Metrics,
    Traces,
    Flows,
}

/// Fathom reference agent: capture -> parse -> print.
#[derive(Debug, Parser)]
#[command(name = "fathom-agent", version, about)]
struct Cli {
    /// Read packets from a pcap/pcapng file (plain or gzip).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["iface", "ebpf"])]
    pcap: Option<PathBuf>,
    /// Print JSON lines of this kind on stdout instead of the summary.
    #[arg(long, value_name = "KIND")]
    json: Option<JsonKind>,
    /// Custom tags file.
    #[arg(long, value_name = "FILE")]
    tags: Option<PathBuf>,
    /// WASM protocol plugin (repeatable).
    #[arg(long, value_name = "FILE.wasm")]
    plugin: Vec<PathBuf>,
    /// Capture live on this interface (AF_PACKET).
    #[arg(long, value_name = "IFACE", conflicts_with = "ebpf")]
    iface: Option<String>,
    /// With --iface: capture threads, one AF_PACKET socket each in one fanout (hash) group [default: 1].
    #[arg(long, value_name = "N")]
    capture_threads: Option<usize>,
    /// With --iface: classic BPF filter, as printed by `tcpdump -i IFACE -ddd 'EXPR'`.
    #[arg(long, value_name = "FILE")]
    bpf_filter_file: Option<PathBuf>,
    /// Capture socket data with eBPF.
    #[arg(long)]
    ebpf: bool,
    /// With --ebpf: also hook this OpenSSL libssl (or an executable with OpenSSL linked in) for TLS plaintext,
    /// besides the system libssl and those running processes use (repeatable).
    #[arg(long, value_name = "PATH", requires = "ebpf")]
    ssl_lib: Vec<PathBuf>,
    /// With --ebpf: do not hook OpenSSL (TLS connections then show as `tls` handshakes only).
    #[arg(long, requires = "ebpf", conflicts_with = "ssl_lib")]
    no_ssl: bool,
    /// With --ebpf: trace only this process id (repeatable; filtered in the kernel).
    #[arg(long, value_name = "PID", requires = "ebpf")]
    pid: Vec<u32>,
    /// With --ebpf: trace only processes with this name (`comm`, repeatable; filtered in the kernel).
    #[arg(long, value_name = "NAME", requires = "ebpf")]
    comm: Vec<String>,
    /// With --ebpf: trace only processes in this cgroup v2 directory or below it (repeatable; filtered in the
    /// kernel), e.g. /sys/fs/cgroup/system.slice/nginx.service.
    #[arg(long, value_name = "PATH", requires = "ebpf")]
    cgroup: Vec<PathBuf>,
    /// With --ebpf: payload bytes captured per syscall (at most 16384; the rest is counted as lost).
    #[arg(long, value_name = "BYTES", requires = "ebpf",
          value_parser = clap::value_parser!(u32).range(1..=16384))]
    capture_len: Option<u32>,
    /// Ship to a fathom-server.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Serve Prometheus metrics on this address (with --pcap: the totals at the end of the file, kept served
    /// for --duration seconds).
    #[arg(long, value_name = "ADDR")]
    prometheus: Option<String>,
    /// Push OTLP/HTTP metrics to this endpoint (`http://host:4318`; POST to /v1/metrics).
    #[arg(long, value_name = "URL")]
    otlp: Option<String>,
    /// Stop a live capture after this many seconds (with --pcap --prometheus: keep serving this long at the end).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
}

/// mimalloc: the parse stage allocates many small, short-lived strings (log fields); glibc malloc spent about a
/// quarter of the CPU time on them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn unsupported(what: &str) -> ExitCode {
    eprintln!("fathom-agent: error: {what} is not supported yet");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    // Ctrl-C / SIGTERM: a live capture stops as if its --duration had ended (the summary is still printed); a
    // second signal, or one while no live capture runs, exits at once with status 130.
    if let Err(e) = ctrlc::set_handler(|| {
        static ASKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if ASKED.swap(true, std::sync::atomic::Ordering::SeqCst)
            || fathom_agent::stop_live_captures() == 0
        {
            std::process::exit(130);
        }
        eprintln!("fathom-agent: stopping the capture (signal again to quit at once)");
    }) {
        tracing::warn!(error = %e, "Cannot install the Ctrl-C handler.");
    }
    #[cfg(not(feature = "afpacket"))]
    if cli.iface.is_some() {
        return unsupported("--iface (this build lacks the `afpacket` feature)");
    }
    #[cfg(not(feature = "ebpf"))]
    if cli.ebpf {
        return unsupported("--ebpf (this build lacks the `ebpf` feature)");
    }
    for (set, name) in [
        (cli.tags.is_some(), "--tags"),
        (cli.server.is_some(), "--server"),
        (
            cli.duration.is_some() && cli.prometheus.is_none() && !cli.ebpf && cli.iface.is_none(),
            "--duration",
        ),
    ] {
        if set {
            return unsupported(name);
        }
    }
    // (clap's `requires` is not enforced here: `--iface` conflicts with `--pcap`.)
    if cli.iface.is_none() && (cli.capture_threads.is_some() || cli.bpf_filter_file.is_some()) {
        eprintln!("fathom-agent: error: --capture-threads and --bpf-filter-file need --iface");
        return ExitCode::from(2);
    }
    if cli.json == Some(JsonKind::Traces) {
        return unsupported("--json traces");
    }
    let input = match (&cli.pcap, cli.ebpf) {
        (Some(pcap), _) => Input::Pcap(pcap.clone()),
        #[cfg(feature = "ebpf")]
        (None, true) => {
            let d = fathom_capture::EbpfConfig::default();
            Input::Ebpf(fathom_capture::EbpfConfig {
                run_for: cli.duration.map(std::time::Duration::from_secs),
                pids: cli.pid.clone(),
                comms: cli.comm.clone(),
                cgroups: cli.cgroup.clone(),
                capture_len: cli.capture_len.unwrap_or(d.capture_len),
                ssl: fathom_capture::ebpf::SslConfig {
                    enabled: !cli.no_ssl,
                    libs: cli.ssl_lib.clone(),
                    ..fathom_capture::ebpf::SslConfig::default()
                },
                ..d
            })
        }
        #[cfg(feature = "afpacket")]
        (None, false) if cli.iface.is_some() => match iface_config(&cli) {
            Ok(c) => Input::Iface(c),
            Err(e) => {
                eprintln!("fathom-agent: error: {e}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!(
                "fathom-agent: error: one of --pcap FILE, --iface IFACE or --ebpf is required"
            );
            return ExitCode::from(2);
        }
    };
    let (extra_parsers, hooks) = match load_plugins(&cli.plugin) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("fathom-agent: error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut metrics = match metrics_driver(&cli) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("fathom-agent: error: {e}");
            return ExitCode::from(2);
        }
    };
    let live = !matches!(input, Input::Pcap(_));
    let code = run_file(input, cli.json, metrics.as_mut(), extra_parsers, hooks);
    if let (Some(addr), Some(secs), false) = (&cli.prometheus, cli.duration, live) {
        tracing::info!(%addr, secs, "Serving the final metrics.");
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
    code
}

/// The AF_PACKET settings of `--iface IFACE [--duration SECS] [--capture-threads N] [--bpf-filter-file FILE]`.
#[cfg(feature = "afpacket")]
fn iface_config(cli: &Cli) -> Result<fathom_capture::AfPacketConfig, String> {
    let mut c = fathom_capture::AfPacketConfig::new(cli.iface.clone().unwrap_or_default());
    c.threads = cli.capture_threads.unwrap_or(1);
    c.run_for = cli.duration.map(std::time::Duration::from_secs);
    if let Some(path) = &cli.bpf_filter_file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let program = fathom_capture::BpfProgram::parse_ddd(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        c.filter = Some(program);
    }
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

/// Parsers and message hooks from the `--plugin` files.
type Plugins = (Vec<Arc<dyn L7Parser>>, Vec<Arc<dyn MessageHook>>);

/// Load the `--plugin` WASM modules (one shared wasmtime engine), Fathom-ABI or DeepFlow-ABI (recognised by
/// their imports and exports). A plugin that parses a protocol is probed after the built-in parsers; one that
/// hooks HTTP is run on HTTP/1, HTTP/2 and gRPC messages, in command-line order; a plugin may be both.
#[cfg(feature = "wasm-plugins")]
fn load_plugins(paths: &[PathBuf]) -> Result<Plugins, String> {
    let mut plugins: Plugins = (Vec::new(), Vec::new());
    if paths.is_empty() {
        return Ok(plugins);
    }
    let host = fathom_plugin_wasm::PluginHost::new(fathom_plugin_wasm::PluginConfig::default())
        .map_err(|e| e.to_string())?;
    for path in paths {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin");
        let plugin = host
            .load_any(name, &bytes)
            .map_err(|e| format!("plugin {}: {e}", path.display()))?;
        let (parser, hook) = (plugin.parser(), plugin.hook());
        tracing::info!(
            plugin = name,
            abi = plugin.abi(),
            parser = parser.is_some(),
            hooks = hook.is_some(),
            "WASM plugin loaded."
        );
        plugins.0.extend(parser);
        plugins.1.extend(hook);
    }
    Ok(plugins)
}

/// Built without WASM support: `--plugin` is refused.
#[cfg(not(feature = "wasm-plugins"))]
fn load_plugins(paths: &[PathBuf]) -> Result<Plugins, String> {
    if paths.is_empty() {
        Ok((Vec::new(), Vec::new()))
    } else {
        Err("--plugin needs an agent built with the `wasm-plugins` feature".into())
    }
}

/// The metrics outputs asked for on the command line, if any.
fn metrics_driver(cli: &Cli) -> Result<Option<MetricsDriver>, fathom_metrics::DriverError> {
    let json_rows = cli.json == Some(JsonKind::Metrics);
    if !json_rows && cli.prometheus.is_none() && cli.otlp.is_none() {
        return Ok(None);
    }
    let options = DriverOptions {
        json_rows,
        prometheus: cli.prometheus.clone(),
        otlp: cli.otlp.clone(),
        clock_from_records: cli.pcap.is_some(),
        ..DriverOptions::default()
    };
    MetricsDriver::new(fathom_metrics::Config::default(), options).map(Some)
}

fn progress_bar(path: &std::path::Path) -> Option<(indicatif::ProgressBar, Arc<AtomicU64>)> {
    let len = std::fs::metadata(path).ok()?.len();
    if !std::io::stderr().is_terminal() || len < 64 << 20 {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    Some((bar, Arc::new(AtomicU64::new(0))))
}

/// Where the pipeline reads from.
enum Input {
    /// A capture file.
    Pcap(PathBuf),
    /// Live socket data from eBPF.
    #[cfg(feature = "ebpf")]
    Ebpf(fathom_capture::EbpfConfig),
    /// Live packets from an interface (AF_PACKET).
    #[cfg(feature = "afpacket")]
    Iface(fathom_capture::AfPacketConfig),
}

impl Input {
    fn label(&self) -> String {
        match self {
            Input::Pcap(p) => p.display().to_string(),
            #[cfg(feature = "ebpf")]
            Input::Ebpf(_) => "--ebpf".to_owned(),
            #[cfg(feature = "afpacket")]
            Input::Iface(c) => format!("--iface {}", c.iface),
        }
    }
}

fn run_file(
    input: Input,
    json: Option<JsonKind>,
    mut metrics: Option<&mut MetricsDriver>,
    extra_parsers: Vec<Arc<dyn L7Parser>>,
    hooks: Vec<Arc<dyn MessageHook>>,
) -> ExitCode {
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut summary = Summary::default();
    let mut write_err: Option<std::io::Error> = None;
    let bar = match &input {
        Input::Pcap(path) => progress_bar(path),
        #[cfg(feature = "ebpf")]
        Input::Ebpf(_) => None,
        #[cfg(feature = "afpacket")]
        Input::Iface(_) => None,
    };
    let options = RunOptions {
        progress: bar.as_ref().map(|(_, p)| p.clone()),
        // FATHOM_SINGLE_THREAD=1 runs capture and parsing on one thread (for measurements).
        single_thread: std::env::var_os("FATHOM_SINGLE_THREAD").is_some(),
        extra_parsers,
        hooks,
        ..RunOptions::default()
    };
    let mut n = 0u64;
    let mut line = Vec::new();
    let live = !matches!(input, Input::Pcap(_));
    let mut last_flush = std::time::Instant::now();
    let sink = |o: Output<'_>| {
        if write_err.is_some() {
            return;
        }
        if let Output::BatchDone = o {
            // Live output appears within about 100 ms (plus a poll), not only once the buffer is full.
            if live && last_flush.elapsed() >= std::time::Duration::from_millis(100) {
                last_flush = std::time::Instant::now();
                if let Err(e) = w.flush() {
                    write_err = Some(e);
                }
            }
            return;
        }
        if let Some(m) = metrics.as_deref_mut() {
            let r = match &o {
                Output::Log(l) => m.on_log(l, &mut w),
                Output::Flow(f) => m.on_flow(f, &mut w),
                Output::BatchDone => Ok(()),
            };
            if let Err(e) = r {
                write_err = Some(e);
                return;
            }
        }
        let r = match (&o, json) {
            (Output::Log(l), Some(JsonKind::Logs)) => {
                line.clear();
                fathom_agent::json::write_log(l, &mut line);
                line.push(b'\n');
                w.write_all(&line)
            }
            (Output::Flow(f), Some(JsonKind::Flows)) => serde_json::to_writer(&mut w, f)
                .map_err(std::io::Error::from)
                .and_then(|_| w.write_all(b"\n")),
            (_, None) => {
                summary.add(&o);
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = r {
            write_err = Some(e);
        }
        n += 1;
        if n.is_multiple_of(4096) {
            if let Some((bar, pos)) = &bar {
                bar.set_position(pos.load(Ordering::Relaxed));
            }
        }
    };
    let result = match &input {
        Input::Pcap(path) => run_pcap(path, &options, sink),
        #[cfg(feature = "ebpf")]
        Input::Ebpf(config) => fathom_agent::run_ebpf(config.clone(), &options, sink),
        #[cfg(feature = "afpacket")]
        Input::Iface(config) => fathom_agent::run_iface(config, &options, sink),
    };
    if let Some((bar, _)) = &bar {
        bar.finish_and_clear();
    }
    let (stats, failure) = match result {
        Ok(stats) => (Some(stats), None),
        Err(e) => match e.downcast::<DamagedCapture>() {
            Ok(d) => (Some(*d.stats.clone()), Some(format!("{}", d.error))),
            Err(e) => (None, Some(format!("{e:#}"))),
        },
    };
    if let Some(m) = metrics {
        if let Err(e) = m.finish(&mut w) {
            write_err.get_or_insert(e);
        }
        report_metrics(m);
    }
    if json.is_none() {
        if let Some(stats) = &stats {
            let _ = w.write_all(summary.render(stats).as_bytes());
        }
    }
    if let Err(e) = w.flush() {
        write_err.get_or_insert(e);
    }
    if let Some(e) = write_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            tracing::error!(error = %e, "Writing output failed.");
            return ExitCode::from(1);
        }
    }
    if let Some(stats) = &stats {
        tracing::info!(
            packets = stats.capture.packets,
            flows = stats.flows,
            logs = stats.logs,
            "Capture done."
        );
    }
    match failure {
        None => ExitCode::SUCCESS,
        Some(msg) => {
            eprintln!("fathom-agent: error: {}: {msg}", input.label());
            ExitCode::from(1)
        }
    }
}

fn report_metrics(m: &MetricsDriver) {
    let s = m.aggregator().stats();
    tracing::info!(
        series = s.series,
        l4_series = s.l4_series,
        overflow_logs = s.overflow_logs,
        late_logs = s.late_logs,
        "Metrics done."
    );
    if let (n @ 1.., Some(e)) = m.otlp_failures() {
        tracing::warn!(failures = n, error = %e, "OTLP export failed.");
    }
}
