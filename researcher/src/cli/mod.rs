//! Command-line parsing and the subcommands. Exit status: 0 on success, 1 on an error
//! (one line on stderr naming the cause), 2 on a usage error (clap's own).

use std::fmt;

use clap::{Parser, Subcommand};

mod sim;

/// fedreq: ping the nodes of a Fed-BioMed v4.4 federation, list and search their datasets,
/// send training plans for approval, and collect the replies.
#[derive(Debug, Parser)]
#[command(name = "fedreq", version, about, propagate_version = true)]
pub struct Cli {
    /// Print one JSON object on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulate a federation in memory, with seeded faults, on a virtual clock.
    Sim(sim::SimArgs),
}

/// An error for the user: printed on one line, exit status 1.
#[derive(Debug)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Sim(args) => sim::run(args, cli.json),
    }
}
