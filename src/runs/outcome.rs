//! How a run ended, decided once: a job's report or error becomes a [`RunOutcome`]
//! ([`RunOutcome::of`]), whose [`RunEnd`] is both the status recorded in the ledger and,
//! through [`RunEnd::exit_code`], the exit code of `tally run` — for a scheduled run
//! and a one-shot run alike. `exit.rs` only names the codes.

use crate::exit::ExitCode;

use super::record::RunFigures;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunEnd {
    /// All the work was done.
    Succeeded,
    /// Some accounts had data errors; the others were done.
    DataErrors,
    /// A temporary failure left work to retry (bookkeeper down, database busy, the job
    /// already running elsewhere).
    TemporaryFailure,
    /// Anything else went wrong.
    Failed,
    /// Stopped early by shutdown, the time limit or a lost lease; work is left.
    Interrupted,
}

impl RunEnd {
    pub const ALL: [RunEnd; 5] = [
        RunEnd::Succeeded,
        RunEnd::DataErrors,
        RunEnd::TemporaryFailure,
        RunEnd::Failed,
        RunEnd::Interrupted,
    ];

    /// The exit code of a `tally run` that ended so: the only place that decides it.
    pub fn exit_code(self) -> ExitCode {
        match self {
            RunEnd::Succeeded => ExitCode::Done,
            RunEnd::DataErrors => ExitCode::DataErrors,
            RunEnd::TemporaryFailure | RunEnd::Interrupted => ExitCode::TemporaryFailure,
            RunEnd::Failed => ExitCode::Failure,
        }
    }

    /// The status text of the run record, `tally runs` and `--json` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RunEnd::Succeeded => "succeeded",
            RunEnd::DataErrors => "data-errors",
            RunEnd::TemporaryFailure => "temporary-failure",
            RunEnd::Failed => "failed",
            RunEnd::Interrupted => "interrupted",
        }
    }
}

/// What a run ended with: recorded in the ledger, logged, and turned into metrics and
/// the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub end: RunEnd,
    pub figures: RunFigures,
    /// A one-line explanation for the run record when the run did not succeed.
    pub message: Option<String>,
}

impl RunOutcome {
    pub fn succeeded(figures: RunFigures) -> Self {
        Self {
            end: RunEnd::Succeeded,
            figures,
            message: None,
        }
    }

    pub fn ended(end: RunEnd, figures: RunFigures, message: impl Into<String>) -> Self {
        Self {
            end,
            figures,
            message: Some(message.into()),
        }
    }

    /// A report's end and figures; a run that did not succeed says so in its message,
    /// by its status's name when the report has nothing better to say.
    pub fn reported(end: RunEnd, figures: RunFigures, message: Option<String>) -> Self {
        match (end, message) {
            (RunEnd::Succeeded, _) => RunOutcome::succeeded(figures),
            (end, Some(message)) => RunOutcome::ended(end, figures, message),
            (end, None) => RunOutcome::ended(end, figures, end.as_str()),
        }
    }

    /// The outcome of a job that stopped with `error` before it could report: a
    /// temporary failure (exit 75) when retrying later may succeed, else failed.
    pub fn failed(error: &impl JobError) -> Self {
        let end = match error.is_temporary() {
            true => RunEnd::TemporaryFailure,
            false => RunEnd::Failed,
        };
        RunOutcome::ended(end, RunFigures::default(), error.to_string())
    }

    /// The one mapping from what a job returned to how its run ended.
    pub fn of<R: JobReport, E: JobError>(result: &Result<R, E>) -> Self {
        match result {
            Ok(report) => report.outcome(),
            Err(error) => RunOutcome::failed(error),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        self.end.exit_code()
    }
}

/// A job's report, as a run's outcome: its figures, and whether all its work was done.
pub trait JobReport {
    fn outcome(&self) -> RunOutcome;
}

impl JobReport for RunOutcome {
    fn outcome(&self) -> RunOutcome {
        self.clone()
    }
}

/// A job's error, as a run's outcome needs it: worth retrying later as is (a lost
/// connection, a busy database, an unreachable server), or not.
pub trait JobError: std::fmt::Display {
    fn is_temporary(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ends_map_to_the_documented_exit_codes() {
        let table = [
            (RunEnd::Succeeded, ExitCode::Done),
            (RunEnd::DataErrors, ExitCode::DataErrors),
            (RunEnd::TemporaryFailure, ExitCode::TemporaryFailure),
            (RunEnd::Interrupted, ExitCode::TemporaryFailure),
            (RunEnd::Failed, ExitCode::Failure),
        ];
        for (end, code) in table {
            assert_eq!(end.exit_code(), code, "{end:?}");
        }
    }

    #[derive(Debug)]
    struct Error {
        temporary: bool,
    }

    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection reset")
        }
    }

    impl JobError for Error {
        fn is_temporary(&self) -> bool {
            self.temporary
        }
    }

    #[test]
    fn a_job_error_ends_the_run_temporary_or_failed_by_its_kind() {
        let temporary: Result<RunOutcome, Error> = Err(Error { temporary: true });
        let permanent: Result<RunOutcome, Error> = Err(Error { temporary: false });
        assert_eq!(
            RunOutcome::of(&temporary),
            RunOutcome::ended(RunEnd::TemporaryFailure, RunFigures::default(), "connection reset")
        );
        assert_eq!(RunOutcome::of(&permanent).end, RunEnd::Failed);
        assert_eq!(RunOutcome::of(&permanent).exit_code(), ExitCode::Failure);
        let partial = RunOutcome::reported(RunEnd::DataErrors, RunFigures::default(), None);
        assert_eq!(partial.message.as_deref(), Some("data-errors"));
        let done: Result<RunOutcome, Error> = Ok(RunOutcome::succeeded(RunFigures::default()));
        assert_eq!(RunOutcome::of(&done).exit_code(), ExitCode::Done);
    }
}
