//! A plan's bytes as text, as CPython reads a source file (PEP 263): UTF-8 unless a coding
//! declaration on its first two lines says otherwise.

/// Why the bytes are not text, in CPython's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodingError {
    /// 1-based line of the fault.
    pub line: usize,
    /// CPython's message.
    pub message: String,
}

/// Decodes `bytes`, named `name` in messages.
pub fn decode(name: &str, bytes: &[u8]) -> Result<String, CodingError> {
    let (bom, body) = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => (true, rest),
        None => (false, bytes),
    };
    let declared = declaration(body);
    let encoding = declared.as_deref().map(normal_name);
    if let Some(encoding) = encoding.as_deref().filter(|e| bom && *e != "utf-8") {
        return Err(CodingError {
            line: 1,
            message: format!("encoding problem: {encoding} with BOM"),
        });
    }
    match encoding.as_deref() {
        None | Some("utf-8") => std::str::from_utf8(body).map(str::to_owned).map_err(|e| {
            let at = e.valid_up_to();
            let line = 1 + body[..at].iter().filter(|&&b| b == b'\n').count();
            let message = match declared {
                None => format!(
                    "Non-UTF-8 code starting with '\\x{:02x}' in file {name} on line {line}, but no encoding declared; see https://peps.python.org/pep-0263/ for details",
                    body[at]
                ),
                Some(_) => format!(
                    "(unicode error) 'utf-8' codec can't decode byte 0x{:02x} in position {at}",
                    body[at]
                ),
            };
            CodingError { line, message }
        }),
        // Each byte is the code point of the same number.
        Some("iso-8859-1") => Ok(body.iter().map(|&b| char::from(b)).collect()),
        Some("ascii") => match body.iter().position(|b| !b.is_ascii()) {
            None => Ok(String::from_utf8_lossy(body).into_owned()),
            Some(at) => Err(CodingError {
                line: 1 + body[..at].iter().filter(|&&b| b == b'\n').count(),
                message: format!(
                    "'ascii' codec can't decode byte 0x{:02x} in position {at}: ordinal not in range(128)",
                    body[at]
                ),
            }),
        },
        Some(other) => {
            let unknown = || CodingError {
                line: 1,
                message: format!("unknown encoding: {}", declared.as_deref().unwrap_or(other)),
            };
            // Source must be ASCII-compatible: CPython refuses UTF-16 and kin there too.
            let encoding = encoding_rs::Encoding::for_label(other.as_bytes())
                .filter(|e| e.is_ascii_compatible() && *e != encoding_rs::REPLACEMENT)
                .ok_or_else(unknown)?;
            encoding
                .decode_without_bom_handling_and_without_replacement(body)
                .map(|text| text.into_owned())
                .ok_or_else(|| CodingError {
                    line: 1,
                    message: format!("(unicode error) '{other}' codec can't decode the source"),
                })
        }
    }
}

/// The encoding a coding declaration names: on the first line, or on the second when the
/// first holds only a comment or nothing.
fn declaration(body: &[u8]) -> Option<String> {
    let mut lines = body.split(|&b| b == b'\n');
    let first = lines.next()?;
    if let Some(name) = cookie(first) {
        return Some(name);
    }
    let blank_or_comment = matches!(
        first
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\x0c' | b'\r')),
        None | Some(b'#')
    );
    lines.next().filter(|_| blank_or_comment).and_then(cookie)
}

/// `^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)`, as PEP 263 gives it.
fn cookie(line: &[u8]) -> Option<String> {
    let start = line
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\x0c'))?;
    let comment = line[start..].strip_prefix(b"#")?;
    let at = comment
        .windows(7)
        .position(|w| w.starts_with(b"coding") && matches!(w[6], b':' | b'='))?;
    let rest = &comment[at + 7..];
    let rest = &rest[rest
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count()..];
    let name: Vec<u8> = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        .copied()
        .collect();
    (!name.is_empty()).then(|| String::from_utf8_lossy(&name).into_owned())
}

/// CPython's shorthand for the names it knows best (`get_normal_name`); others lower-cased.
fn normal_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase().replace('_', "-");
    let is = |base: &str| lower == base || lower.starts_with(&format!("{base}-"));
    let known = if is("utf-8") || lower == "utf8" {
        "utf-8"
    } else if is("latin-1") || is("iso-8859-1") || is("iso-latin-1") || lower == "latin1" {
        "iso-8859-1"
    } else if matches!(lower.as_str(), "ascii" | "us-ascii" | "646") {
        "ascii"
    } else {
        return lower;
    };
    known.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin_1_is_read_as_declared() {
        let text = decode("p.py", b"# -*- coding: latin-1 -*-\nx = '\xe9'\n").unwrap();
        assert!(text.ends_with("x = '\u{e9}'\n"), "{text}");
    }

    #[test]
    fn the_second_line_counts_only_behind_a_comment() {
        assert!(decode(
            "p.py",
            b"#!/usr/bin/python\n# vim: set fileencoding=latin-1 :\ny='\xe9'\n"
        )
        .is_ok());
        let err = decode("p.py", b"x = 1\n# coding: latin-1\ny='\xe9'\n").unwrap_err();
        assert_eq!(err.line, 3);
    }

    #[test]
    fn undeclared_bytes_are_refused_in_cpythons_words() {
        let err = decode("p.py", b"x = 1\ny = '\xe9'\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(err.message, "Non-UTF-8 code starting with '\\xe9' in file p.py on line 2, but no encoding declared; see https://peps.python.org/pep-0263/ for details");
    }

    #[test]
    fn unknown_encodings_and_a_bom_that_disagrees_are_refused() {
        let err = decode("p.py", b"# coding: foo\nx = 1\n").unwrap_err();
        assert_eq!(err.message, "unknown encoding: foo");
        let err = decode("p.py", b"\xEF\xBB\xBF# coding: latin-1\nx = 1\n").unwrap_err();
        assert_eq!(err.message, "encoding problem: iso-8859-1 with BOM");
        let err = decode("p.py", b"# coding: ascii\nx = '\xe9'\n").unwrap_err();
        assert!(
            err.message
                .starts_with("'ascii' codec can't decode byte 0xe9"),
            "{}",
            err.message
        );
    }

    #[test]
    fn other_declared_encodings_decode() {
        let text = decode("p.py", b"# coding: cp1251\nx = '\xc4'\n").unwrap();
        assert!(text.contains('\u{414}'), "{text}");
    }
}
