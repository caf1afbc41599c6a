//! The WASI preview 1 (`wasi_snapshot_preview1`) functions plugins built for `wasm32-wasip1` import, written
//! by hand for the plugin sandbox.
//!
//! DeepFlow-ABI plugins are usually TinyGo (`-target=wasi`) or Rust `wasm32-wasip1` builds: their runtimes
//! import a handful of WASI functions even when the plugin never opens a file (the Go runtime reads the
//! clock and the environment at start-up, `random_get` seeds map hashing, a panic message goes through
//! `fd_write`). A plugin must not reach the host's files, clock precision or environment, so this module
//! gives it a closed world:
//!
//! - no arguments and no environment variables (`args_*`, `environ_*` report zero entries);
//! - no preopened directories: `fd_prestat_get` answers `BADF` on fd 3, which is how wasi-libc and the Go
//!   runtime learn the preopen list is empty, so every path function answers `BADF`/`NOTCAPABLE`;
//! - stdin is empty (`fd_read` on fd 0 returns 0 bytes); stdout and stderr are captured line by line into
//!   this process's log (`tracing`, target `fathom_plugin_wasm::guest`, stdout at `debug`, stderr at `info`),
//!   at most [`MAX_LOG_LINE`] bytes a line, and never reach the real descriptors;
//! - `clock_time_get` gives the real-time and monotonic clocks (microsecond resolution);
//! - `random_get` fills from a per-plugin SplitMix64 generator seeded from the process's hasher keys: good
//!   enough for hash seeding, not for cryptography (a plugin has no business doing cryptography);
//! - `proc_exit` traps with [`ProcExit`]: the host fails that call (an exit from `_start` with code 0 is the
//!   normal end of a command module's initialisation);
//! - `sched_yield` succeeds, `poll_oneoff` and the socket functions answer `NOTSUP`/`BADF`.
//!
//! Every function runs under the same sandbox as the plugin's own code: the fuel of the call that reached
//! it, the store's memory limits, and an out-of-bounds pointer is answered with `FAULT` (never a host panic).
//!
//! Why not `wasmtime-wasi`: it implements the real thing (files, sockets, clocks, a `WasiCtx` with
//! capability-based preopens) on `cap-std`, and its preview 1 adapter brings `tokio`, `cap-std`, `cap-fs-ext`,
//! `fs-set-times`, `system-interface`, `io-lifetimes` and the component-model machinery: about forty extra
//! crates and a much larger compile, to give plugins a world they must not have. The closed world above is a
//! few hundred lines and every answer is ours to test.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use wasmtime::{Caller, Extern, Linker, Memory};

/// The import module name of WASI preview 1.
pub(crate) const MODULE: &str = "wasi_snapshot_preview1";

/// Longest line of guest output kept for the log (the rest of the line is dropped).
pub const MAX_LOG_LINE: usize = 1024;

/// WASI errno values used here.
mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const INVAL: i32 = 28;
    pub const NOTSUP: i32 = 58;
    pub const SPIPE: i32 = 70;
    pub const NOTCAPABLE: i32 = 76;
}

/// Every function of `wasi_snapshot_preview1` this host links (a module importing another one is refused at
/// load time, naming it).
pub const PROVIDED: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_advise",
    "fd_allocate",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_renumber",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "poll_oneoff",
    "proc_exit",
    "proc_raise",
    "random_get",
    "sched_yield",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
];

/// The guest called `proc_exit(code)`: the call that reached it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcExit(pub i32);

impl std::fmt::Display for ProcExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the plugin called proc_exit({})", self.0)
    }
}

impl std::error::Error for ProcExit {}

/// Per-plugin WASI state (lives in the plugin's store).
#[derive(Debug)]
pub(crate) struct WasiCtx {
    plugin: Arc<str>,
    rng: u64,
    started: Instant,
    lines: [Vec<u8>; 2],
    /// Bytes the guest wrote to stdout/stderr (counted even when not logged).
    pub(crate) output_bytes: u64,
}

