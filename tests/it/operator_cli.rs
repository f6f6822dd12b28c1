//! Issue 14, the operator's day on the command line: standard error that parses as
//! JSON lines, no database created by mistake, `tally config` as TOML, finding
//! accounts, completions and manual pages, statuses in reports.

use clap::CommandFactory;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn command(directory: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
    command
        .args(args)
        .current_dir(directory)
        .env_remove("TALLY_DATABASE_URL")
        .env_remove("TALLY_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

fn tally(directory: &Path, args: &[&str]) -> Output {
    command(directory, args).output().expect("tally runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every line of standard error, each parsed as one JSON object (panics otherwise).
fn json_lines(output: &Output) -> Vec<Value> {
    stderr(output)
        .lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(value @ Value::Object(_)) => value,
            _ => panic!("a standard error line is not one JSON object: {line}"),
        })
        .collect()
}

/// The `message` of the standard-error lines.
fn messages(output: &Output) -> Vec<String> {
    json_lines(output)
        .iter()
        .filter_map(|line| line["message"].as_str().map(str::to_owned))
        .collect()
}

fn demo_directory(accounts: &str) -> tempfile::TempDir {
    let directory = tempfile::tempdir().expect("temp dir");
    let demo = tally(directory.path(), &["demo", "--accounts", accounts, "--seed", "3"]);
    assert!(demo.status.success(), "{}", stderr(&demo));
    directory
}

#[test]
fn billing_logs_on_a_pipe_are_json_lines_with_the_run_and_job_at_the_top_level() {
    let directory = demo_directory("12");
    let billing = tally(directory.path(), &["run", "billing"]);
    let lines = json_lines(&billing);
    let ended = lines
        .iter()
        .find(|line| line["message"] == "run ended")
        .unwrap_or_else(|| panic!("a `run ended` line: {}", stderr(&billing)));
    assert_eq!(ended["job"], "billing", "{ended}");
    assert!(!ended["run_id"].is_null(), "run_id is a top-level field: {ended}");
    assert!(ended.get("spans").is_none(), "no nested span list: {ended}");
}

#[test]
fn failures_on_a_pipe_are_json_lines_too_and_say_their_error_once() {
    let directory = demo_directory("5");
    // A bad database URL (the scheme is not one we know).
    let bad_url = command(directory.path(), &["run", "billing"])
        .env("TALLY_DATABASE_URL", "mysql://u:pw@127.0.0.1/x")
        .output()
        .expect("tally runs");
    assert_eq!(bad_url.status.code(), Some(78));
    assert!(messages(&bad_url)
        .iter()
        .any(|message| message.contains("unsupported database URL")));

    // A counting query that does not parse: one error line, its cause said once.
    let counting = directory.path().join("counting");
    std::fs::create_dir(&counting).expect("dir");
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/counting")).expect("read") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|extension| extension == "sql") {
            std::fs::copy(&path, counting.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    std::fs::write(counting.join("accounts.sql"), "SELEC 1").expect("write");
    for args in [&["run", "billing"][..], &["run", "reconcile", "--dry-run"][..]] {
        let failed = command(directory.path(), args)
            .env("TALLY_RECONCILE__COUNTING_DIR", &counting)
            .output()
            .expect("tally runs");
        assert_eq!(failed.status.code(), Some(1), "{args:?}: {}", stderr(&failed));
        let errors: Vec<Value> = json_lines(&failed)
            .into_iter()
            .filter(|line| line["level"] == "ERROR")
            .collect();
        assert_eq!(errors.len(), 1, "{args:?}: {errors:?}");
        let message = errors[0]["message"].as_str().expect("a message");
        assert_eq!(message.matches("syntax error").count(), 1, "{args:?}: {message}");
        assert!(message.contains("accounts.sql"), "{message}");
    }
}

#[test]
fn commands_refuse_a_sqlite_file_that_does_not_exist_with_78_and_create_nothing() {
    let directory = tempfile::tempdir().expect("temp dir");
    let database = directory.path().join("tally.db");
    let jobs = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
    let jobs = jobs.to_str().expect("utf-8 path");
    for args in [
        &["run", "billing"][..],
        &["run", "reconcile"],
        &["schedule", "--jobs-dir", jobs],
        &["serve", "--listen", "127.0.0.1:0"],
        &["services", "get", "a0000000000000000000000000000000"],
        &["plans", "list", "a0000000000000000000000000000000"],
        &["runs"],
        &["accounts", "list"],
        &["inventory", "rejected"],
    ] {
        let refused = tally(directory.path(), args);
        assert_eq!(refused.status.code(), Some(78), "{args:?}: {}", stderr(&refused));
        let said = messages(&refused).join("\n");
        assert!(said.contains("sqlite://./tally.db"), "{args:?} names the URL: {said}");
        assert!(
            said.contains("`tally migrate`"),
            "{args:?} says what creates it: {said}"
        );
        let left: Vec<_> = std::fs::read_dir(directory.path()).expect("read").collect();
        assert!(left.is_empty(), "{args:?} created {left:?}");
    }
    let migrated = tally(directory.path(), &["migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert!(database.exists(), "tally migrate creates it");
    let runs = tally(directory.path(), &["runs"]);
    assert_eq!(runs.status.code(), Some(0), "{}", stderr(&runs));
}

#[test]
fn a_missing_postgres_database_exits_78_naming_the_url_without_its_password() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // Only to learn whether a server is there (skips loudly otherwise).
    let Some(_server) = runtime.block_on(crate::helpers::postgres_store()) else {
        return;
    };
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "postgres://postgres:s3cret@127.0.0.1:5432/tally_missing_{}",
        std::process::id()
    );
    let refused = command(directory.path(), &["run", "billing"])
        .env("TALLY_DATABASE_URL", &url)
        .output()
        .expect("tally runs");
    assert_eq!(refused.status.code(), Some(78), "{}", stderr(&refused));
    let said = messages(&refused).join("\n");
    assert!(said.contains("does not exist"), "{said}");
    assert!(
        said.contains("postgres://postgres:<redacted>@127.0.0.1:5432/tally_missing_"),
        "{said}"
    );
    assert!(!said.contains("s3cret"), "{said}");
}

#[test]
fn demo_on_a_database_with_accounts_says_to_use_a_new_one() {
    let directory = demo_directory("4");
    let again = tally(directory.path(), &["demo", "--accounts", "4"]);
    assert_eq!(again.status.code(), Some(1));
    let said = messages(&again).join("\n");
    assert!(said.contains("already holds 4 accounts"), "{said}");
    assert!(
        said.contains("TALLY_DATABASE_URL=sqlite://demo.db tally demo"),
        "{said}"
    );
}

#[test]
fn config_prints_toml_that_reads_back_identically_with_every_secret_redacted() {
    let directory = tempfile::tempdir().expect("temp dir");
    let settings = directory.path().join("settings.toml");
    std::fs::write(
        &settings,
        "[database]\nurl = \"postgres://tally:db-pw@db.internal/tally\"\n\
         [bookkeepers.http]\nhttp_url = \"https://u:http-pw@books.example/\"\n\
         authorization_header = \"Bearer api-token\"\n\
         [ingest.couchdb]\nurl = \"http://admin:couch-url-pw@couch:5984\"\npassword = \"couch-pw\"\n",
    )
    .expect("write");
    let settings = settings.to_str().expect("utf-8 path");
    let printed = tally(directory.path(), &["--config", settings, "config"]);
    assert!(printed.status.success(), "{}", stderr(&printed));
    let text = stdout(&printed);
    for secret in ["db-pw", "http-pw", "api-token", "couch-url-pw", "couch-pw"] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
    assert!(
        text.contains("http_url = \"https://u:<redacted>@books.example/\""),
        "{text}"
    );
    let reread = directory.path().join("printed.toml");
    std::fs::write(&reread, &text).expect("write");
    let again = tally(
        directory.path(),
        &["--config", reread.to_str().expect("utf-8"), "config"],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), text);
}

#[test]
fn a_reader_closing_standard_output_early_ends_the_command_quietly_with_0() {
    let directory = tempfile::tempdir().expect("temp dir");
    for args in [&["man"][..], &["completions", "bash"], &["config"]] {
        let mut child = command(directory.path(), args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tally starts");
        // Closed before tally writes (its output is larger than a pipe's buffer anyway).
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("tally ends");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
        assert_eq!(stderr(&output), "", "{args:?}");
    }
}

/// Every command path below `tally`, e.g. `["run", "billing"]`.
fn command_paths(command: &clap::Command, above: &[String], paths: &mut Vec<Vec<String>>) {
    for sub in command.get_subcommands() {
        let mut path = above.to_vec();
        path.push(sub.get_name().to_owned());
        paths.push(path.clone());
        command_paths(sub, &path, paths);
    }
}

#[test]
fn completions_and_the_manual_cover_every_command() {
    let mut paths = Vec::new();
    command_paths(&tally::cli::Cli::command(), &[], &mut paths);
    assert!(paths.iter().any(|path| path == &["accounts", "tree"]), "{paths:?}");
    let directory = tempfile::tempdir().expect("temp dir");
    let bash = tally(directory.path(), &["completions", "bash"]);
    assert!(bash.status.success(), "{}", stderr(&bash));
    let script = stdout(&bash);
    let manual = tally(directory.path(), &["man"]);
    assert!(manual.status.success(), "{}", stderr(&manual));
    let pages = stdout(&manual);
    let pages_dir = directory.path().join("man");
    let written = tally(directory.path(), &["man", "--dir", pages_dir.to_str().expect("utf-8")]);
    assert!(written.status.success(), "{}", stderr(&written));
    for path in &paths {
        // clap_complete names a subcommand's case `tally__subcmd__run__subcmd__billing`.
        let case = format!("tally__subcmd__{}", path.join("__subcmd__").replace('-', "__subcmd__"));
        assert!(script.contains(&case), "bash completion lacks {path:?} ({case})");
        let page = format!("tally-{}", path.join("-")).replace('-', "\\-");
        assert!(pages.contains(&page), "the manual lacks {path:?} ({page})");
        let file = pages_dir.join(format!("tally-{}.1", path.join("-")));
        assert!(file.exists(), "no page {}", file.display());
    }
    for shell in ["zsh", "fish"] {
        let script = tally(directory.path(), &["completions", shell]);
        assert!(script.status.success() && !script.stdout.is_empty(), "{shell}");
    }
}

#[test]
fn accounts_are_listed_found_shown_and_drawn_as_a_tree() {
    let directory = demo_directory("12");
    let listed = tally(directory.path(), &["accounts", "list", "--json", "--limit", "5"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let accounts: Vec<Value> = stdout(&listed)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(accounts.len(), 5, "--limit holds");
    let ids: Vec<&str> = accounts.iter().filter_map(|account| account["id"].as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "by id");
    let reseller = accounts
        .iter()
        .find(|account| account["is_reseller"] == true)
        .expect("the demo has resellers");
    assert!(
        reseller["plans"].is_array() && reseller["standing"].is_string(),
        "{reseller}"
    );

    let table = tally(directory.path(), &["accounts", "list"]);
    let header = stdout(&table).lines().next().unwrap_or_default().to_owned();
    for column in ["id", "name", "reseller_id", "parent_id", "standing", "plans"] {
        assert!(
            header.split_whitespace().any(|cell| cell == column),
            "{column} in {header}"
        );
    }

    let found = tally(directory.path(), &["accounts", "find", "MASTER", "--json"]);
    let found: Vec<Value> = stdout(&found)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let master = found[0]["id"].as_str().expect("an id").to_owned();
    let by_prefix = tally(directory.path(), &["accounts", "find", &master[..6], "--json"]);
    assert!(stdout(&by_prefix).contains(&master));

    let shown = tally(directory.path(), &["accounts", "get", &master, "--json"]);
    let shown: Value = serde_json::from_str(stdout(&shown).trim()).expect("one JSON object");
    assert_eq!(shown["name"], "Master");
    assert!(shown["parent_id"].is_null());
    let missing = tally(
        directory.path(),
        &["accounts", "get", "ffffffffffffffffffffffffffffffff"],
    );
    assert_eq!(missing.status.code(), Some(65));

    let tree = tally(directory.path(), &["accounts", "tree"]);
    let lines: Vec<String> = stdout(&tree).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 12, "{lines:?}");
    assert!(lines[0].starts_with(&master), "the master first: {lines:?}");
    assert!(lines[1].starts_with("  "), "its children indented: {lines:?}");
}

#[test]
fn json_reports_carry_the_run_status_and_runs_lists_a_header_and_messages() {
    // Big enough for accounts billed through the (unconfigured) HTTP bookkeeper.
    let directory = demo_directory("20");
    for args in [
        &["run", "reconcile", "--json"][..],
        &["run", "reconcile", "--json", "--dry-run"],
        &["run", "sync", "--json"],
        &["run", "bookkeeper-sync", "--json"],
        &["run", "billing", "--json"],
        &["run", "topup", "--json"],
    ] {
        let run = tally(directory.path(), args);
        let report: Value = serde_json::from_str(stdout(&run).trim())
            .unwrap_or_else(|_| panic!("{args:?}: one JSON object: {}", stdout(&run)));
        let status = report["status"]
            .as_str()
            .unwrap_or_else(|| panic!("{args:?}: {report}"));
        let expected = match run.status.code() {
            Some(0) => "succeeded",
            Some(75) => "temporary-failure",
            other => panic!("{args:?}: exit {other:?}"),
        };
        assert_eq!(status, expected, "{args:?}");
    }
    let runs = tally(directory.path(), &["runs"]);
    let text = stdout(&runs);
    let mut lines = text.lines();
    let header = lines.next().expect("a header");
    for column in ["ID", "JOB", "STATUS", "MESSAGE"] {
        assert!(header.contains(column), "{header}");
    }
    // The demo's HTTP bookkeeper is not configured: its deliveries wait, which the
    // message says (not the status again).
    let waiting = lines
        .find(|line| line.contains("temporary-failure"))
        .unwrap_or_else(|| panic!("a run that left deliveries waiting: {text}"));
    assert!(waiting.contains("waiting"), "{waiting}");
    assert!(!waiting.contains("(temporary-failure)"), "{waiting}");
}
