//! `tally services …` and `tally plans …`: the command line over the operations layer.
//!
//! Only translation, so the command line and the HTTP API give the same data: arguments
//! become an operation's input `data` (the builders here are pure and unit-tested), the
//! operation's result becomes JSON or a table, and its refusal becomes one line on
//! standard error and an exit code ([`CommandError::exit_code`]).

use crate::cli::{DataArgs, ManualArgs, OpsOutputArgs, PlansOperation, RangeArgs, ServicesOperation, StatusArgs};
use crate::domain::summary::GregorianSeconds;
use crate::domain::AccountId;
use crate::exit::ExitCode;
use crate::ops::{Caller, ListQuery, Operations, OpsError, Page, WriteMode};
use serde_json::{json, Map, Value};
use std::io::Read;
use std::path::Path;

/// An argument that cannot become an operation's input.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Not JSON, or not the JSON the flag takes.
    #[error("{flag}: invalid JSON: {error}")]
    Json { flag: String, error: serde_json::Error },
    /// A value the flag does not accept.
    #[error("{flag}: {message}")]
    Invalid { flag: String, message: String },
    /// An input file that cannot be read.
    #[error("cannot read {name}: {error}")]
    Unreadable { name: String, error: std::io::Error },
}

/// Why a `services`/`plans` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Ops(#[from] OpsError),
}

impl CommandError {
    /// The exit code: see [`ops_exit_code`]; an unreadable input file is a usage error
    /// (as for `tally quote`), any other bad argument a data error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CommandError::Input(InputError::Unreadable { .. }) => ExitCode::Usage,
            CommandError::Input(_) => ExitCode::DataErrors,
            CommandError::Ops(error) => ops_exit_code(error),
        }
    }
}

/// 65 for what the input can fix (validation, an unknown account, plan or audit log, a
/// plan not assigned, a bad billing id), 77 for a refusal of rights, 1 for the rest.
pub fn ops_exit_code(error: &OpsError) -> ExitCode {
    match error {
        OpsError::Validation(_)
        | OpsError::BadIdentifier { .. }
        | OpsError::PlanNotAssigned { .. }
        | OpsError::InvalidBillingId { .. } => ExitCode::DataErrors,
        OpsError::Forbidden => ExitCode::NoPermission,
        OpsError::NoPaymentToken | OpsError::SaleNotCompleted { .. } | OpsError::Fault(_) | OpsError::Store(_) => {
            ExitCode::Failure
        }
    }
}

/// The operator the audit log names: `--as`, else `$USER`, else `$LOGNAME`, else
/// `unknown` (empty values skipped).
pub fn operator_name(explicit: Option<&str>, env: impl Fn(&str) -> Option<String>) -> String {
    explicit
        .map(str::to_owned)
        .into_iter()
        .chain(env("USER"))
        .chain(env("LOGNAME"))
        .find(|name| !name.trim().is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// What a command prints: `json` by default, `table` (with names for the key columns of
/// a map of rows) for people; `note` goes to standard error (e.g. the next page's key).
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub json: Value,
    pub table: Value,
    pub key_columns: &'static [&'static str],
    pub note: Option<String>,
    /// A rendering written for this command, shown instead of the generic table.
    pub text: Option<String>,
}

impl Output {
    fn data(data: Value) -> Output {
        Output {
            json: data.clone(),
            table: data,
            key_columns: &[],
            note: None,
            text: None,
        }
    }

    fn keyed(data: Value, key_columns: &'static [&'static str]) -> Output {
        Output {
            key_columns,
            ..Output::data(data)
        }
    }

    /// A page: JSON `{data, next_start_key}`, the table just the rows.
    fn page(page: Page) -> Output {
        let rows = Value::Array(page.rows);
        Output {
            json: json!({ "data": rows, "next_start_key": page.next_start_key }),
            note: page.next_start_key.map(|key| format!("more rows: --start-key {key}")),
            ..Output::data(rows)
        }
    }

    /// An unpaged listing: the rows alone.
    fn rows(page: Page) -> Output {
        Output::data(Value::Array(page.rows))
    }

    /// The text to print, without a trailing newline.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => serde_json::to_string_pretty(&self.json).unwrap_or_else(|_| self.json.to_string()),
            Format::Table => match &self.text {
                Some(text) => text.clone(),
                None => crate::table::render(&self.table, self.key_columns),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Table,
}

