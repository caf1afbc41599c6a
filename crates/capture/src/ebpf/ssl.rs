//! OpenSSL plaintext: which `libssl` files to hook, and attaching the uprobes of `bpf/ssl_trace.h` to them.
//!
//! A uprobe belongs to a file (its inode), not to a process: one attachment to `libssl.so.3` fires in every
//! process that maps that file, including processes started later. The libraries hooked are
//! - the configured paths ([`SslConfig::libs`], `--ssl-lib` of the agent): a path without the OpenSSL symbols
//!   is an error ([`SslError::MissingSymbol`]);
//! - with [`SslConfig::discover`]: the distribution's `libssl.so.3` (and `libssl.so.1.1`) where present, and every
//!   `libssl.so*` mapped by a running process (`/proc/PID/maps`, opened through `/proc/PID/root` so libraries
//!   inside containers are found too), re-scanned every [`RESCAN_INTERVAL`]; such a library that lacks the
//!   symbols is skipped with a warning.
//!
//! Files are told apart by (device, inode), so the same library reached by two paths (`/lib` and `/usr/lib`) is
//! hooked once. On x86-64, where `SSL_read`/`SSL_read_ex` (and the write pair) share one internal worker that
//! starts with an instruction the kernel emulates, the worker is hooked instead of the public functions (which
//! start with `sub $N, %rsp`, single-stepped on every call): the functions are decoded with `iced-x86` and
//! the ELF is read with `object` (see `common_callee`). Statically linked OpenSSL in an executable is hooked only when that executable is given as a
//! configured path (its symbols must be present); BoringSSL, GnuTLS, rustls, Go's crypto/tls are not covered.

use aya::programs::uprobe::{UProbeAttachLocation, UProbeScope};
use aya::programs::{ProgramError, UProbe};
use aya::Ebpf;
use hashbrown::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

/// How often running processes are searched again for libssl files not hooked yet.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(10);

/// The distribution paths of OpenSSL's libssl that are hooked (when present) for processes started later.
pub const SYSTEM_LIBSSL: [&str; 8] = [
    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib/aarch64-linux-gnu/libssl.so.3",
    "/usr/lib64/libssl.so.3",
    "/usr/lib/libssl.so.3",
    "/usr/lib/x86_64-linux-gnu/libssl.so.1.1",
    "/usr/lib/aarch64-linux-gnu/libssl.so.1.1",
    "/usr/lib64/libssl.so.1.1",
    "/usr/lib/libssl.so.1.1",
];

/// OpenSSL plaintext tracing settings of an [`EbpfSource`](super::EbpfSource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslConfig {
    /// Hook OpenSSL at all.
    pub enabled: bool,
    /// Also hook the system libssl ([`SYSTEM_LIBSSL`]) and every libssl mapped by a running process.
    pub discover: bool,
    /// Libraries (or executables with OpenSSL linked in) to hook; each must export `SSL_read` and `SSL_write`.
    pub libs: Vec<PathBuf>,
}

impl Default for SslConfig {
    fn default() -> Self {
        SslConfig {
            enabled: true,
            discover: true,
            libs: Vec::new(),
        }
    }
}

/// Why OpenSSL hooks could not be set. The messages include the underlying error (no `source()`, as for
/// [`super::EbpfError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SslError {
    /// A configured library cannot be read.
    #[error("OpenSSL library {}: {error}", path.display())]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A library lacks a symbol the hooks need (not OpenSSL's libssl, or stripped of its dynamic symbols).
    #[error(
        "OpenSSL library {} has no symbol `{symbol}` (is it OpenSSL's libssl, with its dynamic symbols?)",
        path.display()
    )]
    MissingSymbol {
        /// The path.
        path: PathBuf,
        /// The symbol.
        symbol: &'static str,
    },
    /// A uprobe could not be attached.
    #[error("attaching uprobe `{program}` to {symbol} of {} failed: {}", path.display(), super::chain(error.as_ref()))]
    Attach {
        /// The program.
        program: &'static str,
        /// The symbol.
        symbol: &'static str,
        /// The path.
        path: PathBuf,
        /// The kernel's error.
        error: Box<ProgramError>,
    },
}

