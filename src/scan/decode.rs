//! Turning a file's bytes into source text the way Python does (PEP 263), or saying why not.

use std::sync::LazyLock;

use regex::bytes::Regex;

/// Files larger than this are skipped (generated code, data in disguise).
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

static COOKIE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[ \t\x0c]*#.*?coding[:=][ \t]*([-\w.]+)").expect("static regex is valid")
});

/// Decode Python source bytes. `Err` holds the reason the file is skipped.
pub fn decode(bytes: &[u8]) -> Result<String, String> {
    if bytes.contains(&0) {
        return Err("binary file (contains NUL bytes)".to_string());
    }
    let (bom, body) = match bytes.strip_prefix(b"\xef\xbb\xbf") {
        Some(rest) => (true, rest),
        None => (false, bytes),
    };
    let cookie = coding_cookie(body);
    let encoding = match &cookie {
        Some(name) => normal_name(name),
        None => "utf-8".to_string(),
    };
    if bom && encoding != "utf-8" {
        return Err(format!(
            "UTF-8 byte-order mark conflicts with the coding declaration '{}'",
            cookie.unwrap_or_default()
        ));
    }
    match encoding.as_str() {
        "utf-8" => match std::str::from_utf8(body) {
            Ok(text) => Ok(text.to_string()),
            Err(e) => {
                let at = e.valid_up_to();
                let line = body[..at].iter().filter(|&&b| b == b'\n').count() + 1;
                let byte = body.get(at).copied().unwrap_or(0);
                Err(if cookie.is_some() {
                    format!(
                        "not valid UTF-8 (byte 0x{byte:02X} on line {line}) despite its coding declaration"
                    )
                } else {
                    format!(
                        "not valid UTF-8 (byte 0x{byte:02X} on line {line}) and no coding declaration (PEP 263)"
                    )
                })
            }
        },
        "iso-8859-1" => Ok(body.iter().map(|&b| char::from(b)).collect()),
        "ascii" => match body.iter().position(|b| !b.is_ascii()) {
            None => Ok(body.iter().map(|&b| char::from(b)).collect()),
            Some(at) => {
                let line = body[..at].iter().filter(|&&b| b == b'\n').count() + 1;
                Err(format!(
                    "not valid ASCII (byte 0x{:02X} on line {line}) despite its coding declaration",
                    body[at]
                ))
            }
        },
        "cp1252" => body
            .iter()
            .map(|&b| cp1252(b).ok_or(b))
            .collect::<Result<String, u8>>()
            .map_err(|b| format!("byte 0x{b:02X} is undefined in cp1252")),
        _ => Err(format!(
            "unsupported source encoding '{}' (supported: utf-8, latin-1, ascii, cp1252)",
            cookie.unwrap_or_default()
        )),
    }
}

/// Encode `text` the way `original` was encoded (BOM, PEP 263 cookie): the inverse of [`decode`]
/// for a rewrite of that file.
pub fn encode_like(original: &[u8], text: &str) -> Result<Vec<u8>, String> {
    let (bom, body) = match original.strip_prefix(b"\xef\xbb\xbf") {
        Some(rest) => (true, rest),
        None => (false, original),
    };
    let encoding = coding_cookie(body).map_or_else(|| "utf-8".to_string(), |n| normal_name(&n));
    let mut out = if bom {
        b"\xef\xbb\xbf".to_vec()
    } else {
        Vec::new()
    };
    let unencodable = |c: char| format!("'{c}' cannot be written in {encoding}");
    match encoding.as_str() {
        "iso-8859-1" | "ascii" | "cp1252" => {
            for c in text.chars() {
                if c.is_ascii() {
                    out.push(c as u8);
                    continue;
                }
                let byte = (0..=255u8).find(|&b| match encoding.as_str() {
                    "cp1252" => cp1252(b) == Some(c),
                    "ascii" => b.is_ascii() && char::from(b) == c,
                    _ => char::from(b) == c,
                });
                out.push(byte.ok_or_else(|| unencodable(c))?);
            }
        }
        _ => out.extend_from_slice(text.as_bytes()),
    }
    Ok(out)
}

