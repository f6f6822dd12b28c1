//! `tally services …` and `tally plans …` end to end: the real binary on a SQLite file.
//!
//! The first tests check the command line's own layer (input parsing, exit codes,
//! usage); the others run whole operations and expect the data of `api.md`.

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn tally(directory: &Path, args: &[&str]) -> Output {
    tally_with_input(directory, args, None)
}

fn tally_with_input(directory: &Path, args: &[&str], input: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .current_dir(directory)
        .env_remove("TALLY_DATABASE_URL")
        .env_remove("TALLY_CONFIG")
        .env_remove("RUST_LOG")
        .env("USER", "os-user")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tally runs");
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(text) = input {
        stdin.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(stdin);
    child.wait_with_output().expect("tally ends")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Exit 0 and the JSON printed on standard output.
fn ok_json(output: &Output) -> Value {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The one error line of a failed command, after checking its exit code, as a
/// terminal shows it (`tally: MESSAGE`); off a terminal it is one JSON object.
fn failed(output: &Output, code: i32) -> String {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {text}");
    let line: Value = serde_json::from_str(lines[0]).unwrap_or_else(|_| panic!("one JSON object: {text}"));
    assert_eq!(line["level"], "ERROR", "{text}");
    assert!(output.stdout.is_empty(), "nothing on stdout");
    format!("tally: {}", line["message"].as_str().expect("a message"))
}

/// A migrated database with a master `m`, a reseller `r` below it and its customer `a`
/// (reconciled, so the tree is known).
fn fixture() -> tempfile::TempDir {
    let directory = tempfile::tempdir().expect("temp dir");
    assert!(tally(directory.path(), &["migrate"]).status.success());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let url = tally::config::DatabaseUrl::new(format!("sqlite://{}", directory.path().join("tally.db").display()));
        let store = tally::store::Store::open(&url).await.expect("opens");
        store
            .execute_script(
                "INSERT INTO accounts (id, parent_id, name, is_reseller, reseller_id) VALUES \
                 ('m', NULL, 'Master', TRUE, NULL), \
                 ('r', 'm', 'Reseller', TRUE, 'm'), \
                 ('a', 'r', 'Customer', FALSE, 'r');",
            )
            .await
            .expect("accounts");
        store.close().await;
    });
    let reconcile = tally(directory.path(), &["run", "reconcile", "--json"]);
    assert_eq!(reconcile.status.code(), Some(0), "{}", stderr(&reconcile));
    directory
}

const PLANS: &str = r#"[
  {"_id": "p_devices", "name": "Devices", "description": "per device", "category": "voip",
   "plan": {"devices": {"sip_device": {"rate": 1.50}}}},
  {"id": "p_users", "name": "Users", "plan": {"users": {"user": {"rate": 2}}}}
]"#;

fn import_plans(directory: &Path) -> Value {
    let file = directory.join("plans.json");
    std::fs::write(&file, PLANS).expect("write plans");
    ok_json(&tally(
        directory,
        &["plans", "import", file.to_str().expect("utf-8"), "--vendor", "r"],
    ))
}

// --- The command line's own layer: these need no operation body. ---

#[test]
fn invalid_data_json_exits_65_naming_the_flag() {
    let directory = fixture();
    let line = failed(
        &tally(directory.path(), &["services", "overrides", "a", "--data", "{plan"]),
        65,
    );
    assert!(line.starts_with("tally: --data: invalid JSON: "), "{line}");
    let line = failed(
        &tally(
            directory.path(),
            &["services", "assign", "a", "p", "--overrides", "[1,"],
        ),
        65,
    );
    assert!(line.starts_with("tally: --overrides: invalid JSON: "), "{line}");
    let line = failed(
        &tally_with_input(
            directory.path(),
            &["services", "quote", "a", "--file", "-"],
            Some("not json"),
        ),
        65,
    );
    assert!(line.starts_with("tally: --file <stdin>: invalid JSON: "), "{line}");
}

#[test]
fn bad_set_items_and_dates_exit_65_naming_the_flag() {
    let directory = fixture();
    let line = failed(
        &tally(
            directory.path(),
            &["services", "manual", "a", "--set-item", "devices.sip_device=-2"],
        ),
        65,
    );
    assert!(line.starts_with("tally: --set-item: devices.sip_device=-2: "), "{line}");
    let line = failed(
        &tally(
            directory.path(),
            &["services", "audit-summary", "a", "--from", "2026-02-30"],
        ),
        65,
    );
    assert!(
        line.starts_with("tally: --from: expected Gregorian seconds or a date"),
        "{line}"
    );
    let line = failed(
        &tally(directory.path(), &["services", "audit", "a", "--to", "tomorrow"]),
        65,
    );
    assert!(line.starts_with("tally: --to: "), "{line}");
}

