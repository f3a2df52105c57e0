//! The messaging protocol version, judged as Fed-BioMed judges it.

use std::fmt;

/// The version fedreq speaks, as it travels in every message.
pub const PROTOCOL_VERSION: &str = "1";

/// A `major.minor.micro` protocol version; missing parts are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion {
    /// Incompatible changes.
    pub major: u64,
    /// Compatible additions.
    pub minor: u64,
    /// Fixes.
    pub micro: u64,
}

/// What an incoming version means for us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compatibility {
    /// The same version as ours.
    Same,
    /// Same major, older minor or micro: accepted, with a warning.
    Older(ProtocolVersion),
}

/// Why an incoming version is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The text is not a version number.
    #[error("`{theirs}` is not a version number (ours is {ours})")]
    Invalid {
        /// The version text received.
        theirs: String,
        /// Ours.
        ours: ProtocolVersion,
    },
    /// No `protocol_version` field: a message from before versioned messaging.
    #[error("missing: the sender predates versioned messaging (ours is {ours})")]
    Missing {
        /// Ours.
        ours: ProtocolVersion,
    },
    /// Another major version, or a newer minor or micro one.
    #[error("version {theirs} is incompatible with ours, {ours}")]
    Incompatible {
        /// The version received.
        theirs: ProtocolVersion,
        /// Ours.
        ours: ProtocolVersion,
    },
}

impl ProtocolVersion {
    /// Version 0: what a message without `protocol_version` speaks.
    pub const ZERO: ProtocolVersion = ProtocolVersion::new(0, 0, 0);
    /// fedreq's version, `PROTOCOL_VERSION` parsed.
    pub const OURS: ProtocolVersion = ProtocolVersion::new(1, 0, 0);

    /// A version from its parts.
    pub const fn new(major: u64, minor: u64, micro: u64) -> Self {
        ProtocolVersion {
            major,
            minor,
            micro,
        }
    }

    /// Parses `N`, `N.N` or `N.N.N`.
    pub fn parse(text: &str) -> Option<ProtocolVersion> {
        let mut parts = [0u64; 3];
        for (i, part) in text.split('.').enumerate() {
            let slot = parts.get_mut(i)?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = part.parse().ok()?;
        }
        Some(ProtocolVersion::new(parts[0], parts[1], parts[2]))
    }

    /// Judges `theirs` (the field's text, `None` when missing) against `self`:
    /// another major, or a newer minor or micro, is refused; an older one is accepted.
    pub fn judge(self, theirs: Option<&str>) -> Result<Compatibility, VersionError> {
        let theirs = match theirs {
            None => return Err(VersionError::Missing { ours: self }),
            Some(text) => ProtocolVersion::parse(text).ok_or_else(|| VersionError::Invalid {
                theirs: text.to_owned(),
                ours: self,
            })?,
        };
        if theirs == self {
            Ok(Compatibility::Same)
        } else if theirs.major != self.major || theirs > self {
            Err(VersionError::Incompatible { theirs, ours: self })
        } else {
            Ok(Compatibility::Older(theirs))
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: ProtocolVersion = ProtocolVersion::OURS;

    #[test]
    fn ours_parses_from_the_wire_text() {
        assert_eq!(ProtocolVersion::parse(PROTOCOL_VERSION), Some(OURS));
    }

    #[test]
    fn same_version_in_any_spelling_is_accepted() {
        for text in ["1", "1.0", "1.0.0"] {
            assert_eq!(OURS.judge(Some(text)), Ok(Compatibility::Same), "{text}");
        }
    }

    #[test]
    fn other_major_newer_minor_or_missing_is_refused() {
        for (text, theirs) in [
            ("0", ProtocolVersion::ZERO),
            ("2", ProtocolVersion::new(2, 0, 0)),
            ("1.9", ProtocolVersion::new(1, 9, 0)),
            ("1.0.1", ProtocolVersion::new(1, 0, 1)),
        ] {
            assert_eq!(
                OURS.judge(Some(text)),
                Err(VersionError::Incompatible { theirs, ours: OURS }),
                "{text:?}"
            );
        }
        let missing = OURS.judge(None).unwrap_err();
        assert_eq!(missing, VersionError::Missing { ours: OURS });
        assert!(missing.to_string().starts_with("missing"), "{missing}");
    }

    #[test]
    fn older_minor_of_same_major_is_accepted_as_older() {
        let ours = ProtocolVersion::new(1, 2, 0);
        assert_eq!(
            ours.judge(Some("1.1")),
            Ok(Compatibility::Older(ProtocolVersion::new(1, 1, 0)))
        );
        assert_eq!(
            ours.judge(Some("1.1.9")),
            Ok(Compatibility::Older(ProtocolVersion::new(1, 1, 9)))
        );
    }

    #[test]
    fn garbage_is_invalid_and_names_both_versions() {
        for text in ["x", "", "1.", ".1", "1.2.3.4", "1.a", "-1", "1e3"] {
            let err = OURS.judge(Some(text)).unwrap_err();
            assert!(matches!(err, VersionError::Invalid { .. }), "{text}");
            assert!(err.to_string().contains("1.0.0"), "{err}");
        }
    }
}
