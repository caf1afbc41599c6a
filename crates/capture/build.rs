//! With the `ebpf` feature: generate `vmlinux.h` from the running kernel's BTF (bpftool) and compile
//! `bpf/sock_trace.bpf.c` (and `bpf/test_bad.bpf.c`, for a test, and `bpf/noop.bpf.c`, for the overhead benchmark) with clang into `$OUT_DIR/*.bpf.o`. Without the feature: nothing.
//!
//! Tools: `FATHOM_BPFTOOL` (default `bpftool`, also looked up in /usr/sbin and /sbin), `FATHOM_CLANG` (default
//! `clang`), `FATHOM_BTF` (default `/sys/kernel/btf/vmlinux`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_EBPF");
    if std::env::var_os("CARGO_FEATURE_EBPF").is_none() {
        return;
    }
    // Every file under bpf/ (the programs include their headers from there).
    println!("cargo:rerun-if-changed=bpf");
    for v in ["FATHOM_BPFTOOL", "FATHOM_CLANG", "FATHOM_BTF"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let btf = std::env::var("FATHOM_BTF").unwrap_or_else(|_| "/sys/kernel/btf/vmlinux".into());
    let bpftool = std::env::var("FATHOM_BPFTOOL").unwrap_or_else(|_| find_tool("bpftool"));
    let clang = std::env::var("FATHOM_CLANG").unwrap_or_else(|_| "clang".into());

    let vmlinux = Command::new(&bpftool)
        .args(["btf", "dump", "file", &btf, "format", "c"])
        .output()
        .unwrap_or_else(|e| {
            panic!("feature `ebpf`: cannot run `{bpftool}` (set FATHOM_BPFTOOL): {e}")
        });
    if !vmlinux.status.success() {
        panic!(
            "feature `ebpf`: `{bpftool} btf dump file {btf} format c` failed: {}",
            String::from_utf8_lossy(&vmlinux.stderr)
        );
    }
    std::fs::write(out.join("vmlinux.h"), &vmlinux.stdout).expect("write vmlinux.h");

    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok("riscv64") => "riscv",
        Ok("s390x") => "s390",
        Ok("powerpc64") => "powerpc",
        Ok(other) => panic!("feature `ebpf`: unsupported target arch {other}"),
        Err(_) => "x86",
    };
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let bpf_dir = manifest.join("bpf");
    // The programs, a program the verifier rejects (for the test of that error path), and empty programs on the
    // same tracepoints (the hooking floor of the overhead benchmark).
    for name in ["sock_trace", "test_bad", "noop"] {
        let src = bpf_dir.join(format!("{name}.bpf.c"));
        let obj = out.join(format!("{name}.bpf.o"));
        let status = Command::new(&clang)
            .args([
                "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror",
            ])
            .arg(format!("-D__TARGET_ARCH_{arch}"))
            .arg("-I")
            .arg(&out)
            .arg("-I")
            .arg(&bpf_dir)
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| {
                panic!("feature `ebpf`: cannot run `{clang}` (set FATHOM_CLANG): {e}")
            });
        if !status.success() {
            panic!("feature `ebpf`: clang failed to compile bpf/{name}.bpf.c ({status})");
        }
    }
}

fn find_tool(name: &str) -> String {
    for dir in ["/usr/sbin", "/sbin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p.to_string_lossy().into_owned();
        }
    }
    name.to_owned()
}