/// `--json` and `--table` decide; a command with its own text prints it unless `--json`;
/// otherwise a table on a terminal when the data is a list or map of rows and fits
/// `columns` (when known), JSON for scripts.
pub fn choose_format(args: &OpsOutputArgs, output: &Output, terminal: bool, columns: Option<usize>) -> Format {
    if args.json {
        return Format::Json;
    }
    if args.table || output.text.is_some() {
        return Format::Table;
    }
    if terminal && crate::table::is_tabular(&output.table) {
        let fits = columns.is_none_or(|columns| crate::table::width(&output.render(Format::Table)) <= columns);
        if fits {
            return Format::Table;
        }
    }
    Format::Json
}

/// Runs one `tally services` operation.
pub async fn services(
    ops: &Operations,
    caller: &Caller,
    operation: &ServicesOperation,
) -> Result<Output, CommandError> {
    use ServicesOperation as S;
    let output = match operation {
        S::Get(args) => Output::data(ops.services_plans(caller, &account(&args.account)?).await?),
        S::Update(args) => {
            let account = account(&args.account)?;
            let data = match read_data(&args.input)? {
                Some(data) => data,
                None => add_delete(&args.add, &args.delete),
            };
            Output::data(ops.update_services(caller, &account, &data, mode(args.merge)).await?)
        }
        S::BillingId(args) => Output::data(
            ops.set_billing_id(caller, &account(&args.account)?, &args.billing_id)
                .await?,
        ),
        S::Status(args) => {
            let account = account(&args.account)?;
            match status_data(args)? {
                Some(data) => Output::data(ops.set_services_status(caller, &account, &data).await?),
                None => Output::data(ops.services_status(caller, &account).await?),
            }
        }
        S::Assign(args) => {
            let account = account(&args.account)?;
            let data = assign_data(args.vendor.as_deref(), args.overrides.as_deref())?;
            Output::data(
                ops.assign_plan(caller, &account, &args.plan, &data, mode(args.merge))
                    .await?,
            )
        }
        S::Unassign(args) => Output::data(ops.unassign_plan(caller, &account(&args.account)?, &args.plan).await?),
        S::Manual(args) => {
            let account = account(&args.account)?;
            match manual_data(args)? {
                Some(data) => Output::data(
                    ops.set_manual_quantities(caller, &account, &data, mode(args.merge))
                        .await?,
                ),
                None => Output::data(ops.manual_quantities(caller, &account).await?),
            }
        }
        S::Overrides(args) => {
            let account = account(&args.account)?;
            match read_data(&args.input)? {
                Some(data) => Output::data(ops.set_overrides(caller, &account, &data, mode(args.merge)).await?),
                None => Output::data(ops.overrides(caller, &account).await?),
            }
        }
        S::Audit(args) => {
            let account = account(&args.account)?;
            let query = ListQuery {
                page_size: args.page_size,
                start_key: args.start_key.clone(),
                paginate: !args.all,
                ..range_query(&args.range)?
            };
            Output::page(ops.audit_logs(caller, &account, &query).await?)
        }
        S::AuditLog(args) => Output::data(ops.audit_log(caller, &account(&args.account)?, &args.audit_id).await?),
        S::AuditSummary(args) => {
            let account = account(&args.account)?;
            let query = range_query(&args.range)?;
            let data = ops
                .audit_summary(caller, &account, &query, args.source.as_deref())
                .await?;
            let keys: &'static [&'static str] = if args.source.is_some() {
                &["day"]
            } else {
                &["source", "day"]
            };
            Output::keyed(data, keys)
        }
        S::Quote(args) => {
            let account = args.account.as_deref().map(account).transpose()?;
            let data = required_data(&args.input)?;
            Output::data(ops.quote(caller, account.as_ref(), &data).await?)
        }
        S::Reconcile(args) => Output::data(ops.reconcile_account(caller, &account(&args.account)?).await?),
        S::Sync(args) => Output::data(ops.synchronize_account(caller, &account(&args.account)?).await?),
        S::Topup(args) => {
            let account = account(&args.account)?;
            Output::data(ops.topup(caller, &account, &topup_data(&args.amount)).await?)
        }
        S::Summary(args) => Output::data(ops.services_summary(caller, &account(&args.account)?).await?),
        S::Explain(args) => {
            let data = ops
                .explain(caller, &account(&args.account)?, args.item.as_deref())
                .await?;
            Output {
                text: Some(crate::explain_text::render(&data)),
                ..Output::data(data)
            }
        }
        S::Available(args) => {
            let account = account(&args.account)?;
            Output::rows(ops.available_plans(caller, &account, &unpaged(args.details)).await?)
        }
        S::Editable(args) => {
            let account = args.account.as_deref().map(account).transpose()?;
            Output::data(ops.editable(caller, account.as_ref()).await?)
        }
    };
    Ok(output)
}

