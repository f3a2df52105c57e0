//! The catalogue of commands: their names on the wire, and which ones carry a sequence.

use std::fmt;

/// Every `command` of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Command {
    /// `ping` (request).
    Ping,
    /// `pong` (reply to `ping`).
    Pong,
    /// `list` (request and reply).
    List,
    /// `search` (request and reply).
    Search,
    /// `approval` (request and reply).
    Approval,
    /// `training-plan-status` (request and reply).
    TrainingPlanStatus,
    /// `train` (request and reply).
    Train,
    /// `secagg` (request and reply).
    Secagg,
    /// `secagg-delete` (request and reply).
    SecaggDelete,
    /// `log` (node -> researcher).
    Log,
    /// `error` (node -> researcher).
    Error,
    /// `add_scalar` (node -> researcher, monitoring).
    AddScalar,
    /// `presence`: fedreq's own, a node's retained status (no v4.4 component reads it).
    Presence,
    /// `no-match`: fedreq's own, a node's word that a search found nothing.
    NoMatch,
}

impl Command {
    /// Every command, requests first.
    pub const ALL: [Command; 14] = [
        Command::Ping,
        Command::List,
        Command::Search,
        Command::Approval,
        Command::TrainingPlanStatus,
        Command::Train,
        Command::Secagg,
        Command::SecaggDelete,
        Command::Pong,
        Command::Log,
        Command::Error,
        Command::AddScalar,
        Command::Presence,
        Command::NoMatch,
    ];

    /// The command as it travels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Command::Ping => "ping",
            Command::Pong => "pong",
            Command::List => "list",
            Command::Search => "search",
            Command::Approval => "approval",
            Command::TrainingPlanStatus => "training-plan-status",
            Command::Train => "train",
            Command::Secagg => "secagg",
            Command::SecaggDelete => "secagg-delete",
            Command::Log => "log",
            Command::Error => "error",
            Command::AddScalar => "add_scalar",
            Command::Presence => "presence",
            Command::NoMatch => "no-match",
        }
    }

    /// The command named `text`, if any.
    pub fn parse(text: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// The command of the reply to this request: `pong` for `ping`, else the same.
    pub const fn reply(self) -> Command {
        match self {
            Command::Ping => Command::Pong,
            other => other,
        }
    }

    /// Whether a node may leave this request unanswered: a v4.4 node sends nothing for a
    /// search it has no dataset for. Such a request is fenced (see `Researcher`).
    pub const fn may_go_unanswered(self) -> bool {
        matches!(self, Command::Search)
    }

    /// Whether sending this request twice does no harm: it only reads the node's state.
    /// Such a request is sent again to a node that restarted before answering it; a `train`
    /// or an `approval` never is.
    pub const fn is_safe_to_repeat(self) -> bool {
        matches!(
            self,
            Command::Ping | Command::List | Command::Search | Command::TrainingPlanStatus
        )
    }

    /// Whether requests and replies of this command carry a `sequence`.
    pub const fn has_sequence(self) -> bool {
        matches!(
            self,
            Command::Ping
                | Command::Pong
                | Command::Approval
                | Command::Secagg
                | Command::SecaggDelete
        )
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