/// `SSL_CNT_SUPPRESSED` of `bpf/ssl_trace.h` (index into the `ssl_counters` map).
pub(crate) const CNT_SUPPRESSED: u32 = 0;
/// `SSL_CNT_NO_FD`.
pub(crate) const CNT_NO_FD: u32 = 1;

/// The uprobe programs (`bpf/ssl_trace.h`): entry programs, then the one return program.
pub(crate) const ENTRY_PROGRAMS: [&str; 5] = [
    "ssl_read_enter",
    "ssl_read_ex_enter",
    "ssl_write_enter",
    "ssl_write_ex_enter",
    "ssl_other_enter",
];
/// The uretprobe attached to every hooked function.
pub(crate) const RETURN_PROGRAM: &str = "ssl_ret";

/// (symbol, entry program, required). The `_ex` variants exist since OpenSSL 1.1.1.
const HOOKS: [(&str, &str, bool); 8] = [
    ("SSL_read", "ssl_read_enter", true),
    ("SSL_write", "ssl_write_enter", true),
    ("SSL_read_ex", "ssl_read_ex_enter", false),
    ("SSL_write_ex", "ssl_write_ex_enter", false),
    ("SSL_do_handshake", "ssl_other_enter", false),
    ("SSL_shutdown", "ssl_other_enter", false),
    ("SSL_peek", "ssl_other_enter", false),
    ("SSL_peek_ex", "ssl_other_enter", false),
];

/// Paths of the `libssl.so*` files a `/proc/PID/maps` text names (each once, in order of appearance).
pub(crate) fn libssl_in_maps(maps: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode path
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        if path.starts_with('/') && name.starts_with("libssl.so") && !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// A file to hook: the path the uprobe is attached through and the path shown to users.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    open: PathBuf,
    shown: String,
}

/// libssl files of running processes: (open path, shown path).
fn running_libssl() -> Vec<Target> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue;
        };
        for path in libssl_in_maps(&maps) {
            out.push(Target {
                open: PathBuf::from(format!("/proc/{pid}/root{path}")),
                shown: path.to_owned(),
            });
        }
    }
    out
}

/// The OpenSSL hooks in place: attached files by (device, inode).
#[derive(Debug, Default)]
pub(crate) struct SslHooks {
    config: SslConfig,
    /// Files hooked, or found lacking symbols (not tried again).
    seen: HashSet<(u64, u64)>,
    /// Paths hooked, for users.
    pub(crate) attached: Vec<String>,
    /// When tracing is limited to these processes only (`EbpfConfig::pids` without comm/cgroup filters), the
    /// uprobes are attached to these processes alone: other processes calling the same libssl (e.g. the load
    /// generator of a benchmark) then take no uprobe trap at all instead of a trap that returns at the filter.
    scope_pids: Vec<u32>,
}

impl SslHooks {
    /// Load the programs and hook the configured and discovered libraries.
    ///
    /// # Errors
    /// A configured library that cannot be read, lacks the symbols or cannot be hooked; a program the kernel
    /// rejects (as [`super::EbpfError::Load`]).
    pub(crate) fn start(
        ebpf: &mut Ebpf,
        config: &SslConfig,
        scope_pids: &[u32],
    ) -> Result<SslHooks, super::EbpfError> {
        let mut hooks = SslHooks {
            config: config.clone(),
            scope_pids: scope_pids.to_vec(),
            ..SslHooks::default()
        };
        if !config.enabled {
            return Ok(hooks);
        }
        for name in ENTRY_PROGRAMS.into_iter().chain([RETURN_PROGRAM]) {
            load(ebpf, name)?;
        }
        for path in &config.libs {
            let meta = std::fs::metadata(path).map_err(|error| SslError::Unreadable {
                path: path.clone(),
                error,
            })?;
            let target = Target {
                open: path.clone(),
                shown: path.display().to_string(),
            };
            hooks.hook(ebpf, &target, (meta.dev(), meta.ino()))?;
        }
        if config.discover {
            let system = SYSTEM_LIBSSL.iter().map(|p| Target {
                open: PathBuf::from(p),
                shown: (*p).to_owned(),
            });
            let all: Vec<Target> = system.chain(running_libssl()).collect();
            hooks.hook_discovered(ebpf, &all);
        }
        tracing::info!(libraries = hooks.attached.len(), "OpenSSL hooks attached.");
        Ok(hooks)
    }