impl WasiCtx {
    pub(crate) fn new(plugin: Arc<str>) -> WasiCtx {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(plugin.as_bytes());
        WasiCtx {
            plugin,
            rng: h.finish(),
            started: Instant::now(),
            lines: [Vec::new(), Vec::new()],
            output_bytes: 0,
        }
    }

    fn next_u64(&mut self) -> u64 {
        // SplitMix64.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Append guest output of stream `i` (0 stdout, 1 stderr), logging each complete line.
    fn output(&mut self, i: usize, mut data: &[u8]) {
        self.output_bytes += data.len() as u64;
        while !data.is_empty() {
            let (part, rest, eol) = match data.iter().position(|&b| b == b'\n') {
                Some(n) => (&data[..n], &data[n + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            let line = &mut self.lines[i];
            let room = MAX_LOG_LINE.saturating_sub(line.len());
            line.extend_from_slice(&part[..part.len().min(room)]);
            if eol {
                self.flush(i);
            }
            data = rest;
        }
    }

    fn flush(&mut self, i: usize) {
        let line = std::mem::take(&mut self.lines[i]);
        let text = String::from_utf8_lossy(&line);
        if i == 0 {
            tracing::debug!(target: "fathom_plugin_wasm::guest", plugin = %self.plugin, stream = "stdout", "{text}");
        } else {
            tracing::info!(target: "fathom_plugin_wasm::guest", plugin = %self.plugin, stream = "stderr", "{text}");
        }
        self.lines[i] = line;
        self.lines[i].clear();
    }
}

/// Store data that carries a [`WasiCtx`].
pub(crate) trait HasWasi {
    fn wasi(&mut self) -> &mut WasiCtx;
    /// The instance's exported memory, once known (saves a lookup by name on every call).
    fn memory(&self) -> Option<Memory>;
}

fn memory<T: HasWasi>(caller: &mut Caller<'_, T>) -> Option<Memory> {
    if let Some(m) = caller.data().memory() {
        return Some(m);
    }
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

/// Guest range `ptr..ptr+len` as usizes, if it lies inside `size` bytes.
fn range(ptr: i32, len: u64, size: usize) -> Option<std::ops::Range<usize>> {
    let start = ptr as u32 as u64;
    let end = start.checked_add(len)?;
    (end <= size as u64).then_some(start as usize..end as usize)
}

fn write_bytes<T: HasWasi>(caller: &mut Caller<'_, T>, ptr: i32, bytes: &[u8]) -> i32 {
    let Some(mem) = memory(caller) else {
        return errno::FAULT;
    };
    let data = mem.data_mut(caller);
    match range(ptr, bytes.len() as u64, data.len()) {
        Some(r) => {
            data[r].copy_from_slice(bytes);
            errno::SUCCESS
        }
        None => errno::FAULT,
    }
}

fn write_u32<T: HasWasi>(caller: &mut Caller<'_, T>, ptr: i32, v: u32) -> i32 {
    write_bytes(caller, ptr, &v.to_le_bytes())
}

fn write_u64<T: HasWasi>(caller: &mut Caller<'_, T>, ptr: i32, v: u64) -> i32 {
    write_bytes(caller, ptr, &v.to_le_bytes())
}

/// Two u32 zeros (count and buffer size of an empty list).
fn write_zero_sizes<T: HasWasi>(caller: &mut Caller<'_, T>, a: i32, b: i32) -> i32 {
    match write_u32(caller, a, 0) {
        errno::SUCCESS => write_u32(caller, b, 0),
        e => e,
    }
}

fn is_stdio(fd: i32) -> bool {
    (0..=2).contains(&fd)
}

fn fd_write<T: HasWasi>(
    mut caller: Caller<'_, T>,
    fd: i32,
    iovs: i32,
    n: i32,
    nwritten: i32,
) -> i32 {
    if fd != 1 && fd != 2 {
        return errno::BADF;
    }
    let Some(mem) = memory(&mut caller) else {
        return errno::FAULT;
    };
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let Some(vec) = range(iovs, (n as u32 as u64) * 8, data.len()) else {
        return errno::FAULT;
    };
    let mut total: u32 = 0;
    for iov in data[vec].chunks_exact(8) {
        let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        let Some(r) = range(ptr, len as u64, data.len()) else {
            return errno::FAULT;
        };
        state.wasi().output(fd as usize - 1, &data[r]);
        total = total.saturating_add(len);
    }
    write_u32(&mut caller, nwritten, total)
}

fn fd_read<T: HasWasi>(mut caller: Caller<'_, T>, fd: i32, _iovs: i32, _n: i32, nread: i32) -> i32 {
    if fd == 0 {
        // stdin is empty.
        return write_u32(&mut caller, nread, 0);
    }
    errno::BADF
}

fn random_get<T: HasWasi>(mut caller: Caller<'_, T>, buf: i32, len: i32) -> i32 {
    let Some(mem) = memory(&mut caller) else {
        return errno::FAULT;
    };
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let Some(r) = range(buf, len as u32 as u64, data.len()) else {
        return errno::FAULT;
    };
    let wasi = state.wasi();
    for chunk in data[r].chunks_mut(8) {
        let v = wasi.next_u64().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    errno::SUCCESS
}

fn clock_time_get<T: HasWasi>(
    mut caller: Caller<'_, T>,
    id: i32,
    _precision: i64,
    out: i32,
) -> i32 {
    let ns = match id {
        // REALTIME
        0 => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64 * 1_000)
            .unwrap_or(0),
        // MONOTONIC, and the CPU-time clocks (measured as elapsed time since the plugin was loaded).
        1..=3 => caller.data_mut().wasi().started.elapsed().as_micros() as u64 * 1_000,
        _ => return errno::INVAL,
    };
    write_u64(&mut caller, out, ns)
}

fn clock_res_get<T: HasWasi>(mut caller: Caller<'_, T>, id: i32, out: i32) -> i32 {
    if !(0..=3).contains(&id) {
        return errno::INVAL;
    }
    write_u64(&mut caller, out, 1_000)
}

/// `fdstat` of stdin/stdout/stderr: a character device with read or write rights.
fn fd_fdstat_get<T: HasWasi>(mut caller: Caller<'_, T>, fd: i32, out: i32) -> i32 {
    if !is_stdio(fd) {
        return errno::BADF;
    }
    let mut stat = [0u8; 24];
    stat[0] = 2; // filetype CHARACTER_DEVICE
    let rights: u64 = if fd == 0 { 1 << 1 } else { 1 << 6 }; // FD_READ / FD_WRITE
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    write_bytes(&mut caller, out, &stat)
}

fn fd_filestat_get<T: HasWasi>(mut caller: Caller<'_, T>, fd: i32, out: i32) -> i32 {
    if !is_stdio(fd) {
        return errno::BADF;
    }
    let mut stat = [0u8; 64];
    stat[16] = 2; // filetype CHARACTER_DEVICE
    write_bytes(&mut caller, out, &stat)
}

/// Link every function of [`PROVIDED`] into `linker`.
pub(crate) fn add_to_linker<T: HasWasi + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let m = MODULE;
    // Arguments and environment: empty.
    linker.func_wrap(
        m,
        "args_sizes_get",
        |mut c: Caller<'_, T>, a: i32, b: i32| write_zero_sizes(&mut c, a, b),
    )?;
    linker.func_wrap(
        m,
        "environ_sizes_get",
        |mut c: Caller<'_, T>, a: i32, b: i32| write_zero_sizes(&mut c, a, b),
    )?;
    linker.func_wrap(m, "args_get", |_: Caller<'_, T>, _: i32, _: i32| {
        errno::SUCCESS
    })?;
    linker.func_wrap(m, "environ_get", |_: Caller<'_, T>, _: i32, _: i32| {
        errno::SUCCESS
    })?;
    // Clocks and randomness.
    linker.func_wrap(m, "clock_time_get", clock_time_get::<T>)?;
    linker.func_wrap(m, "clock_res_get", clock_res_get::<T>)?;
    linker.func_wrap(m, "random_get", random_get::<T>)?;
    // Standard streams.
    linker.func_wrap(m, "fd_write", fd_write::<T>)?;
    linker.func_wrap(m, "fd_read", fd_read::<T>)?;
    linker.func_wrap(m, "fd_fdstat_get", fd_fdstat_get::<T>)?;
    linker.func_wrap(m, "fd_filestat_get", fd_filestat_get::<T>)?;
    linker.func_wrap(m, "fd_close", |_: Caller<'_, T>, fd: i32| {
        if is_stdio(fd) {
            errno::SUCCESS
        } else {
            errno::BADF
        }
    })?;
    linker.func_wrap(
        m,
        "fd_seek",
        |_: Caller<'_, T>, fd: i32, _: i64, _: i32, _: i32| {
            if is_stdio(fd) {
                errno::SPIPE
            } else {
                errno::BADF
            }
        },
    )?;
    linker.func_wrap(m, "fd_tell", |_: Caller<'_, T>, fd: i32, _: i32| {
        if is_stdio(fd) {
            errno::SPIPE
        } else {
            errno::BADF
        }
    })?;
    let stdio_ok = |fd: i32| {
        if is_stdio(fd) {
            errno::SUCCESS
        } else {
            errno::BADF
        }
    };
    linker.func_wrap(m, "fd_sync", move |_: Caller<'_, T>, fd: i32| stdio_ok(fd))?;
    linker.func_wrap(m, "fd_datasync", move |_: Caller<'_, T>, fd: i32| {
        stdio_ok(fd)
    })?;
    linker.func_wrap(
        m,
        "fd_fdstat_set_flags",
        move |_: Caller<'_, T>, fd: i32, _: i32| {
            if is_stdio(fd) {
                errno::NOTSUP
            } else {
                errno::BADF
            }
        },
    )?;
    linker.func_wrap(
        m,
        "fd_fdstat_set_rights",
        |_: Caller<'_, T>, fd: i32, _: i64, _: i64| {
            if is_stdio(fd) {
                errno::NOTCAPABLE
            } else {
                errno::BADF
            }
        },
    )?;
    linker.func_wrap(
        m,
        "fd_advise",
        |_: Caller<'_, T>, fd: i32, _: i64, _: i64, _: i32| {
            if is_stdio(fd) {
                errno::SPIPE
            } else {
                errno::BADF
            }
        },
    )?;
    linker.func_wrap(
        m,
        "fd_allocate",
        |_: Caller<'_, T>, fd: i32, _: i64, _: i64| {
            if is_stdio(fd) {
                errno::SPIPE
            } else {
                errno::BADF
            }
        },
    )?;
    linker.func_wrap(
        m,
        "fd_filestat_set_size",
        |_: Caller<'_, T>, fd: i32, _: i64| {
            if is_stdio(fd) {
                errno::INVAL
            } else {
                errno::BADF
            }
        },
    )?;
    linker.func_wrap(
        m,
        "fd_filestat_set_times",
        |_: Caller<'_, T>, fd: i32, _: i64, _: i64, _: i32| {
            if is_stdio(fd) {
                errno::NOTCAPABLE
            } else {
                errno::BADF
            }
        },
    )?;
    linker.func_wrap(
        m,
        "fd_pread",
        |_: Caller<'_, T>, fd: i32, _: i32, _: i32, _: i64, _: i32| {
            if is_stdio(fd) {
                errno::SPIPE
            } else {
                errno::BADF
            }
        },
    )?;
    linker.func_wrap(
        m,
        "fd_pwrite",
        |_: Caller<'_, T>, fd: i32, _: i32, _: i32, _: i64, _: i32| {
            if is_stdio(fd) {
                errno::SPIPE
            } else {
                errno::BADF
            }
        },
    )?;
    linker.func_wrap(
        m,
        "fd_readdir",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i64, _: i32| errno::BADF,
    )?;
    linker.func_wrap(m, "fd_renumber", |_: Caller<'_, T>, _: i32, _: i32| {
        errno::NOTSUP
    })?;
    // No preopened directories: fd 3 and up are not open.
    linker.func_wrap(m, "fd_prestat_get", |_: Caller<'_, T>, _: i32, _: i32| {
        errno::BADF
    })?;
    linker.func_wrap(
        m,
        "fd_prestat_dir_name",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32| errno::BADF,
    )?;
    // Paths: there is no directory to resolve them against.
    linker.func_wrap(
        m,
        "path_open",
        |_: Caller<'_, T>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i64,
         _: i64,
         _: i32,
         _: i32| { errno::BADF },
    )?;
    linker.func_wrap(
        m,
        "path_filestat_get",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32, _: i32| errno::BADF,
    )?;
    linker.func_wrap(
        m,
        "path_filestat_set_times",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32, _: i64, _: i64, _: i32| errno::BADF,
    )?;
    linker.func_wrap(
        m,
        "path_readlink",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| errno::BADF,
    )?;
    linker.func_wrap(
        m,
        "path_create_directory",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32| errno::BADF,
    )?;
    linker.func_wrap(
        m,
        "path_remove_directory",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32| errno::BADF,
    )?;
    linker.func_wrap(
        m,
        "path_unlink_file",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32| errno::BADF,
    )?;
    linker.func_wrap(
        m,
        "path_rename",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| errno::BADF,
    )?;
    linker.func_wrap(
        m,
        "path_link",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| errno::BADF,
    )?;
    linker.func_wrap(
        m,
        "path_symlink",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32, _: i32| errno::BADF,
    )?;
    // Scheduling, signals, process exit.
    linker.func_wrap(m, "sched_yield", |_: Caller<'_, T>| errno::SUCCESS)?;
    linker.func_wrap(
        m,
        "poll_oneoff",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32| errno::NOTSUP,
    )?;
    linker.func_wrap(m, "proc_raise", |_: Caller<'_, T>, _: i32| errno::NOTSUP)?;
    linker.func_wrap(
        m,
        "proc_exit",
        |_: Caller<'_, T>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(ProcExit(code)))
        },
    )?;
    // Sockets: none.
    linker.func_wrap(
        m,
        "sock_accept",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32| errno::BADF,
    )?;
    linker.func_wrap(
        m,
        "sock_recv",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| errno::BADF,
    )?;
    linker.func_wrap(
        m,
        "sock_send",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32, _: i32| errno::BADF,
    )?;
    linker.func_wrap(m, "sock_shutdown", |_: Caller<'_, T>, _: i32, _: i32| {
        errno::BADF
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_checks_overflow_and_bounds() {
        assert_eq!(range(0, 4, 4), Some(0..4));
        assert_eq!(range(1, 4, 4), None);
        assert_eq!(range(-1, 2, usize::MAX), Some(0xffff_ffff..0x1_0000_0001));
        assert_eq!(range(-1, u64::MAX, 16), None);
    }

    #[test]
    fn output_is_split_into_capped_lines() {
        let mut w = WasiCtx::new(Arc::from("t"));
        w.output(0, b"hello\nwor");
        assert_eq!(w.lines[0], b"wor");
        let long = vec![b'x'; MAX_LOG_LINE * 3];
        w.output(0, &long);
        assert_eq!(w.lines[0].len(), MAX_LOG_LINE);
        w.output(0, b"\n");
        assert!(w.lines[0].is_empty());
        assert_eq!(w.output_bytes, 9 + 3 * MAX_LOG_LINE as u64 + 1);
    }

    #[test]
    fn random_words_differ() {
        let mut w = WasiCtx::new(Arc::from("t"));
        let a = w.next_u64();
        let b = w.next_u64();
        assert_ne!(a, b);
    }
}
