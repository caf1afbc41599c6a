//! Classic BPF filter programs in the text form `tcpdump -ddd EXPR` prints.
//!
//! No maintained pure-Rust compiler of pcap filter expressions exists, and linking libpcap only for its compiler
//! would add a C dependency to the crate; so the program comes compiled: `tcpdump -i IFACE -ddd 'tcp port 80'`
//! prints the instruction count on the first line, then one `code jt jf k` line (decimal) per instruction. The
//! kernel checks the program again when it is attached (`SO_ATTACH_FILTER`).

use super::AfPacketError;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant.
    pub k: u32,
}

/// A classic BPF program: 1 to [`BpfProgram::MAX_INSNS`] instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfProgram {
    insns: Vec<BpfInsn>,
}

impl BpfProgram {
    /// Most instructions the kernel accepts (`BPF_MAXINSNS`).
    pub const MAX_INSNS: usize = 4096;

    /// A program of these instructions.
    ///
    /// # Errors
    /// [`AfPacketError::Filter`] when there are none or more than [`BpfProgram::MAX_INSNS`].
    pub fn new(insns: Vec<BpfInsn>) -> Result<BpfProgram, AfPacketError> {
        if insns.is_empty() || insns.len() > Self::MAX_INSNS {
            return Err(AfPacketError::Filter {
                line: 1,
                reason: format!(
                    "{} instructions (1 to {} allowed)",
                    insns.len(),
                    Self::MAX_INSNS
                ),
            });
        }
        Ok(BpfProgram { insns })
    }

    /// Parse the output of `tcpdump -ddd EXPR`: a count line, then `code jt jf k` per line (blank lines and
    /// surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`AfPacketError::Filter`] with the line number when a line is not four numbers in range, or the count does
    /// not match.
    pub fn parse_ddd(text: &str) -> Result<BpfProgram, AfPacketError> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty());
        let err = |line: usize, reason: String| AfPacketError::Filter { line, reason };
        let (first, count) = lines
            .next()
            .ok_or_else(|| err(1, "empty program (expected `tcpdump -ddd` output)".into()))?;
        let count: usize = count.parse().map_err(|_| {
            err(
                first,
                format!("expected the instruction count, found `{count}`"),
            )
        })?;
        if count == 0 || count > Self::MAX_INSNS {
            return Err(err(
                first,
                format!("{count} instructions (1 to {} allowed)", Self::MAX_INSNS),
            ));
        }
        let mut insns = Vec::with_capacity(count);
        let mut last = first;
        for (line, text) in lines {
            last = line;
            if insns.len() == count {
                return Err(err(
                    line,
                    format!("more than the {count} instructions announced"),
                ));
            }
            let f: Vec<&str> = text.split_whitespace().collect();
            if f.len() != 4 {
                return Err(err(
                    line,
                    format!("expected `code jt jf k`, found `{text}`"),
                ));
            }
            let num = |s: &str, what: &str| {
                s.parse::<u64>()
                    .map_err(|_| err(line, format!("{what} `{s}` is not a decimal number")))
            };
            let (code, jt, jf, k) = (
                num(f[0], "code")?,
                num(f[1], "jt")?,
                num(f[2], "jf")?,
                num(f[3], "k")?,
            );
            let insn = BpfInsn {
                code: u16::try_from(code)
                    .map_err(|_| err(line, format!("code {code} exceeds 16 bits")))?,
                jt: u8::try_from(jt).map_err(|_| err(line, format!("jt {jt} exceeds 8 bits")))?,
                jf: u8::try_from(jf).map_err(|_| err(line, format!("jf {jf} exceeds 8 bits")))?,
                k: u32::try_from(k).map_err(|_| err(line, format!("k {k} exceeds 32 bits")))?,
            };
            insns.push(insn);
        }
        if insns.len() != count {
            return Err(err(
                last,
                format!("{} instructions, {count} announced", insns.len()),
            ));
        }
        BpfProgram::new(insns)
    }

    /// The instructions.
    pub fn insns(&self) -> &[BpfInsn] {
        &self.insns
    }

    /// A program that accepts nothing (`ret #0`).
    pub fn drop_all() -> BpfProgram {
        BpfProgram {
            insns: vec![BpfInsn {
                code: 0x06, // BPF_RET | BPF_K
                jt: 0,
                jf: 0,
                k: 0,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tcpdump -i lo -ddd 'tcp port 80'` (tcpdump 4.99.3 / libpcap 1.10.3).
    const TCP_PORT_80: &str = "20\n40 0 0 12\n21 0 6 34525\n48 0 0 20\n21 0 15 6\n40 0 0 54\n21 12 0 80\n\
        40 0 0 56\n21 10 11 80\n21 0 10 2048\n48 0 0 23\n21 0 8 6\n40 0 0 20\n69 6 0 8191\n177 0 0 14\n\
        72 0 0 14\n21 2 0 80\n72 0 0 16\n21 0 1 80\n6 0 0 262144\n6 0 0 0\n";

    #[test]
    fn parses_tcpdump_output() {
        let p = BpfProgram::parse_ddd(TCP_PORT_80).unwrap();
        assert_eq!(p.insns().len(), 20);
        assert_eq!(
            p.insns()[1],
            BpfInsn {
                code: 21,
                jt: 0,
                jf: 6,
                k: 34525
            }
        );
        assert_eq!(p.insns()[18].k, 262_144);
        assert_eq!(p.insns()[19].k, 0);
    }

    #[test]
    fn rejects_bad_programs_with_line_numbers() {
        let line = |t: &str| match BpfProgram::parse_ddd(t) {
            Err(AfPacketError::Filter { line, .. }) => line,
            other => panic!("{other:?}"),
        };
        assert_eq!(line(""), 1);
        assert_eq!(line("x\n"), 1);
        assert_eq!(line("0\n"), 1);
        assert_eq!(line("5000\n"), 1);
        assert_eq!(line("2\n6 0 0 0\n"), 2);
        assert_eq!(line("1\n6 0 0 0\n6 0 0 0\n"), 3);
        assert_eq!(line("1\n6 0 0\n"), 2);
        assert_eq!(line("1\n70000 0 0 0\n"), 2);
        assert_eq!(line("1\n6 256 0 0\n"), 2);
        assert_eq!(line("1\n6 0 0 4294967296\n"), 2);
        assert_eq!(line("1\n6 0 0 -1\n"), 2);
        assert!(BpfProgram::new(Vec::new()).is_err());
    }
}
