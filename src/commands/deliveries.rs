//! `tally deliveries [retry]`: what waits in the delivery queue, and "retry now".

use super::{open_store, parse_accounts};
use crate::Failure;
use std::io::Write;
use std::process::ExitCode;
use tally::cli::{DeliveriesArgs, DeliveriesListArgs, DeliveriesOperation, DeliveriesRetryArgs};
use tally::config::Settings;
use tally::domain::summary::GregorianSeconds;
use tally::domain::AccountId;
use tally::jobs::bookkeeper_sync::{pending_json, pending_text, rfc3339};
use tally::store::WaitingDelivery;

fn now() -> GregorianSeconds {
    GregorianSeconds::from_utc(chrono::Utc::now())
}

fn account(text: &Option<String>) -> Result<Option<AccountId>, Failure> {
    match text {
        Some(text) => Ok(parse_accounts(std::slice::from_ref(text))?.pop()),
        None => Ok(None),
    }
}

pub(crate) async fn run(settings: &Settings, args: &DeliveriesArgs) -> Result<ExitCode, Failure> {
    match &args.operation {
        None => list(settings, &args.list).await,
        Some(DeliveriesOperation::Retry(retry_args)) => retry(settings, retry_args).await,
    }
}

async fn list(settings: &Settings, args: &DeliveriesListArgs) -> Result<ExitCode, Failure> {
    let only = account(&args.account)?;
    let store = open_store(settings).await?;
    let now = now();
    let waiting = store
        .waiting_deliveries(now, only.as_ref(), args.limit)
        .await
        .map_err(anyhow::Error::from)?;
    let pending = store
        .pending_deliveries(now, only.as_ref())
        .await
        .map_err(anyhow::Error::from)?;
    store.close().await;
    if args.json {
        let deliveries: Vec<serde_json::Value> = waiting.iter().map(delivery_json).collect();
        let value = serde_json::json!({"deliveries": deliveries, "pending": pending_json(&pending)});
        return output(&format!("{value}\n"));
    }
    let rows: Vec<[String; 6]> = waiting
        .iter()
        .map(|delivery| {
            [
                delivery.account.clone(),
                bookkeeper(delivery),
                delivery.attempts.to_string(),
                delivery.next_attempt_at.map_or_else(|| "-".to_owned(), rfc3339),
                delivery.state.as_str().to_owned(),
                delivery.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut text = table(&rows);
    let shown = u64::try_from(waiting.len()).unwrap_or(u64::MAX);
    if pending.total() > shown {
        text.push_str(&format!("… {} more (--limit)\n", pending.total() - shown));
    }
    text.push_str(&pending_text(&pending).unwrap_or_else(|| "no deliveries pending".to_owned()));
    text.push('\n');
    output(&text)
}

/// Writes to standard output; a closed pipe (`| head`) is not a panic.
fn output(text: &str) -> Result<ExitCode, Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(error) => Err(Failure::Other(anyhow::anyhow!("cannot write the output: {error}"))),
    }
}

async fn retry(settings: &Settings, args: &DeliveriesRetryArgs) -> Result<ExitCode, Failure> {
    let only = account(&args.account)?;
    let store = open_store(settings).await?;
    let now = now();
    let made_due = store
        .retry_deliveries(now, only.as_ref())
        .await
        .map_err(anyhow::Error::from)?;
    let pending = store
        .pending_deliveries(now, only.as_ref())
        .await
        .map_err(anyhow::Error::from)?;
    store.close().await;
    if args.json {
        let value = serde_json::json!({"made_due": made_due, "pending": pending_json(&pending)});
        return output(&format!("{value}\n"));
    }
    let mut text = format!("{made_due} deliveries made due now; the next bookkeeper-sync or billing run sends them\n");
    if pending.leased > 0 {
        text.push_str(&format!(
            "{} deliveries are leased by a worker and left to it until the lease ends\n",
            pending.leased
        ));
    }
    output(&text)
}

fn bookkeeper(delivery: &WaitingDelivery) -> String {
    format!(
        "{}/{}/{}",
        delivery.bookkeeper.kind, delivery.bookkeeper.vendor_id, delivery.bookkeeper.id
    )
}

fn delivery_json(delivery: &WaitingDelivery) -> serde_json::Value {
    serde_json::json!({
        "delivery_id": delivery.delivery_id,
        "account_id": delivery.account,
        "bookkeeper": {
            "type": delivery.bookkeeper.kind,
            "vendor_id": delivery.bookkeeper.vendor_id,
            "id": delivery.bookkeeper.id,
        },
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at.map(rfc3339),
        "lease_until": delivery.lease_until.map(rfc3339),
        "last_error": delivery.last_error,
        "state": delivery.state.as_str(),
    })
}

/// A plain left-aligned table with a header; the last column (the error) unpadded.
fn table(rows: &[[String; 6]]) -> String {
    let header = [
        "ACCOUNT",
        "BOOKKEEPER",
        "ATTEMPTS",
        "NEXT ATTEMPT",
        "STATE",
        "LAST ERROR",
    ]
    .map(str::to_owned);
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(tally::table::width(cell));
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index == row.len() - 1 {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[index] - tally::table::width(cell) + 2));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}