/// The encoding named by a PEP 263 cookie on line 1, or on line 2 when line 1 is blank or a comment.
fn coding_cookie(body: &[u8]) -> Option<String> {
    let mut lines = body.split(|&b| b == b'\n');
    let first = lines.next()?;
    if let Some(name) = cookie_in(first) {
        return Some(name);
    }
    let trimmed: Vec<u8> = first
        .iter()
        .copied()
        .skip_while(|b| matches!(b, b' ' | b'\t' | b'\x0c' | b'\r'))
        .collect();
    if trimmed.is_empty() || trimmed[0] == b'#' {
        return lines.next().and_then(cookie_in);
    }
    None
}

fn cookie_in(line: &[u8]) -> Option<String> {
    let caps = COOKIE.captures(line)?;
    let name = caps.get(1)?;
    Some(String::from_utf8_lossy(name.as_bytes()).into_owned())
}

/// Python's `get_normal_name` plus the codec aliases we decode.
fn normal_name(name: &str) -> String {
    let n = name.to_ascii_lowercase().replace('_', "-");
    if n == "utf-8"
        || n.starts_with("utf-8-")
        || n == "utf8"
        || n == "u8"
        || n == "utf"
        || n == "cp65001"
    {
        return "utf-8".to_string();
    }
    let latin1 = ["latin-1", "iso-8859-1", "iso-latin-1"];
    if latin1
        .iter()
        .any(|p| n == *p || n.starts_with(&format!("{p}-")))
        || [
            "latin1",
            "l1",
            "iso8859-1",
            "8859",
            "cp819",
            "latin",
            "iso-ir-100",
        ]
        .contains(&n.as_str())
    {
        return "iso-8859-1".to_string();
    }
    if ["ascii", "us-ascii", "646", "us"].contains(&n.as_str()) {
        return "ascii".to_string();
    }
    if ["cp1252", "windows-1252", "1252"].contains(&n.as_str()) {
        return "cp1252".to_string();
    }
    n
}

fn cp1252(b: u8) -> Option<char> {
    const HIGH: [u32; 32] = [
        0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
        0x0152, 0, 0x017D, 0, 0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC,
        0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
    ];
    match b {
        0x80..=0x9F => match HIGH[usize::from(b - 0x80)] {
            0 => None,
            c => char::from_u32(c),
        },
        _ => Some(char::from(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_default_and_bom() {
        assert_eq!(decode(b"x = 1\n").unwrap(), "x = 1\n");
        assert_eq!(
            decode(b"\xef\xbb\xbfx = '\xc3\xa9'\n").unwrap(),
            "x = '\u{e9}'\n"
        );
    }

    #[test]
    fn latin1_cookie_on_line_one_or_two() {
        assert_eq!(
            decode(b"# -*- coding: latin-1 -*-\nx = '\xe9'\n").unwrap(),
            "# -*- coding: latin-1 -*-\nx = '\u{e9}'\n"
        );
        let two = b"#!/usr/bin/env python\n# vim: set fileencoding=iso-8859-1 :\nx = '\xe9'\n";
        assert!(decode(two).unwrap().ends_with("x = '\u{e9}'\n"));
        // A cookie on line two does not count after a code line.
        assert!(decode(b"x = 1\n# coding: latin-1\ny = '\xe9'\n").is_err());
    }

    #[test]
    fn rejects_what_python_rejects() {
        assert!(
            decode(b"x = '\xe9'\n")
                .unwrap_err()
                .contains("not valid UTF-8")
        );
        assert!(decode(b"\x00\x01\x02").unwrap_err().contains("binary"));
        assert!(
            decode(b"# coding: klingon\nx = 1\n")
                .unwrap_err()
                .contains("unsupported source encoding 'klingon'")
        );
        assert!(
            decode(b"\xef\xbb\xbf# coding: latin-1\n")
                .unwrap_err()
                .contains("byte-order mark")
        );
        assert!(decode(b"# coding: ascii\nx = '\xe9'\n").is_err());
    }

    #[test]
    fn cp1252_maps_the_high_block() {
        assert_eq!(
            decode(b"# coding: cp1252\nx = '\x80'\n").unwrap(),
            "# coding: cp1252\nx = '\u{20ac}'\n"
        );
    }
}
