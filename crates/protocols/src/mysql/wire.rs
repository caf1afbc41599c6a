//! MySQL wire codes and small field readers. Every reader is total: it returns `None` on short input.

/// A command byte (`COM_*`), open: unknown values keep their raw byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Command(pub u8);

impl Command {
    /// `COM_SLEEP`.
    pub const SLEEP: Command = Command(0x00);
    /// `COM_QUIT` (one-way).
    pub const QUIT: Command = Command(0x01);
    /// `COM_INIT_DB`.
    pub const INIT_DB: Command = Command(0x02);
    /// `COM_QUERY`.
    pub const QUERY: Command = Command(0x03);
    /// `COM_FIELD_LIST`.
    pub const FIELD_LIST: Command = Command(0x04);
    /// `COM_STATISTICS`.
    pub const STATISTICS: Command = Command(0x09);
    /// `COM_PROCESS_INFO`.
    pub const PROCESS_INFO: Command = Command(0x0a);
    /// `COM_PING`.
    pub const PING: Command = Command(0x0e);
    /// `COM_CHANGE_USER`.
    pub const CHANGE_USER: Command = Command(0x11);
    /// `COM_STMT_PREPARE`.
    pub const STMT_PREPARE: Command = Command(0x16);
    /// `COM_STMT_EXECUTE`.
    pub const STMT_EXECUTE: Command = Command(0x17);
    /// `COM_STMT_SEND_LONG_DATA` (one-way).
    pub const STMT_SEND_LONG_DATA: Command = Command(0x18);
    /// `COM_STMT_CLOSE` (one-way).
    pub const STMT_CLOSE: Command = Command(0x19);
    /// `COM_STMT_RESET`.
    pub const STMT_RESET: Command = Command(0x1a);
    /// `COM_STMT_FETCH`.
    pub const STMT_FETCH: Command = Command(0x1c);
    /// `COM_STMT_BULK_EXECUTE` (MariaDB).
    pub const STMT_BULK_EXECUTE: Command = Command(0xfa);

    /// The command's name, `None` for bytes that are no command.
    pub const fn as_str(self) -> Option<&'static str> {
        Some(match self.0 {
            0x00 => "COM_SLEEP",
            0x01 => "COM_QUIT",
            0x02 => "COM_INIT_DB",
            0x03 => "COM_QUERY",
            0x04 => "COM_FIELD_LIST",
            0x05 => "COM_CREATE_DB",
            0x06 => "COM_DROP_DB",
            0x07 => "COM_REFRESH",
            0x08 => "COM_SHUTDOWN",
            0x09 => "COM_STATISTICS",
            0x0a => "COM_PROCESS_INFO",
            0x0b => "COM_CONNECT",
            0x0c => "COM_PROCESS_KILL",
            0x0d => "COM_DEBUG",
            0x0e => "COM_PING",
            0x0f => "COM_TIME",
            0x10 => "COM_DELAYED_INSERT",
            0x11 => "COM_CHANGE_USER",
            0x12 => "COM_BINLOG_DUMP",
            0x13 => "COM_TABLE_DUMP",
            0x14 => "COM_CONNECT_OUT",
            0x15 => "COM_REGISTER_SLAVE",
            0x16 => "COM_STMT_PREPARE",
            0x17 => "COM_STMT_EXECUTE",
            0x18 => "COM_STMT_SEND_LONG_DATA",
            0x19 => "COM_STMT_CLOSE",
            0x1a => "COM_STMT_RESET",
            0x1b => "COM_SET_OPTION",
            0x1c => "COM_STMT_FETCH",
            0x1d => "COM_DAEMON",
            0x1e => "COM_BINLOG_DUMP_GTID",
            0x1f => "COM_RESET_CONNECTION",
            0xfa => "COM_STMT_BULK_EXECUTE",
            _ => return None,
        })
    }

    /// True for commands the server never answers.
    pub const fn is_one_way(self) -> bool {
        matches!(self.0, 0x01 | 0x18 | 0x19)
    }

    /// True for commands whose payload after the command byte is SQL text.
    pub const fn carries_sql(self) -> bool {
        matches!(self.0, 0x03 | 0x16)
    }
}

