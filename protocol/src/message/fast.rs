//! The fast path's byte scanner: which command a payload names, read without parsing it.

/// The value of the first `"command"` key, when it is a plain string: a hint of the message's
/// type for the fast path, which checks it again.
#[inline]
pub(super) fn command_hint(bytes: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"command\"";
    let at = bytes.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &bytes[at..];
    let rest = rest
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start()
        .strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    (rest[end] == b'"')
        .then(|| std::str::from_utf8(&rest[..end]).ok())
        .flatten()
}
