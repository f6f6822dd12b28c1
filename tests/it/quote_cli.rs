//! `tally quote` as a user runs it: files, standard input, exit codes, one error line.

use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn tally(arguments: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tally binary starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("stdin accepts the request");
    drop(input);
    child.wait_with_output().expect("tally finishes")
}

fn request_file(request: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(request.as_bytes()).expect("request written");
    file
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

const VALID: &str = r#"{"plans":[{"id":"p","plan":{"devices":{"sip_device":{"rate":1.25}}}}],
                        "quantities":{"account":{"devices":{"sip_device":4}}}}"#;

#[test]
fn a_valid_request_file_prints_the_invoices_and_exits_zero() {
    let file = request_file(VALID);
    let output = tally(&["quote", "--input", file.path().to_str().expect("utf-8 path")], None);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let response: Value = serde_json::from_slice(&output.stdout).expect("the response is JSON");
    assert_eq!(response["invoices"][0]["summary"]["recurring"], json!(5));
    assert_eq!(response["invoices"][0]["items"][0]["total"], json!(5));
}

#[test]
fn a_dash_reads_the_request_from_standard_input() {
    let output = tally(&["quote", "--input", "-"], Some(VALID));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let response: Value = serde_json::from_slice(&output.stdout).expect("the response is JSON");
    assert_eq!(
        response["invoices"][0]["bookkeeper"],
        json!({"type": "default", "vendor_id": "reseller", "id": "default_bookkeeper"})
    );
}

#[test]
fn an_invalid_value_exits_65_with_one_line_naming_its_json_path() {
    let request =
        r#"{"plans":[{"id":"a","plan":{}},{"id":"b","plan":{"devices":{"sip_device":{"rates":{"10":"abc"}}}}}]}"#;
    let output = tally(&["quote", "--input", "-"], Some(request));
    assert_eq!(output.status.code(), Some(65));
    assert!(output.stdout.is_empty(), "nothing is printed on standard output");
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].ends_with(r#"plans[1].plan.devices.sip_device.rates."10": expected a number, found "abc""#),
        "{}",
        lines[0]
    );
}

#[test]
fn broken_json_exits_65_with_its_line_and_column() {
    let output = tally(&["quote", "--input", "-"], Some("{\"plans\": [\n  {\"id\": }\n]}"));
    assert_eq!(output.status.code(), Some(65));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("invalid JSON at line 2 column"), "{}", lines[0]);
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(tally(&["quote"], None).status.code(), Some(2));
    assert_eq!(
        tally(&["quote", "--input", "/nonexistent/request.json"], None)
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn hostile_inputs_are_refused_without_a_panic() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge_rate = r#"{"plans":[{"id":"p","plan":{"d":{"i":{"rate":79228162514264337593543950335}}}}],"quantities":{"account":{"d":{"i":9223372036854775807}}}}"#;
    for request in [
        "",
        "null",
        "[]",
        "{\"plans\": 5}",
        "{\"x\": 1}",
        deep.as_str(),
        huge_rate,
    ] {
        let output = tally(&["quote", "--input", "-"], Some(request));
        assert_eq!(
            output.status.code(),
            Some(65),
            "{request:.40}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(stderr_lines(&output).len(), 1, "{request:.40}");
    }
}