/// Runs one `tally plans` operation.
pub async fn plans(ops: &Operations, caller: &Caller, operation: &PlansOperation) -> Result<Output, CommandError> {
    use PlansOperation as P;
    let output = match operation {
        P::List(args) => {
            let account = account(&args.account)?;
            Output::rows(ops.vendor_plans(caller, &account, &unpaged(args.details)).await?)
        }
        P::Get(args) => Output::data(ops.vendor_plan(caller, &account(&args.account)?, &args.plan).await?),
        P::Update(args) => {
            let account = account(&args.account)?;
            Output::data(
                ops.update_service_plans(caller, &account, &add_delete(&args.add, &args.delete))
                    .await?,
            )
        }
        P::Add(args) => Output::data(
            ops.add_service_plan(caller, &account(&args.account)?, &args.plan)
                .await?,
        ),
        P::Remove(args) => Output::data(
            ops.remove_service_plan(caller, &account(&args.account)?, &args.plan)
                .await?,
        ),
        P::Override(args) => {
            let account = account(&args.account)?;
            let data = required_data(&args.input)?;
            Output::data(ops.override_service_plans(caller, &account, &data).await?)
        }
        P::Current(args) => Output::data(ops.current_services(caller, &account(&args.account)?).await?),
        P::Available(args) => {
            let account = account(&args.account)?;
            match &args.plan {
                Some(plan) => Output::data(ops.available_plan(caller, &account, plan).await?),
                None => Output::rows(ops.available_plans(caller, &account, &unpaged(args.details)).await?),
            }
        }
        P::Import(args) => {
            let vendor = AccountId::parse(args.vendor.as_str()).map_err(|error| InputError::Invalid {
                flag: "--vendor".to_owned(),
                message: error.to_string(),
            })?;
            let documents = read_json_file(&args.file, "FILE")?;
            if args.dry_run {
                let data = ops.import_plans_impact(caller, &vendor, &documents).await?;
                return Ok(Output {
                    text: Some(crate::impact_text::render_import(&data)),
                    ..Output::data(data)
                });
            }
            let report = ops.import_plans(caller, &vendor, &documents).await?;
            let data = serde_json::to_value(&report).map_err(|error| OpsError::Fault(error.to_string()))?;
            Output::data(data)
        }
    };
    Ok(output)
}

fn account(text: &str) -> Result<AccountId, InputError> {
    AccountId::parse(text).map_err(|error| InputError::Invalid {
        flag: "ACCOUNT".to_owned(),
        message: error.to_string(),
    })
}

fn mode(merge: bool) -> WriteMode {
    if merge {
        WriteMode::Merge
    } else {
        WriteMode::Replace
    }
}

/// Every plan at once: the command line has no use for pages of plans.
fn unpaged(details: bool) -> ListQuery {
    ListQuery {
        paginate: false,
        details,
        ..ListQuery::default()
    }
}

/// `{add: [...], delete: [...]}`, each member only when given.
pub fn add_delete(add: &[String], delete: &[String]) -> Value {
    let mut data = Map::new();
    if !add.is_empty() {
        data.insert("add".to_owned(), json!(add));
    }
    if !delete.is_empty() {
        data.insert("delete".to_owned(), json!(delete));
    }
    Value::Object(data)
}

