//! Key and value names: decoding from the two on-disk encodings and comparing them the way the
//! registry does (without regard to letter case).
//!
//! Comparison upper-cases each character with Rust's Unicode `char::to_uppercase` and compares
//! the results. Windows uses its own upcase table, which agrees with Unicode for every letter a
//! Windows installation uses in key names (ASCII and the common Latin, Greek and Cyrillic
//! letters); a name that only differs in a character whose upper case differs between the two
//! tables would not be found, which is acceptable for the keys this tool looks up.

/// Decode a name stored as extended ASCII (Latin-1: each byte is the code point) or UTF-16LE.
/// An odd trailing byte of a UTF-16 name is dropped; unpaired surrogates become U+FFFD.
pub fn decode_name(bytes: &[u8], compressed: bool) -> String {
    if compressed {
        bytes.iter().map(|&b| char::from(b)).collect()
    } else {
        decode_utf16le(bytes)
    }
}

/// Decode UTF-16LE bytes without interpreting NULs (names may not contain them anyway).
pub fn decode_utf16le(bytes: &[u8]) -> String {
    let units = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]));
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Whether two names are equal without regard to letter case.
pub fn names_equal(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_uppercase)
        .eq(b.chars().flat_map(char::to_uppercase))
}

/// The name hash stored in `lh` subkey list elements: `h = 37 * h + c` over the UTF-16 code units
/// of the upper-cased name.
pub fn lh_hash(name: &str) -> u32 {
    let upper: String = name.chars().flat_map(char::to_uppercase).collect();
    upper
        .encode_utf16()
        .fold(0u32, |h, c| h.wrapping_mul(37).wrapping_add(u32::from(c)))
}

/// Whether the name hint of an `lf` element (the first four characters of the key's name as
/// extended ASCII, NUL-padded; first byte NUL when not representable) allows `name` to match.
/// Returns true whenever the hint cannot rule the name out.
pub fn lf_hint_may_match(hint: [u8; 4], name: &str) -> bool {
    if hint[0] == 0 {
        return true;
    }
    let mut chars = name.chars();
    for &h in &hint {
        match chars.next() {
            None => return h == 0,
            Some(c) => {
                if h == 0 {
                    return false;
                }
                if !c.is_ascii() || !h.is_ascii() {
                    // Non-ASCII letters: leave the decision to the full comparison.
                    return true;
                }
                if !h.eq_ignore_ascii_case(&(c as u8)) {
                    return false;
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive() {
        assert!(names_equal("ControlSet001", "CONTROLSET001"));
        assert!(names_equal("grüße", "GRÜSSE"));
        assert!(names_equal("Ключ", "КЛЮЧ"));
        assert!(!names_equal("viostor", "vioscsi"));
    }

    #[test]
    fn hashes_and_hints() {
        // h("AB") = 37 * 'A' + 'B'
        assert_eq!(lh_hash("ab"), 37 * 65 + 66);
        assert!(lf_hint_may_match(*b"Serv", "services"));
        assert!(!lf_hint_may_match(*b"Serv", "Select"));
        assert!(lf_hint_may_match(*b"ab\0\0", "AB"));
        assert!(!lf_hint_may_match(*b"ab\0\0", "abc"));
        assert!(!lf_hint_may_match(*b"abc\0", "ab"));
        assert!(lf_hint_may_match([0, 0, 0, 0], "anything"));
    }

    #[test]
    fn odd_utf16() {
        assert_eq!(decode_utf16le(&[b'a', 0, b'b']), "a");
        assert_eq!(decode_name(&[0xE9], true), "é");
    }
}