#[test]
fn usage_errors_exit_2_and_a_missing_input_file_too() {
    let directory = fixture();
    for args in [
        &["services", "status", "a", "--reason", "why"][..],
        &["services", "status", "a", "--good", "--bad", "--reason", "x"],
        &["services", "quote", "a"],
        &["services", "update", "a", "--add", "p", "--data", "{}"],
        &["plans", "override", "a"],
        &["services", "get", "a", "--json", "--table"],
        &["plans", "import", "plans.json"],
    ] {
        let output = tally(directory.path(), args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
    }
    let line = failed(
        &tally(directory.path(), &["plans", "import", "missing.json", "--vendor", "r"]),
        2,
    );
    assert!(line.contains("missing.json"), "{line}");
}

// --- Whole operations (they need the operation bodies of `src/ops/`). ---

#[test]
fn plans_import_then_list_get_and_available() {
    let directory = fixture();
    assert_eq!(
        import_plans(directory.path()),
        json!({"created": ["p_devices", "p_users"], "updated": [], "unchanged": []})
    );
    assert_eq!(
        import_plans(directory.path()),
        json!({"created": [], "updated": [], "unchanged": ["p_devices", "p_users"]})
    );
    let listed = ok_json(&tally(directory.path(), &["plans", "list", "r"]));
    let ids: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|plan| plan["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["p_devices", "p_users"]);
    assert_eq!(listed[0]["name"], "Devices");
    assert_eq!(listed[0]["description"], "per device");

    let plan = ok_json(&tally(directory.path(), &["plans", "get", "r", "p_devices"]));
    assert_eq!(plan["id"], "p_devices");
    // The exact digits of the document survive import and output.
    assert!(
        String::from_utf8_lossy(&tally(directory.path(), &["plans", "get", "r", "p_devices"]).stdout).contains("1.50"),
        "rate kept as 1.50"
    );
    // `a`'s reseller is `r`: its plans are the ones on offer to `a`.
    let available = ok_json(&tally(directory.path(), &["services", "available", "a"]));
    assert_eq!(available.as_array().map(Vec::len), Some(2));
    let one = ok_json(&tally(directory.path(), &["plans", "available", "a", "p_users"]));
    assert_eq!(one["id"], "p_users");
    // From stdin too.
    let again = ok_json(&tally_with_input(
        directory.path(),
        &["plans", "import", "-", "--vendor", "r"],
        Some(r#"{"_id": "p_users", "name": "Users v2", "plan": {"users": {"user": {"rate": 3}}}}"#),
    ));
    assert_eq!(again, json!({"created": [], "updated": ["p_users"], "unchanged": []}));
}

#[test]
fn services_get_assign_unassign_and_their_refusals() {
    let directory = fixture();
    import_plans(directory.path());
    assert_eq!(ok_json(&tally(directory.path(), &["services", "get", "a"])), json!({}));
    let plans = ok_json(&tally(
        directory.path(),
        &[
            "services",
            "assign",
            "a",
            "p_devices",
            "--overrides",
            r#"{"plan": {"devices": {"sip_device": {"rate": 0.75}}}}"#,
        ],
    ));
    assert_eq!(plans["p_devices"]["vendor_id"], "r");
    assert_eq!(
        plans["p_devices"]["overrides"],
        json!({"plan": {"devices": {"sip_device": {"rate": 0.75}}}})
    );
    assert_eq!(ok_json(&tally(directory.path(), &["services", "get", "a"])), plans);

    let updated = ok_json(&tally(
        directory.path(),
        &["services", "update", "a", "--add", "p_users", "--delete", "p_devices"],
    ));
    let keys: Vec<&String> = updated.as_object().expect("plans map").keys().collect();
    assert_eq!(keys, vec!["p_users"]);

    let line = failed(
        &tally(directory.path(), &["services", "unassign", "a", "p_devices"]),
        65,
    );
    assert!(line.contains("plan_is_not_assigned"), "{line}");
    let line = failed(&tally(directory.path(), &["services", "assign", "a", "p_nope"]), 65);
    assert!(line.contains("bad identifier") && line.contains("p_nope"), "{line}");
    let line = failed(&tally(directory.path(), &["services", "get", "nobody"]), 65);
    assert_eq!(line, "tally: bad identifier: nobody");
    let line = failed(&tally(directory.path(), &["services", "billing-id", "a", "m"]), 65);
    assert!(line.contains("invalid_billing_id"), "{line}");
}

#[test]
fn manual_quantities_set_merge_show_and_validation() {
    let directory = fixture();
    let set = ok_json(&tally(
        directory.path(),
        &["services", "manual", "a", "--set", r#"{"devices": {"sip_device": 3}}"#],
    ));
    assert_eq!(set, json!({"devices": {"sip_device": 3}}));
    let merged = ok_json(&tally(
        directory.path(),
        &["services", "manual", "a", "--set-item", "users.user=2", "--merge"],
    ));
    assert_eq!(merged, json!({"devices": {"sip_device": 3}, "users": {"user": 2}}));
    let deleted = ok_json(&tally(
        directory.path(),
        &[
            "services",
            "manual",
            "a",
            "--set-item",
            "devices.sip_device=null",
            "--merge",
        ],
    ));
    assert_eq!(deleted, json!({"users": {"user": 2}}));
    assert_eq!(ok_json(&tally(directory.path(), &["services", "manual", "a"])), deleted);

    let table = tally(directory.path(), &["services", "manual", "a", "--table"]);
    assert_eq!(table.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&table.stdout),
        "key         value\nusers.user  2\n"
    );

    let line = failed(
        &tally(
            directory.path(),
            &[
                "services",
                "manual",
                "a",
                "--data",
                r#"{"devices": {"sip_device": "three"}}"#,
            ],
        ),
        65,
    );
    assert!(
        line.starts_with("tally: validation error: devices.sip_device: "),
        "{line}"
    );
}

#[test]
fn status_shows_and_sets_the_standing_through_the_operations() {
    let directory = fixture();
    assert_eq!(
        ok_json(&tally(directory.path(), &["services", "status", "a"])),
        json!({"in_good_standing": true})
    );
    let bad = ok_json(&tally(
        directory.path(),
        &[
            "services",
            "status",
            "a",
            "--bad",
            "--reason",
            "unpaid",
            "--reason-code",
            "402",
        ],
    ));
    assert_eq!(bad["in_good_standing"], false);
    assert_eq!(bad["reason"], "unpaid");
    assert_eq!(ok_json(&tally(directory.path(), &["services", "status", "a"])), bad);
    let good = ok_json(&tally(directory.path(), &["services", "status", "a", "--good"]));
    assert_eq!(good["in_good_standing"], true);
    let line = failed(&tally(directory.path(), &["services", "status", "ghost"]), 65);
    assert!(line.contains("bad identifier"), "{line}");
}

#[test]
fn changes_are_audited_with_the_operator_who_made_them() {
    let directory = fixture();
    import_plans(directory.path());
    ok_json(&tally(
        directory.path(),
        &["services", "assign", "a", "p_devices", "--as", "alice"],
    ));
    // Without --as: the OS user ($USER).
    ok_json(&tally(
        directory.path(),
        &["services", "manual", "a", "--set-item", "devices.sip_device=2"],
    ));
    let listed = ok_json(&tally(directory.path(), &["services", "audit", "a", "--all"]));
    let rows = listed["data"].as_array().expect("rows");
    assert!(!rows.is_empty(), "{listed}");
    assert_eq!(listed["next_start_key"], Value::Null);
    // Both changes may fall in the same second, so find each by what it changed.
    assert_eq!(rows.len(), 2, "{listed}");
    let manual = rows
        .iter()
        .find(|row| row["type"] == json!(["manual"]))
        .expect("the manual change is typed");
    let assignment = rows
        .iter()
        .find(|row| row.get("type").is_none())
        .expect("the plan change");
    let agent = |row: &Value| {
        let id = row["id"].as_str().expect("an id");
        ok_json(&tally(directory.path(), &["services", "audit-log", "a", id]))["audit"]["agent"].clone()
    };
    assert_eq!(agent(manual), json!({"type": "operator", "user": "os-user"}));
    assert_eq!(agent(assignment), json!({"type": "operator", "user": "alice"}));

    let line = failed(&tally(directory.path(), &["services", "audit-log", "a", "nope"]), 65);
    assert!(line.contains("bad identifier"), "{line}");

    let paged = ok_json(&tally(
        directory.path(),
        &["services", "audit", "a", "--page-size", "1", "--ascending"],
    ));
    assert_eq!(paged["data"].as_array().map(Vec::len), Some(1));
}

#[test]
fn the_summary_and_a_quote_price_the_assigned_plans() {
    let directory = fixture();
    import_plans(directory.path());
    ok_json(&tally(directory.path(), &["services", "assign", "a", "p_devices"]));
    ok_json(&tally(
        directory.path(),
        &["services", "manual", "a", "--set-item", "devices.sip_device=2"],
    ));
    let summary = ok_json(&tally(directory.path(), &["services", "summary", "a"]));
    assert_eq!(summary["quantities"]["manual"], json!({"devices": {"sip_device": 2}}));
    assert!(
        summary["invoices"]
            .as_array()
            .is_some_and(|invoices| !invoices.is_empty()),
        "{summary}"
    );
    assert_eq!(summary["reseller"]["id"], "r");

    let quote = ok_json(&tally(
        directory.path(),
        &["services", "quote", "a", "--data", r#"{"plans": ["p_users"]}"#],
    ));
    assert!(quote["invoices"].is_array(), "{quote}");
    // Nothing saved by a quote.
    let plans = ok_json(&tally(directory.path(), &["services", "get", "a"]));
    assert_eq!(
        plans.as_object().map(|map| map.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["p_devices".to_owned()])
    );
}