/// `{in_good_standing, reason?, reason_code?}` when setting (`--good`/`--bad`), `None`
/// to show. A numeric reason code is sent as a number (`api.md` §2.5).
pub fn status_data(args: &StatusArgs) -> Result<Option<Value>, InputError> {
    if !args.good && !args.bad {
        return Ok(None);
    }
    let mut data = Map::new();
    data.insert("in_good_standing".to_owned(), Value::Bool(args.good));
    if let Some(reason) = &args.reason {
        data.insert("reason".to_owned(), Value::String(reason.clone()));
    }
    if let Some(code) = &args.reason_code {
        let value = match integer(code) {
            Some(number) => Value::Number(number),
            None => Value::String(code.clone()),
        };
        data.insert("reason_code".to_owned(), value);
    }
    Ok(Some(Value::Object(data)))
}

/// An integer's exact text as a JSON number.
fn integer(text: &str) -> Option<serde_json::Number> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `assign`'s `{vendor_id?, overrides?}`.
pub fn assign_data(vendor: Option<&str>, overrides: Option<&str>) -> Result<Value, InputError> {
    let mut data = Map::new();
    if let Some(vendor) = vendor {
        data.insert("vendor_id".to_owned(), Value::String(vendor.to_owned()));
    }
    if let Some(text) = overrides {
        data.insert("overrides".to_owned(), parse_json(text, "--overrides")?);
    }
    Ok(Value::Object(data))
}

/// `{"amount": "AMOUNT"}`: the text as typed, so no digit is lost on the way.
pub fn topup_data(amount: &str) -> Value {
    json!({ "amount": amount })
}

/// The manual quantities to write (`--set`/`--data`/`--file`, then each `--set-item`
/// on top), or `None` to show them.
pub fn manual_data(args: &ManualArgs) -> Result<Option<Value>, InputError> {
    let base = match &args.set {
        Some(text) => Some(parse_json(text, "--set")?),
        None => read_data(&args.input)?,
    };
    if base.is_none() && args.set_items.is_empty() {
        return Ok(None);
    }
    let mut data = base.unwrap_or_else(|| Value::Object(Map::new()));
    for item in &args.set_items {
        set_item(&mut data, item)?;
    }
    Ok(Some(data))
}

/// Applies one `CATEGORY.ITEM=N` (`N` a non-negative integer or `null`) to `data`.
pub fn set_item(data: &mut Value, item: &str) -> Result<(), InputError> {
    let invalid = |message: &str| InputError::Invalid {
        flag: "--set-item".to_owned(),
        message: format!("{item}: {message}"),
    };
    let (path, quantity) = item
        .split_once('=')
        .ok_or_else(|| invalid("expected CATEGORY.ITEM=N"))?;
    let (category, name) = path
        .split_once('.')
        .filter(|(category, name)| !category.is_empty() && !name.is_empty())
        .ok_or_else(|| invalid("expected CATEGORY.ITEM=N"))?;
    let quantity = match quantity.trim() {
        "null" => Value::Null,
        text => match integer(text) {
            Some(number) if !text.starts_with('-') => Value::Number(number),
            _ => return Err(invalid("the quantity must be a non-negative integer or null")),
        },
    };
    let Value::Object(categories) = data else {
        return Err(invalid(
            "the quantities given with --set, --data or --file are not an object",
        ));
    };
    let entry = categories
        .entry(category.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(items) = entry else {
        return Err(invalid(&format!("{category} is not an object")));
    };
    items.insert(name.to_owned(), quantity);
    Ok(())
}

/// A listing's range and order; paging as [`ListQuery::new`].
pub fn range_query(range: &RangeArgs) -> Result<ListQuery, InputError> {
    Ok(ListQuery {
        created_from: range
            .from
            .as_deref()
            .map(|text| parse_when(text, false, "--from"))
            .transpose()?,
        created_to: range
            .to
            .as_deref()
            .map(|text| parse_when(text, true, "--to"))
            .transpose()?,
        ascending: range.ascending,
        ..ListQuery::new()
    })
}

/// Gregorian seconds, or a UTC date `YYYY-MM-DD`: its first second, or its last one
/// when `end_of_day` (so `--to` includes the whole day).
pub fn parse_when(text: &str, end_of_day: bool, flag: &str) -> Result<i64, InputError> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    let invalid = || InputError::Invalid {
        flag: flag.to_owned(),
        message: format!("expected Gregorian seconds or a date YYYY-MM-DD, found {text:?}"),
    };
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| invalid())?;
    let time = if end_of_day {
        day.and_hms_opt(23, 59, 59)
    } else {
        day.and_hms_opt(0, 0, 0)
    }
    .ok_or_else(invalid)?;
    Ok(GregorianSeconds::from_utc(time.and_utc()).0)
}

