//! The process exit codes of `tally`, from sysexits(3), so that systemd units, cron
//! wrappers and scripts can tell "retry later" from "fix the configuration".
//!
//! | Code | Variant | Meaning | What the caller does |
//! | ---: | --- | --- | --- |
//! | 0 | [`ExitCode::Done`] | the work is done (also: the daemon stopped on SIGTERM/SIGINT) | nothing |
//! | 65 | [`ExitCode::DataErrors`] | `EX_DATAERR`: data errors in some accounts; the others were done; for `tally services`/`plans`: invalid input, an unknown account, plan or audit log | fix the named accounts' data or the input; do not retry blindly |
//! | 77 | [`ExitCode::NoPermission`] | `EX_NOPERM`: the caller may not do this (`tally services`/`plans`) | act as a user with the rights |
//! | 75 | [`ExitCode::TemporaryFailure`] | `EX_TEMPFAIL`: temporary failure, work left to retry (a bookkeeper unreachable, the database busy, the job already running elsewhere, a run interrupted) | retry later (systemd: `Restart=on-failure`; cron: the next night) |
//! | 78 | [`ExitCode::BadConfiguration`] | `EX_CONFIG`: bad configuration or job file | fix the file named in the message; do not restart |
//! | 2 | [`ExitCode::Usage`] | bad command line (clap's own code) | read `tally --help` |
//! | 1 | [`ExitCode::Failure`] | anything else | read the log |
//!
//! This module only names the codes. Which one a run exits with is decided by
//! `runs::outcome` (`RunEnd::exit_code`), for `tally run` and the run records alike;
//! `main` maps the other commands' errors.

/// A documented exit code of `tally`; see the module table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitCode {
    Done,
    DataErrors,
    NoPermission,
    TemporaryFailure,
    BadConfiguration,
    Usage,
    Failure,
}

impl ExitCode {
    pub const ALL: [ExitCode; 7] = [
        ExitCode::Done,
        ExitCode::DataErrors,
        ExitCode::NoPermission,
        ExitCode::TemporaryFailure,
        ExitCode::BadConfiguration,
        ExitCode::Usage,
        ExitCode::Failure,
    ];

    /// The number the process exits with.
    pub const fn code(self) -> u8 {
        match self {
            ExitCode::Done => 0,
            ExitCode::DataErrors => 65,
            ExitCode::NoPermission => 77,
            ExitCode::TemporaryFailure => 75,
            ExitCode::BadConfiguration => 78,
            ExitCode::Usage => 2,
            ExitCode::Failure => 1,
        }
    }

    /// The sysexits name, for logs and documentation.
    pub fn name(self) -> &'static str {
        match self {
            ExitCode::Done => "EX_OK",
            ExitCode::DataErrors => "EX_DATAERR",
            ExitCode::NoPermission => "EX_NOPERM",
            ExitCode::TemporaryFailure => "EX_TEMPFAIL",
            ExitCode::BadConfiguration => "EX_CONFIG",
            ExitCode::Usage => "usage",
            ExitCode::Failure => "failure",
        }
    }

    /// Of several outcomes (one per job step), the one to exit with: the code that
    /// asks the most of the operator wins, so a configuration error is never hidden
    /// behind a retryable one, nor data errors behind success.
    pub fn worst(self, other: ExitCode) -> ExitCode {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    fn severity(self) -> u8 {
        match self {
            ExitCode::Done => 0,
            ExitCode::DataErrors => 1,
            ExitCode::NoPermission => 2,
            ExitCode::TemporaryFailure => 3,
            ExitCode::Failure => 4,
            ExitCode::Usage => 5,
            ExitCode::BadConfiguration => 6,
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_sysexits_numbers() {
        let table = [
            (ExitCode::Done, 0),
            (ExitCode::DataErrors, 65),
            (ExitCode::NoPermission, 77),
            (ExitCode::TemporaryFailure, 75),
            (ExitCode::BadConfiguration, 78),
            (ExitCode::Usage, 2),
            (ExitCode::Failure, 1),
        ];
        for (code, number) in table {
            assert_eq!(code.code(), number, "{code:?}");
        }
    }

    #[test]
    fn the_worst_of_two_outcomes_is_the_one_asking_most_of_the_operator() {
        use ExitCode::*;
        let table = [
            (Done, Done, Done),
            (Done, DataErrors, DataErrors),
            (DataErrors, TemporaryFailure, TemporaryFailure),
            (TemporaryFailure, DataErrors, TemporaryFailure),
            (TemporaryFailure, Failure, Failure),
            (Failure, Usage, Usage),
            (Usage, BadConfiguration, BadConfiguration),
            (Failure, BadConfiguration, BadConfiguration),
            (BadConfiguration, Done, BadConfiguration),
        ];
        for (left, right, expected) in table {
            assert_eq!(left.worst(right), expected, "{left:?} + {right:?}");
            assert_eq!(right.worst(left), expected, "{right:?} + {left:?}");
        }
    }

    #[test]
    fn every_code_is_distinct() {
        let mut numbers: Vec<u8> = ExitCode::ALL.iter().map(|code| code.code()).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), ExitCode::ALL.len());
    }
}
