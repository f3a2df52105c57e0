//! CPython's verdicts on Python files, for the plan check to be compared with.

use std::path::PathBuf;
use std::process::Command;

use fedreq::plan::Python;

/// The machine's CPython's verdict on each file (`None` when `compile` takes it, else the
/// error's line) and its version; `None` without a python3 3.10 or 3.11.
pub fn verdicts(files: &[PathBuf]) -> Option<(Python, Vec<Option<usize>>)> {
    let script = r#"
import sys
print(f"{sys.version_info[0]}.{sys.version_info[1]}")
for path in sys.stdin.read().splitlines():
    try:
        compile(open(path, "rb").read(), path, "exec")
        print("ok")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        print(getattr(e, "lineno", None) or 1)
"#;
    let list: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, list.as_bytes()));
    let out = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut lines = text.lines();
    let version = lines.next()?.parse().ok()?;
    Some((version, lines.map(|l| l.parse().ok()).collect()))
}
