//! Registry values as typed data.

use std::fmt;

use super::name::decode_utf16le;

pub const REG_SZ: u32 = 1;
pub const REG_EXPAND_SZ: u32 = 2;
pub const REG_BINARY: u32 = 3;
pub const REG_DWORD: u32 = 4;
pub const REG_MULTI_SZ: u32 = 7;
pub const REG_QWORD: u32 = 11;

/// The data of one registry value, decoded by its type.
///
/// Strings are UTF-16LE on disk; decoding stops at the first NUL and tolerates a missing
/// terminator or an odd byte count. A `REG_DWORD`/`REG_QWORD` whose data is not exactly 4/8
/// bytes long is kept as [`Value::Other`] with its type, so no value is silently reinterpreted.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum Value {
    Sz(String),
    ExpandSz(String),
    MultiSz(Vec<String>),
    Dword(u32),
    Qword(u64),
    Binary(Vec<u8>),
    Other { value_type: u32, data: Vec<u8> },
}

impl Value {
    /// Decode raw value data of registry type `value_type`.
    pub fn decode(value_type: u32, data: Vec<u8>) -> Value {
        match value_type {
            REG_SZ => Value::Sz(utf16_until_nul(&data)),
            REG_EXPAND_SZ => Value::ExpandSz(utf16_until_nul(&data)),
            REG_MULTI_SZ => Value::MultiSz(multi_sz(&data)),
            REG_BINARY => Value::Binary(data),
            REG_DWORD if data.len() == 4 => {
                Value::Dword(u32::from_le_bytes([data[0], data[1], data[2], data[3]]))
            }
            REG_QWORD if data.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&data);
                Value::Qword(u64::from_le_bytes(b))
            }
            _ => Value::Other { value_type, data },
        }
    }

    /// The number held by a `REG_DWORD` or `REG_QWORD`.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Dword(v) => Some(u64::from(*v)),
            Value::Qword(v) => Some(*v),
            _ => None,
        }
    }

    /// The text of a `REG_SZ` or `REG_EXPAND_SZ` (unexpanded).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Sz(s) | Value::ExpandSz(s) => Some(s),
            _ => None,
        }
    }

    /// The registry type number of this value.
    pub fn value_type(&self) -> u32 {
        match self {
            Value::Sz(_) => REG_SZ,
            Value::ExpandSz(_) => REG_EXPAND_SZ,
            Value::MultiSz(_) => REG_MULTI_SZ,
            Value::Dword(_) => REG_DWORD,
            Value::Qword(_) => REG_QWORD,
            Value::Binary(_) => REG_BINARY,
            Value::Other { value_type, .. } => *value_type,
        }
    }
}

fn utf16_until_nul(data: &[u8]) -> String {
    let end = data
        .chunks_exact(2)
        .position(|pair| pair == [0, 0])
        .map_or(data.len(), |units| units * 2);
    decode_utf16le(&data[..end])
}

fn multi_sz(data: &[u8]) -> Vec<String> {
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    let mut strings = Vec::new();
    for part in units.split(|&u| u == 0) {
        if part.is_empty() {
            // An empty string ends the list (the double NUL terminator).
            break;
        }
        strings.push(
            char::decode_utf16(part.iter().copied())
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect(),
        );
    }
    strings
}

/// How a value is written in evidence lines: `REG_SZ "text"`, `REG_DWORD 0x3 (3)`, …
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Sz(s) => write!(f, "REG_SZ {s:?}"),
            Value::ExpandSz(s) => write!(f, "REG_EXPAND_SZ {s:?}"),
            Value::MultiSz(list) => write!(f, "REG_MULTI_SZ {list:?}"),
            Value::Dword(v) => write!(f, "REG_DWORD {v:#x} ({v})"),
            Value::Qword(v) => write!(f, "REG_QWORD {v:#x} ({v})"),
            Value::Binary(data) => write!(f, "REG_BINARY {}", hex_preview(data)),
            Value::Other { value_type, data } => {
                write!(f, "type {value_type:#x} {}", hex_preview(data))
            }
        }
    }
}

fn hex_preview(data: &[u8]) -> String {
    const SHOWN: usize = 32;
    let mut s: String = data
        .iter()
        .take(SHOWN)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    if data.len() > SHOWN {
        s.push_str(&format!(" … ({} bytes)", data.len()));
    }
    if data.is_empty() {
        s.push_str("(empty)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn strings_tolerate_bad_terminators() {
        assert_eq!(
            Value::decode(REG_SZ, utf16("abc\0junk")),
            Value::Sz("abc".into())
        );
        let mut odd = utf16("abc");
        odd.push(0x41);
        assert_eq!(Value::decode(REG_SZ, odd), Value::Sz("abc".into()));
        assert_eq!(
            Value::decode(REG_MULTI_SZ, utf16("a\0bc\0\0")),
            Value::MultiSz(vec!["a".into(), "bc".into()])
        );
        assert_eq!(
            Value::decode(REG_MULTI_SZ, utf16("a\0bc")),
            Value::MultiSz(vec!["a".into(), "bc".into()])
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(Value::decode(REG_DWORD, vec![1, 0, 0, 0]).as_u64(), Some(1));
        assert_eq!(
            Value::decode(REG_DWORD, vec![1, 0]),
            Value::Other {
                value_type: REG_DWORD,
                data: vec![1, 0]
            }
        );
        assert_eq!(
            Value::decode(REG_QWORD, 5u64.to_le_bytes().to_vec()).to_string(),
            "REG_QWORD 0x5 (5)"
        );
    }
}
