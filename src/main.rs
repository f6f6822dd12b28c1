//! The `tally` binary: parse arguments, run the command, map the outcome to an exit code.

use clap::Parser;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use tally::cli::{Cli, Command};
use tally::domain::merge::StrategyPriorities;
use tally::quote::{parse_request, price, render, QuoteError};

/// sysexits(3): the input data was incorrect.
const EXIT_DATA_ERROR: u8 = 65;
/// Usage errors, as clap reports them.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Quote { input } => run_quote(&input),
    }
}

fn run_quote(input: &Path) -> ExitCode {
    let text = match read_input(input) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("tally quote: cannot read {}: {error}", input_name(input));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let quote = parse_request(&text).and_then(|request| price(&request, &StrategyPriorities::default()));
    match quote {
        Ok(quote) => {
            let mut stdout = std::io::stdout().lock();
            let written = serde_json::to_writer_pretty(&mut stdout, &render(&quote))
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(stdout));
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("tally quote: cannot write the response: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error @ (QuoteError::Syntax { .. } | QuoteError::Invalid(_) | QuoteError::Pricing(_))) => {
            eprintln!("{}: {error}", input_name(input));
            ExitCode::from(EXIT_DATA_ERROR)
        }
    }
}

/// How error messages name the input: its path, or `<stdin>` for `-`.
fn input_name(input: &Path) -> String {
    if input == Path::new("-") {
        return "<stdin>".to_owned();
    }
    input.display().to_string()
}

fn read_input(input: &Path) -> std::io::Result<String> {
    if input == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        return Ok(text);
    }
    std::fs::read_to_string(input)
}