/// Capability flags (`CLIENT_*`) used by the parser.
pub mod caps {
    /// `CLIENT_CONNECT_WITH_DB`.
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    /// `CLIENT_COMPRESS`.
    pub const COMPRESS: u32 = 1 << 5;
    /// `CLIENT_PROTOCOL_41`.
    pub const PROTOCOL_41: u32 = 1 << 9;
    /// `CLIENT_SSL`.
    pub const SSL: u32 = 1 << 11;
    /// `CLIENT_SECURE_CONNECTION`.
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    /// `CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA`.
    pub const PLUGIN_AUTH_LENENC: u32 = 1 << 21;
    /// `CLIENT_DEPRECATE_EOF`.
    pub const DEPRECATE_EOF: u32 = 1 << 24;
    /// `CLIENT_QUERY_ATTRIBUTES` (MySQL 8).
    pub const QUERY_ATTRIBUTES: u32 = 1 << 27;
    /// MariaDB extended capability `MARIADB_CLIENT_CACHE_METADATA` (bit 4 of the extended word).
    pub const MARIADB_CACHE_METADATA: u32 = 1 << 4;
}

/// Server status flags used by the parser.
pub mod status {
    /// `SERVER_STATUS_CURSOR_EXISTS`.
    pub const CURSOR_EXISTS: u16 = 0x0040;
    /// `SERVER_MORE_RESULTS_EXISTS`.
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
}

/// Little-endian u16 at `i`.
pub fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// Little-endian u32 at `i`.
pub fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    let s = b.get(i..i.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Length-encoded integer at `i`: `(value, bytes used)`.
pub fn lenenc(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let first = *b.get(i)?;
    let n = match first {
        0..=0xfa => return Some((first as u64, 1)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None, // 0xfb NULL, 0xff error marker
    };
    let s = b.get(i + 1..i + 1 + n)?;
    let mut v = 0u64;
    for (k, byte) in s.iter().enumerate() {
        v |= (*byte as u64) << (8 * k);
    }
    Some((v, 1 + n))
}

/// NUL-terminated bytes starting at `i`: `(bytes, index after the NUL)`.
pub fn cstr(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(i..)?;
    let n = rest.iter().position(|&c| c == 0)?;
    Some((&rest[..n], i + n + 1))
}

/// An OK packet's `(affected rows, status flags)` (`header` is 0x00 or 0xfe, already at `b[0]`).
pub fn ok_packet(b: &[u8]) -> Option<(u64, u16)> {
    let (affected, n1) = lenenc(b, 1)?;
    let (_, n2) = lenenc(b, 1 + n1)?;
    let status = u16_at(b, 1 + n1 + n2).unwrap_or(0);
    Some((affected, status))
}

/// An EOF packet's status flags (`fe, warnings u16, status u16`).
pub fn eof_status(b: &[u8]) -> u16 {
    u16_at(b, 3).unwrap_or(0)
}

/// An ERR packet's `(code, message)` (skipping the `#SQLSTATE` marker when present).
pub fn err_packet(b: &[u8]) -> Option<(u16, &[u8])> {
    let code = u16_at(b, 1)?;
    let rest = b.get(3..).unwrap_or(&[]);
    let msg = match rest.first() {
        Some(b'#') if rest.len() >= 6 => &rest[6..],
        _ => rest,
    };
    Some((code, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_forms() {
        assert_eq!(lenenc(&[0x05], 0), Some((5, 1)));
        assert_eq!(lenenc(&[0xfc, 0x01, 0x02], 0), Some((0x0201, 3)));
        assert_eq!(lenenc(&[0xfd, 1, 0, 0], 0), Some((1, 4)));
        assert_eq!(lenenc(&[0xfe, 1, 0, 0, 0, 0, 0, 0, 0], 0), Some((1, 9)));
        assert_eq!(lenenc(&[0xfe, 1], 0), None);
        assert_eq!(lenenc(&[0xfb], 0), None);
        assert_eq!(lenenc(&[], 0), None);
    }

    #[test]
    fn err_packet_with_sqlstate() {
        let p = b"\xff\x7a\x04#42S02Table 'shop.x' doesn't exist";
        let (code, msg) = err_packet(p).unwrap();
        assert_eq!(code, 1146);
        assert_eq!(msg, b"Table 'shop.x' doesn't exist");
    }
}
