//! `tally accounts list|get|tree|find`: finding the account a `tally services`
//! command needs, and seeing where it sits. Reads only; one statement each.

use super::open_store;
use crate::{Failure, EXIT_DATA_ERROR};
use std::process::ExitCode;
use tally::cli::{AccountsFindArgs, AccountsGetArgs, AccountsListArgs, AccountsTreeArgs};
use tally::config::Settings;
use tally::store::{AccountListing, StoreError};

/// An account as JSON: the fields `--json` prints and the table's columns.
fn listing_json(account: &AccountListing) -> serde_json::Value {
    serde_json::json!({
        "id": account.id,
        "name": account.name,
        "reseller_id": account.reseller_id,
        "parent_id": account.parent_id,
        "is_reseller": account.is_reseller,
        "standing": account.standing,
        "plans": account.plans.join(","),
        "enabled": account.enabled,
        "deleted": account.deleted,
    })
}

/// JSON lines, or one table with a header (`-` for an empty cell).
fn print_listings(accounts: &[AccountListing], json: bool) {
    if json {
        for account in accounts {
            let mut line = listing_json(account);
            line["plans"] = serde_json::json!(account.plans);
            println!("{line}");
        }
        return;
    }
    if accounts.is_empty() {
        return;
    }
    let rows: Vec<serde_json::Value> = accounts.iter().map(listing_json).collect();
    println!("{}", tally::table::render(&serde_json::Value::Array(rows), &[]));
}

fn store_error(error: StoreError) -> Failure {
    Failure::Other(error.into())
}

pub(crate) async fn run_list(settings: &Settings, args: &AccountsListArgs) -> Result<ExitCode, Failure> {
    let store = open_store(settings).await?;
    let accounts = store.list_accounts(args.after.as_deref(), args.limit).await;
    store.close().await;
    print_listings(&accounts.map_err(store_error)?, args.json);
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn run_find(settings: &Settings, args: &AccountsFindArgs) -> Result<ExitCode, Failure> {
    let store = open_store(settings).await?;
    let accounts = store.find_accounts(&args.text, args.limit).await;
    store.close().await;
    print_listings(&accounts.map_err(store_error)?, args.json);
    Ok(ExitCode::SUCCESS)
}

/// One account, every field; exit 65 when it is not stored.
pub(crate) async fn run_get(settings: &Settings, args: &AccountsGetArgs) -> Result<ExitCode, Failure> {
    let store = open_store(settings).await?;
    let account = store.account_listing(&args.account).await;
    store.close().await;
    let Some(account) = account.map_err(store_error)? else {
        tell!(ERROR, "account {} does not exist", args.account);
        return Ok(ExitCode::from(EXIT_DATA_ERROR));
    };
    let mut value = listing_json(&account);
    value["plans"] = serde_json::json!(account.plans);
    value["standing_reason"] = serde_json::json!(account.standing_reason);
    match args.json {
        true => println!("{value}"),
        false => println!("{}", tally::table::render(&value, &[])),
    }
    Ok(ExitCode::SUCCESS)
}

/// The hierarchy, two spaces per level: `id  name  [reseller] standing plans`.
pub(crate) async fn run_tree(settings: &Settings, args: &AccountsTreeArgs) -> Result<ExitCode, Failure> {
    let store = open_store(settings).await?;
    let accounts = store.account_tree(args.account.as_deref(), args.limit).await;
    store.close().await;
    let accounts = accounts.map_err(store_error)?;
    if let Some(top) = &args.account {
        if accounts.is_empty() {
            tell!(ERROR, "account {top} does not exist");
            return Ok(ExitCode::from(EXIT_DATA_ERROR));
        }
    }
    for account in &accounts {
        if args.json {
            let mut line = listing_json(account);
            line["plans"] = serde_json::json!(account.plans);
            line["depth"] = serde_json::json!(account.depth);
            println!("{line}");
            continue;
        }
        let indent = "  ".repeat(usize::try_from(account.depth).unwrap_or(usize::MAX).min(64));
        let mut notes = Vec::new();
        if account.is_reseller {
            notes.push("reseller".to_owned());
        }
        if account.standing != "good_standing" {
            notes.push(account.standing.clone());
        }
        if account.deleted {
            notes.push("deleted".to_owned());
        } else if !account.enabled {
            notes.push("disabled".to_owned());
        }
        if !account.plans.is_empty() {
            notes.push(format!("plans: {}", account.plans.join(",")));
        }
        let notes = match notes.is_empty() {
            true => String::new(),
            false => format!("  [{}]", notes.join("; ")),
        };
        println!("{indent}{}  {}{notes}", account.id, account.name);
    }
    if u64::try_from(accounts.len()).unwrap_or(u64::MAX) >= args.limit {
        tell!(WARN, "the tree was cut at --limit {} accounts", args.limit);
    }
    Ok(ExitCode::SUCCESS)
}