    /// Hook libssl files that running processes mapped since the last scan.
    pub(crate) fn rescan(&mut self, ebpf: &mut Ebpf) {
        if self.config.enabled && self.config.discover {
            let found = running_libssl();
            self.hook_discovered(ebpf, &found);
        }
    }

    fn hook_discovered(&mut self, ebpf: &mut Ebpf, targets: &[Target]) {
        for t in targets {
            let Ok(meta) = std::fs::metadata(&t.open) else {
                continue;
            };
            let id = (meta.dev(), meta.ino());
            if self.seen.contains(&id) {
                continue;
            }
            if let Err(error) = self.hook(ebpf, t, id) {
                self.seen.insert(id);
                tracing::warn!(path = %t.shown, error = %error, "Skipping an OpenSSL library.");
            }
        }
    }

    /// Attach every hook to one file (by `t.open`); nothing when its inode is hooked already.
    fn hook(&mut self, ebpf: &mut Ebpf, t: &Target, id: (u64, u64)) -> Result<(), SslError> {
        if self.seen.contains(&id) {
            return Ok(());
        }
        let data = std::fs::read(&t.open).map_err(|error| SslError::Unreadable {
            path: PathBuf::from(&t.shown),
            error,
        })?;
        let elf = ElfInfo::parse(&data).map_err(|error| SslError::Unreadable {
            path: PathBuf::from(&t.shown),
            error,
        })?;
        let symbols = &elf.names;
        for (symbol, _, required) in HOOKS {
            if required && !symbols.contains(symbol) {
                return Err(SslError::MissingSymbol {
                    path: PathBuf::from(&t.shown),
                    symbol,
                });
            }
        }
        self.seen.insert(id);
        let mut sites: Vec<(&'static str, UProbeAttachLocation<'static>, &'static str)> =
            Vec::new();
        let mut workers = Vec::new();
        for (symbol, program, _) in HOOKS {
            if !symbols.contains(symbol) {
                continue;
            }
            let worker = match symbol {
                "SSL_read" | "SSL_read_ex" => elf.workers[0].map(|w| (w, "ssl_read_ex_enter")),
                "SSL_write" | "SSL_write_ex" => elf.workers[1].map(|w| (w, "ssl_write_ex_enter")),
                _ => None,
            };
            match worker {
                // Both public functions lead to the worker: hook it once.
                Some((at, program)) => {
                    if !workers.contains(&at) {
                        workers.push(at);
                        sites.push((symbol, UProbeAttachLocation::AbsoluteOffset(at), program));
                    }
                }
                None => sites.push((symbol, UProbeAttachLocation::Symbol(symbol), program)),
            }
        }
        for (symbol, location, program) in sites {
            for name in [program, RETURN_PROGRAM] {
                let prog: &mut UProbe = match ebpf.program_mut(name).map(TryInto::try_into) {
                    Some(Ok(p)) => p,
                    _ => continue, // loaded in start(): cannot happen
                };
                let at = match &location {
                    UProbeAttachLocation::AbsoluteOffset(o) => {
                        UProbeAttachLocation::AbsoluteOffset(*o)
                    }
                    _ => UProbeAttachLocation::Symbol(symbol),
                };
                let scopes: Vec<UProbeScope> = if self.scope_pids.is_empty() {
                    vec![UProbeScope::AllProcesses]
                } else {
                    self.scope_pids
                        .iter()
                        .filter_map(|&pid| std::num::NonZeroU32::new(pid))
                        .map(UProbeScope::OneProcess)
                        .collect()
                };
                for scope in scopes {
                    let at = match &at {
                        UProbeAttachLocation::AbsoluteOffset(o) => {
                            UProbeAttachLocation::AbsoluteOffset(*o)
                        }
                        _ => UProbeAttachLocation::Symbol(symbol),
                    };
                    prog.attach(at, &t.open, scope)
                        .map_err(|source| SslError::Attach {
                            program: name,
                            symbol,
                            path: PathBuf::from(&t.shown),
                            error: Box::new(source),
                        })?;
                }
            }
        }
        tracing::info!(
            path = %t.shown,
            internal_workers = workers.len(),
            "Hooked OpenSSL."
        );
        self.attached.push(t.shown.clone());
        Ok(())
    }
}

/// Log the OpenSSL counters at the end of a capture (a warning when plaintext was lost).
pub(crate) fn report(stats: &super::EbpfStats) {
    if stats.ssl_libraries.is_empty() {
        return;
    }
    tracing::info!(
        libraries = ?stats.ssl_libraries,
        plaintext_events = stats.ssl_plaintext_events,
        ciphertext_suppressed = stats.ssl_ciphertext_suppressed,
        ciphertext_dropped = stats.ssl_ciphertext_dropped,
        "OpenSSL tracing done."
    );
    if stats.ssl_unknown_socket > 0 {
        tracing::warn!(
            calls = stats.ssl_unknown_socket,
            "OpenSSL calls whose socket was never seen: their plaintext was lost."
        );
    }
}

/// Load one uprobe program (the verifier runs here).
fn load(ebpf: &mut Ebpf, name: &'static str) -> Result<(), super::EbpfError> {
    let prog: &mut UProbe = super::program_as(ebpf, name)?;
    prog.load()
        .map_err(|source| super::load_error(name, source))
}

/// What the hooks need from an ELF file.
struct ElfInfo {
    /// Names of the defined functions it exports (`.dynsym`), or of its `.symtab` when it has no dynamic
    /// symbols (an executable given on purpose).
    names: HashSet<String>,
    /// File offsets of OpenSSL's internal `ssl_read_internal` and `ssl_write_internal`, when found.
    workers: [Option<u64>; 2],
}

impl ElfInfo {
    fn parse(data: &[u8]) -> std::io::Result<ElfInfo> {
        use object::{Object, ObjectSymbol};
        let file = object::File::parse(data).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an ELF file: {e}"),
            )
        })?;
        let mut syms: Vec<object::Symbol<'_, '_>> = file
            .dynamic_symbols()
            .filter(|s| s.is_definition())
            .collect();
        if syms.is_empty() {
            syms = file.symbols().filter(|s| s.is_definition()).collect();
        }
        let names = syms
            .iter()
            .filter_map(|s| s.name().ok().map(str::to_owned))
            .collect();
        let workers = if file.architecture() == object::Architecture::X86_64 {
            let find = |name: &str| syms.iter().find(|s| s.name() == Ok(name));
            let worker = |a: &str, b: &str| {
                let (a, b) = (find(a)?, find(b)?);
                common_callee(&file, (a.address(), a.size()), (b.address(), b.size()))
            };
            [
                worker("SSL_read", "SSL_read_ex"),
                worker("SSL_write", "SSL_write_ex"),
            ]
        } else {
            [None, None]
        };
        Ok(ElfInfo { names, workers })
    }
}

