//! The `fedreq` program.

use std::process::ExitCode;

use clap::FromArgMatches;

mod cli;

fn main() -> ExitCode {
    log::set_logger(&STDERR)
        .map(|()| log::set_max_level(log::LevelFilter::Info))
        .ok();
    let args = match cli::command()
        .try_get_matches()
        .and_then(|matches| cli::Cli::from_arg_matches(&matches))
    {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fedreq: {error}");
            ExitCode::FAILURE
        }
    }
}

/// fedreq's own `log` records on stderr, one line each (the embedded broker's are not shown).
struct Stderr;

static STDERR: Stderr = Stderr;

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level() && metadata.target().starts_with("fedreq")
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!("{:<5} {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}
