//! `tally completions SHELL` and `tally man`: generated from the clap definitions of
//! `tally::cli`, so they cannot drift from the commands.

use clap::CommandFactory;
use std::io::Write;
use std::process::ExitCode;
use tally::cli::{Cli, ManArgs};

/// The completion script of `shell` on standard output.
pub(crate) fn print_completions(shell: clap_complete::Shell) -> ExitCode {
    let mut command = Cli::command();
    // Generated into memory: clap_complete panics on a failed write, and a reader that
    // closed the pipe early is no failure.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "tally", &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => write_failure("the completion script", &error),
    }
}

/// A failed write to standard output: quiet success when the reader closed it early.
fn write_failure(what: &str, error: &std::io::Error) -> ExitCode {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        return ExitCode::SUCCESS;
    }
    tell!(ERROR, "cannot print {what}: {error}");
    ExitCode::FAILURE
}

/// Every page, `tally(1)` first, then one per command and subcommand
/// (`tally-run-billing(1)`): printed one after another, or written to `--dir`.
pub(crate) fn print_man(args: &ManArgs) -> ExitCode {
    match &args.dir {
        Some(directory) => {
            let written =
                std::fs::create_dir_all(directory).and_then(|()| clap_mangen::generate_to(Cli::command(), directory));
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tell!(
                        ERROR,
                        "cannot write the manual pages to {}: {error}",
                        directory.display()
                    );
                    ExitCode::FAILURE
                }
            }
        }
        None => match render_all_pages(&mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => write_failure("the manual pages", &error),
        },
    }
}

/// Renders the page of `tally` and of every command below it, depth first.
fn render_all_pages(out: &mut dyn Write) -> std::io::Result<()> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut pending = vec![command];
    while let Some(command) = pending.pop() {
        let mut below: Vec<clap::Command> = command
            .get_subcommands()
            .filter(|sub| !sub.is_hide_set())
            .cloned()
            .collect();
        below.reverse();
        clap_mangen::Man::new(command).render(out)?;
        pending.extend(below);
    }
    Ok(())
}
