//! The JSON form of a change's impact (`tally plans import --dry-run`, `?dry_run=true`
//! on the API's plan and override writes): money as exact JSON numbers like invoices,
//! every figure read from the domain's report, none recomputed here.

use super::document::Amount;
use crate::domain::impact::{AccountImpact, LineChange, ResellerImpact};
use crate::domain::{AccountId, Money};
use crate::jobs::impact::ImpactRun;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `{accounts_touched, accounts_changed, accounts: [..], resellers: [..], skipped: [..]}`.
pub fn impact(run: &ImpactRun) -> Value {
    let resellers = reseller_totals(&run.report.resellers);
    let skipped: Vec<Value> = run
        .skipped
        .iter()
        .map(|skipped| json!({ "account_id": skipped.account.as_str(), "reason": skipped.reason }))
        .collect();
    json!({
        "accounts_touched": run.accounts_touched,
        "accounts_changed": run.report.accounts.len(),
        "accounts": run.report.accounts.iter().map(account).collect::<Vec<_>>(),
        "resellers": resellers,
        "skipped": skipped,
    })
}

/// The per-reseller sums of an impact or a billing dry run:
/// `[{reseller_id, accounts, old_recurring, new_recurring, difference}]`, by reseller id.
pub fn reseller_totals(resellers: &BTreeMap<AccountId, ResellerImpact>) -> Value {
    resellers
        .iter()
        .map(|(reseller, totals)| {
            json!({
                "reseller_id": reseller.as_str(),
                "accounts": totals.accounts,
                "old_recurring": amount(totals.old_recurring),
                "new_recurring": amount(totals.new_recurring),
                "difference": amount(totals.difference),
            })
        })
        .collect()
}

fn amount(money: Money) -> Value {
    serde_json::to_value(Amount(money)).expect("an amount is a JSON number")
}

fn account(impact: &AccountImpact) -> Value {
    json!({
        "account_id": impact.account.as_str(),
        "reseller_id": impact.reseller.as_str(),
        "old_recurring": amount(impact.old_recurring),
        "new_recurring": amount(impact.new_recurring),
        "difference": amount(impact.difference),
        "items": impact.lines.iter().map(line).collect::<Vec<_>>(),
    })
}

fn line(change: &LineChange) -> Value {
    let bookkeeper = &change.bookkeeper;
    json!({
        "bookkeeper": { "type": bookkeeper.kind, "vendor_id": bookkeeper.vendor_id, "id": bookkeeper.id },
        "category": change.category.as_str(),
        "item": change.item,
        "plan_item": change.plan_item.as_str(),
        "change": change.kind.as_str(),
        "old_total": amount(change.old_total),
        "new_total": amount(change.new_total),
    })
}