/// Parses a flag's JSON text, exactly (numbers keep their digits).
pub fn parse_json(text: &str, flag: &str) -> Result<Value, InputError> {
    serde_json::from_str(text).map_err(|error| InputError::Json {
        flag: flag.to_owned(),
        error,
    })
}

/// The `--data` JSON or the `--file` contents, if either was given.
pub fn read_data(input: &DataArgs) -> Result<Option<Value>, InputError> {
    if let Some(text) = &input.data {
        return parse_json(text, "--data").map(Some);
    }
    input
        .file
        .as_deref()
        .map(|path| read_json_file(path, "--file"))
        .transpose()
}

fn required_data(input: &DataArgs) -> Result<Value, InputError> {
    read_data(input)?.ok_or_else(|| InputError::Invalid {
        flag: "--data".to_owned(),
        message: "an input is required: --data JSON or --file PATH".to_owned(),
    })
}

/// A JSON file, `-` for standard input; errors name the file.
pub fn read_json_file(path: &Path, flag: &str) -> Result<Value, InputError> {
    let name = if path == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    };
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|error| InputError::Unreadable {
        name: name.clone(),
        error,
    })?;
    parse_json(&text, &format!("{flag} {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::FieldError;

    fn manual(set: Option<&str>, items: &[&str]) -> ManualArgs {
        ManualArgs {
            account: "a".to_owned(),
            set: set.map(str::to_owned),
            set_items: items.iter().map(|item| (*item).to_owned()).collect(),
            input: DataArgs::default(),
            merge: false,
        }
    }

    fn status(good: bool, bad: bool, reason: Option<&str>, code: Option<&str>) -> StatusArgs {
        StatusArgs {
            account: "a".to_owned(),
            good,
            bad,
            reason: reason.map(str::to_owned),
            reason_code: code.map(str::to_owned),
        }
    }

    #[test]
    fn add_and_delete_flags_become_the_update_data() {
        let strings = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            add_delete(&strings(&["a", "b"]), &strings(&["c"])),
            json!({"add": ["a", "b"], "delete": ["c"]})
        );
        assert_eq!(add_delete(&strings(&["a"]), &[]), json!({"add": ["a"]}));
        assert_eq!(add_delete(&[], &strings(&["c"])), json!({"delete": ["c"]}));
        assert_eq!(add_delete(&[], &[]), json!({}));
    }

    #[test]
    fn set_item_builds_nested_quantities_on_top_of_set() {
        let data = manual_data(&manual(
            None,
            &["devices.sip_device=3", "devices.softphone=0", "users.user=null"],
        ))
        .expect("valid")
        .expect("a write");
        assert_eq!(
            data,
            json!({"devices": {"sip_device": 3, "softphone": 0}, "users": {"user": null}})
        );
        let data = manual_data(&manual(
            Some(r#"{"devices": {"sip_device": 1}, "users": {"admin": 2}}"#),
            &["devices.sip_device=4"],
        ))
        .expect("valid")
        .expect("a write");
        assert_eq!(data, json!({"devices": {"sip_device": 4}, "users": {"admin": 2}}));
        assert_eq!(
            manual_data(&manual(None, &[])).expect("valid"),
            None,
            "nothing to set: show"
        );
    }

    #[test]
    fn a_bad_set_item_names_the_flag_and_the_item() {
        for item in [
            "devices=3",
            "devices.sip_device",
            "devices.x=-1",
            "devices.x=1.5",
            ".x=1",
            "devices.=1",
            "d.x=abc",
        ] {
            let error = manual_data(&manual(None, &[item])).expect_err(item);
            assert!(
                matches!(&error, InputError::Invalid { flag, .. } if flag == "--set-item"),
                "{item}: {error}"
            );
            assert!(error.to_string().contains(item), "{error}");
        }
        let error = manual_data(&manual(Some("[1]"), &["a.b=1"])).expect_err("not an object");
        assert!(error.to_string().starts_with("--set-item"), "{error}");
        let error = manual_data(&manual(Some(r#"{"a": 1}"#), &["a.b=1"])).expect_err("category not an object");
        assert!(error.to_string().contains("a is not an object"), "{error}");
    }

    #[test]
    fn invalid_json_names_its_flag_and_is_a_data_error() {
        let error = manual_data(&manual(Some("{devices"), &[])).expect_err("not JSON");
        assert!(error.to_string().starts_with("--set: invalid JSON: "), "{error}");
        let error = assign_data(None, Some("{")).expect_err("not JSON");
        assert!(error.to_string().starts_with("--overrides: invalid JSON"), "{error}");
        let error = read_data(&DataArgs {
            data: Some("nope".to_owned()),
            file: None,
        })
        .expect_err("not JSON");
        assert!(error.to_string().starts_with("--data: invalid JSON"), "{error}");
        assert_eq!(CommandError::from(error).exit_code(), ExitCode::DataErrors);
    }

    #[test]
    fn a_missing_file_is_a_usage_error_naming_the_file() {
        let input = DataArgs {
            data: None,
            file: Some("/nonexistent/tally-data.json".into()),
        };
        let error = read_data(&input).expect_err("missing");
        assert!(error.to_string().contains("/nonexistent/tally-data.json"), "{error}");
        assert_eq!(CommandError::from(error).exit_code(), ExitCode::Usage);
    }

    #[test]
    fn json_inputs_keep_exact_numbers() {
        let data = assign_data(
            Some("r1"),
            Some(r#"{"plan": {"devices": {"sip_device": {"rate": 0.10}}}}"#),
        )
        .expect("valid");
        assert_eq!(
            data.to_string(),
            r#"{"vendor_id":"r1","overrides":{"plan":{"devices":{"sip_device":{"rate":0.10}}}}}"#
        );
        assert_eq!(assign_data(None, None).expect("valid"), json!({}));
        assert_eq!(topup_data("25.50").to_string(), r#"{"amount":"25.50"}"#);
    }

    #[test]
    fn status_flags_become_the_standing_data() {
        assert_eq!(status_data(&status(false, false, None, None)).expect("ok"), None);
        assert_eq!(
            status_data(&status(true, false, None, None)).expect("ok"),
            Some(json!({"in_good_standing": true}))
        );
        assert_eq!(
            status_data(&status(false, true, Some("unpaid"), Some("402"))).expect("ok"),
            Some(json!({"in_good_standing": false, "reason": "unpaid", "reason_code": 402}))
        );
        assert_eq!(
            status_data(&status(false, true, Some("unpaid"), Some("card_declined"))).expect("ok"),
            Some(json!({"in_good_standing": false, "reason": "unpaid", "reason_code": "card_declined"}))
        );
    }

    #[test]
    fn dates_are_whole_utc_days_and_seconds_pass_through() {
        // 2026-11-23T00:00:00Z in Gregorian seconds.
        let midnight = 62_167_219_200 + 1_795_392_000;
        assert_eq!(parse_when("2026-11-23", false, "--from").expect("date"), midnight);
        assert_eq!(parse_when("2026-11-23", true, "--to").expect("date"), midnight + 86_399);
        assert_eq!(
            parse_when("63900000000", true, "--to").expect("seconds"),
            63_900_000_000
        );
        for bad in ["2026-13-01", "23/11/2026", "yesterday", ""] {
            let error = parse_when(bad, false, "--from").expect_err(bad);
            assert!(
                error.to_string().starts_with("--from: expected Gregorian seconds"),
                "{error}"
            );
        }
        let query = range_query(&RangeArgs {
            from: Some("2026-11-23".to_owned()),
            to: Some("2026-11-23".to_owned()),
            ascending: true,
        })
        .expect("valid");
        assert_eq!(
            query,
            ListQuery {
                created_from: Some(midnight),
                created_to: Some(midnight + 86_399),
                ascending: true,
                ..ListQuery::new()
            }
        );
        let error = range_query(&RangeArgs {
            to: Some("soon".to_owned()),
            ..RangeArgs::default()
        })
        .expect_err("bad --to");
        assert!(error.to_string().starts_with("--to: "), "{error}");
    }

    #[test]
    fn the_operator_is_as_then_user_then_logname_then_unknown() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        assert_eq!(operator_name(Some("alice"), env(&[("USER", "bob")])), "alice");
        assert_eq!(
            operator_name(None, env(&[("USER", "bob"), ("LOGNAME", "carol")])),
            "bob"
        );
        assert_eq!(operator_name(None, env(&[("USER", ""), ("LOGNAME", "carol")])), "carol");
        assert_eq!(operator_name(None, env(&[])), "unknown");
        assert_eq!(
            Caller::operator(&operator_name(None, env(&[("LOGNAME", "carol")]))).audit,
            json!({"agent": {"type": "operator", "user": "carol"}})
        );
    }

    #[test]
    fn every_refusal_has_its_exit_code() {
        let table = [
            (OpsError::Forbidden, 77),
            (OpsError::BadIdentifier { cause: "x".to_owned() }, 65),
            (
                OpsError::Validation(vec![FieldError::new("amount", "required", "missing")]),
                65,
            ),
            (OpsError::PlanNotAssigned { plan: "p".to_owned() }, 65),
            (OpsError::InvalidBillingId { reason: "r".to_owned() }, 65),
            (OpsError::NoPaymentToken, 1),
            (
                OpsError::SaleNotCompleted {
                    reason: None,
                    transaction: json!({}),
                },
                1,
            ),
            (OpsError::Fault("boom".to_owned()), 1),
        ];
        for (error, code) in table {
            assert_eq!(ops_exit_code(&error).code(), code, "{error}");
            assert_eq!(CommandError::from(error).exit_code().code(), code);
        }
    }

    #[test]
    fn validation_errors_name_every_field() {
        let error = CommandError::from(OpsError::Validation(vec![
            FieldError::new("devices.sip_device", "type", "must be a non-negative integer"),
            FieldError::new("users.user", "type", "must be a non-negative integer"),
        ]));
        assert_eq!(
            error.to_string(),
            "validation error: devices.sip_device: must be a non-negative integer; users.user: must be a non-negative integer"
        );
    }

    #[test]
    fn pages_print_rows_and_the_next_key() {
        let page = Page {
            rows: vec![json!({"id": "a"})],
            page_size: Some(1),
            start_key: None,
            next_start_key: Some("k2".to_owned()),
        };
        let output = Output::page(page);
        assert_eq!(output.json, json!({"data": [{"id": "a"}], "next_start_key": "k2"}));
        assert_eq!(output.table, json!([{"id": "a"}]));
        assert_eq!(output.note.as_deref(), Some("more rows: --start-key k2"));
    }

    #[test]
    fn the_format_is_json_for_scripts_and_a_table_on_a_terminal_when_it_fits() {
        let rows = Output::data(json!([{"id": "a", "name": "Plan A"}]));
        let object = Output::data(json!({"in_good_standing": true}));
        let flags = |table: bool, json: bool| OpsOutputArgs {
            as_user: None,
            table,
            json,
        };
        assert_eq!(choose_format(&flags(false, false), &rows, false, None), Format::Json);
        assert_eq!(choose_format(&flags(false, false), &rows, true, None), Format::Table);
        assert_eq!(choose_format(&flags(false, false), &rows, true, Some(5)), Format::Json);
        assert_eq!(choose_format(&flags(false, true), &rows, true, None), Format::Json);
        assert_eq!(choose_format(&flags(false, false), &object, true, None), Format::Json);
        assert_eq!(choose_format(&flags(true, false), &object, false, None), Format::Table);
        assert_eq!(object.render(Format::Json), "{\n  \"in_good_standing\": true\n}");
    }
}
