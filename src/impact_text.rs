//! The readable form of a change's impact (`tally plans import --dry-run`): the
//! operation's JSON answer (`wire::impact`) as a table for people, largest change first,
//! then the sums per reseller. Only rewords the JSON; `--json` prints it as it is.

use serde_json::Value;
use std::fmt::Write;

/// Text (no trailing newline) of a plan import dry run's answer.
pub fn render_import(answer: &Value) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "dry run, nothing written: plans created {}, updated {}, unchanged {}",
        ids(&answer["created"]),
        ids(&answer["updated"]),
        ids(&answer["unchanged"])
    );
    render_impact(&mut out, &answer["impact"]);
    out
}

fn ids(list: &Value) -> String {
    let names: Vec<String> = list.as_array().into_iter().flatten().map(plain).collect();
    match names.is_empty() {
        true => "none".to_owned(),
        false => names.join(", "),
    }
}

/// The accounts, their changed lines and the reseller sums.
fn render_impact(out: &mut String, impact: &Value) {
    let accounts = impact["accounts"].as_array().map(Vec::as_slice).unwrap_or_default();
    let _ = write!(
        out,
        "\n{} account{} assigned a changed plan, {} with a different invoice",
        plain(&impact["accounts_touched"]),
        if impact["accounts_touched"] == 1 { "" } else { "s" },
        accounts.len()
    );
    if !accounts.is_empty() {
        let _ = write!(
            out,
            "\n\n{:<32}  {:<32}  {:>12}  {:>12}  {:>12}",
            "account", "reseller", "old", "new", "difference"
        );
    }
    for account in accounts {
        let _ = write!(
            out,
            "\n{:<32}  {:<32}  {:>12}  {:>12}  {:>12}",
            plain(&account["account_id"]),
            plain(&account["reseller_id"]),
            plain(&account["old_recurring"]),
            plain(&account["new_recurring"]),
            signed(&account["difference"])
        );
        for item in account["items"].as_array().into_iter().flatten() {
            let _ = write!(
                out,
                "\n    {}.{} {}: {} -> {}",
                plain(&item["category"]),
                plain(&item["item"]),
                plain(&item["change"]),
                plain(&item["old_total"]),
                plain(&item["new_total"])
            );
        }
    }
    let resellers = impact["resellers"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !resellers.is_empty() {
        let _ = write!(
            out,
            "\n\nper reseller\n{:<32}  {:>8}  {:>12}  {:>12}  {:>12}",
            "reseller", "accounts", "old", "new", "difference"
        );
    }
    for reseller in resellers {
        let _ = write!(
            out,
            "\n{:<32}  {:>8}  {:>12}  {:>12}  {:>12}",
            plain(&reseller["reseller_id"]),
            plain(&reseller["accounts"]),
            plain(&reseller["old_recurring"]),
            plain(&reseller["new_recurring"]),
            signed(&reseller["difference"])
        );
    }
    for skipped in impact["skipped"].as_array().into_iter().flatten() {
        let _ = write!(
            out,
            "\nskipped {}: {}",
            plain(&skipped["account_id"]),
            plain(&skipped["reason"])
        );
    }
}

/// A difference with its sign: `+6`, `-2.5`, `0`.
fn signed(value: &Value) -> String {
    let text = plain(value);
    match text.starts_with('-') || text == "0" {
        true => text,
        false => format!("+{text}"),
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_carry_their_sign() {
        assert_eq!(signed(&json!(6)), "+6");
        assert_eq!(signed(&json!(-2.5)), "-2.5");
        assert_eq!(signed(&json!(0)), "0");
    }
}
