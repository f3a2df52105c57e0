//! The nodes known on a broker, kept across processes: a new process expects them from its
//! first broadcast instead of meeting them anew (first contact). Nodes heard without
//! presence, with how long they took; and nodes online by presence, for a broker that does
//! not give a new connection their retained statuses (RabbitMQ, on a wildcard subscription).
//!
//! One small JSON file per broker, in `FEDREQ_STATE_DIR`, else `$XDG_STATE_HOME/fedreq`,
//! else `~/.local/state/fedreq`. A node not heard for [`MAX_AGE`] is dropped; a file not
//! written for that long counts as none. A file that cannot be read is ignored (and
//! rewritten): it only saves time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fedreq_protocol::NodeId;
use serde::{Deserialize, Serialize};

/// How long a node heard is remembered without being heard again.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// What the file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    /// When it was written, in ms since the Unix epoch.
    written_unix_ms: u64,
    /// Each node: how long it took to answer, and when it was last heard.
    nodes: BTreeMap<NodeId, Known>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Known {
    took_ms: f64,
    heard_unix_ms: u64,
}

/// The file of nodes known on one broker.
#[derive(Clone, Debug)]
pub struct KnownNodes {
    path: PathBuf,
}

impl KnownNodes {
    /// The file for the broker at `host:port`, in the state folder; `None` without one.
    pub fn for_broker(host: &str, port: u16) -> Option<Self> {
        let dir = state_dir()?;
        let host: String = host
            .chars()
            .map(
                |c| match c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    true => c,
                    false => '_',
                },
            )
            .collect();
        Some(KnownNodes {
            path: dir.join(format!("known-{host}-{port}.json")),
        })
    }

    /// The file at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        KnownNodes { path: path.into() }
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The nodes heard within [`MAX_AGE`], with how long each took; `None` when no recent
    /// file says what was heard (the next broadcast is first contact).
    pub fn load(&self) -> Option<Vec<(NodeId, Duration)>> {
        let text = std::fs::read(&self.path).ok()?;
        let file: File = serde_json::from_slice(&text).ok()?;
        let now = unix_ms();
        let recent = |at: u64| now.saturating_sub(at) < MAX_AGE.as_millis() as u64;
        if !recent(file.written_unix_ms) {
            return None;
        }
        let nodes = file
            .nodes
            .into_iter()
            .filter(|(_, known)| recent(known.heard_unix_ms) && known.took_ms.is_finite())
            .map(|(node, known)| {
                let took = Duration::from_secs_f64(known.took_ms.max(0.0) / 1000.0);
                (node, took)
            })
            .collect();
        Some(nodes)
    }

    /// Writes what this process knows: `heard` replaces the nodes of the file (a node it
    /// forgot missed a broadcast). Written whole to a temporary file, then renamed, so a
    /// reader never sees half of it.
    pub fn save(&self, heard: &BTreeMap<NodeId, Duration>) -> std::io::Result<()> {
        let now = unix_ms();
        let file = File {
            written_unix_ms: now,
            nodes: heard
                .iter()
                .map(|(node, took)| {
                    let known = Known {
                        took_ms: took.as_secs_f64() * 1000.0,
                        heard_unix_ms: now,
                    };
                    (node.clone(), known)
                })
                .collect(),
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temporary = self
            .path
            .with_extension(format!("{}.tmp", std::process::id()));
        std::fs::write(&temporary, serde_json::to_vec_pretty(&file)?)?;
        std::fs::rename(&temporary, &self.path)
    }
}

/// `FEDREQ_STATE_DIR`, else `$XDG_STATE_HOME/fedreq`, else `~/.local/state/fedreq`.
fn state_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("FEDREQ_STATE_DIR") {
        return Some(dir.into());
    }
    if let Some(dir) = var("XDG_STATE_HOME") {
        return Some(PathBuf::from(dir).join("fedreq"));
    }
    var("HOME").map(|home| PathBuf::from(home).join(".local/state/fedreq"))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_one_process_heard_the_next_one_knows() {
        let dir = std::env::temp_dir().join(format!("fedreq-known-{}", std::process::id()));
        let known = KnownNodes::at(dir.join("known.json"));
        assert_eq!(known.load(), None, "no file: nothing known");
        let heard = BTreeMap::from([("v44-1".to_owned(), Duration::from_micros(1_500))]);
        known.save(&heard).unwrap();
        assert_eq!(
            known.load(),
            Some(vec![("v44-1".to_owned(), Duration::from_micros(1_500))])
        );
        known.save(&BTreeMap::new()).unwrap();
        assert_eq!(known.load(), Some(vec![]), "known to have no silent node");
        std::fs::write(known.path(), b"{not json").unwrap();
        assert_eq!(known.load(), None, "unreadable: ignored");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn nodes_not_heard_for_a_week_are_forgotten() {
        let dir = std::env::temp_dir().join(format!("fedreq-aged-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let known = KnownNodes::at(dir.join("known.json"));
        let old = unix_ms() - MAX_AGE.as_millis() as u64 - 1;
        let text = serde_json::json!({"written_unix_ms": unix_ms(), "nodes": {
            "old": {"took_ms": 1.0, "heard_unix_ms": old},
            "new": {"took_ms": 2.0, "heard_unix_ms": unix_ms()}}});
        std::fs::write(known.path(), text.to_string()).unwrap();
        assert_eq!(
            known.load(),
            Some(vec![("new".to_owned(), Duration::from_millis(2))])
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