/// The code bytes of `[addr, addr + size)` and the file offset of `addr`.
fn code_at<'d>(file: &object::File<'d>, addr: u64, size: u64) -> Option<(&'d [u8], u64)> {
    use object::{Object, ObjectSection};
    let sec = file
        .sections()
        .find(|s| s.address() <= addr && addr < s.address() + s.size())?;
    let data = sec.data().ok()?;
    let start = usize::try_from(addr - sec.address()).ok()?;
    let end = start
        .checked_add(usize::try_from(size).ok()?)?
        .min(data.len());
    let (file_off, _) = sec.file_range()?;
    Some((data.get(start..end)?, file_off + (addr - sec.address())))
}

/// Direct call targets of the x86-64 function at `(addr, size)`.
fn callees(file: &object::File<'_>, (addr, size): (u64, u64)) -> Vec<u64> {
    use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind};
    let Some((code, _)) = code_at(file, addr, size.min(4096)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut d = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    while d.can_decode() {
        let ins = d.decode();
        if ins.is_invalid() {
            break;
        }
        if ins.mnemonic() == Mnemonic::Call && ins.op0_kind() == OpKind::NearBranch64 {
            out.push(ins.near_branch_target());
        }
    }
    out
}

/// OpenSSL's `SSL_read` and `SSL_read_ex` (likewise the write pair) both call one internal function with the
/// `_ex` signature (`ssl, buf, num, size_t *done`, > 0 on success). Hooking it instead of the public functions
/// is equivalent, and cheaper when it begins with an instruction the kernel emulates (`push`) while the public
/// ones begin with `sub $N, %rsp`, which the kernel must single-step (tens of µs per call under some
/// hypervisors). Returns the worker's file offset when exactly one direct callee is common to both functions
/// and it starts with a `push` of a register; `None` otherwise (the public functions are hooked then).
fn common_callee(file: &object::File<'_>, a: (u64, u64), b: (u64, u64)) -> Option<u64> {
    use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind};
    let ca = callees(file, a);
    let mut common: Vec<u64> = callees(file, b)
        .into_iter()
        .filter(|t| ca.contains(t))
        .collect();
    common.dedup();
    let [target] = common[..] else {
        return None;
    };
    let (code, file_off) = code_at(file, target, 16)?;
    let first = Decoder::with_ip(64, code, target, DecoderOptions::NONE).decode();
    (first.mnemonic() == Mnemonic::Push && first.op0_kind() == OpKind::Register).then_some(file_off)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn finds_libssl_in_maps() {
        let maps = "\
55d0c0a00000-55d0c0a2a000 r--p 00000000 fe:01 1311 /usr/sbin/nginx
7f1a2c000000-7f1a2c01f000 r--p 00000000 fe:01 2048 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1a2c01f000-7f1a2c07a000 r-xp 0001f000 fe:01 2048 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1a2d000000-7f1a2d100000 r--p 00000000 fe:01 2049 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f1a2e000000-7f1a2e001000 rw-p 00000000 00:00 0
7f1a2f000000-7f1a2f010000 r-xp 00000000 fe:01 4096 /opt/app/lib/libssl.so.1.1 (deleted)
7ffd0000000-7ffd0021000 rw-p 00000000 00:00 0 [stack]
";
        assert_eq!(
            libssl_in_maps(maps),
            [
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                "/opt/app/lib/libssl.so.1.1"
            ]
        );
        assert!(libssl_in_maps("garbage\n\n1 2 3 4 5 libssl.so.3").is_empty());
    }

    /// The system libssl exports what the hooks need; libcrypto (not libssl) lacks SSL_read.
    #[test]
    fn symbols_of_real_libraries() {
        let ssl = Path::new(SYSTEM_LIBSSL[0]);
        if !ssl.exists() {
            eprintln!("skipping: {} not installed", ssl.display());
            return;
        }
        let info = ElfInfo::parse(&std::fs::read(ssl).unwrap()).unwrap();
        for (symbol, _, _) in HOOKS {
            assert!(info.names.contains(symbol), "{symbol}");
        }
        // OpenSSL 3 on x86-64: SSL_read/SSL_read_ex share ssl_read_internal, SSL_write/_ex ssl_write_internal.
        if cfg!(target_arch = "x86_64") {
            let [Some(r), Some(w)] = info.workers else {
                panic!("internal workers not found: {:?}", info.workers);
            };
            assert_ne!(r, w);
        }
        let crypto = ssl.with_file_name("libcrypto.so.3");
        if crypto.exists() {
            let c = ElfInfo::parse(&std::fs::read(&crypto).unwrap()).unwrap();
            assert!(!c.names.contains("SSL_read"));
            assert_eq!(c.workers, [None, None]);
        }
        let err = ElfInfo::parse(b"not an elf").err().unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
