//! `tally run billing --dry-run` (issue 15 item 2) on SQLite and PostgreSQL: after an
//! inventory change on the demo, the dry run writes nothing (every table's row count,
//! the quantities, the dirty flags and the reconcile marks as they were) and lists
//! exactly the invoices the real billing run then changes, with the same new totals,
//! and exactly the deliveries it sends to a loopback bookkeeper; deliveries already
//! queued are listed too, and a change joins the queued rows of its bookkeeper or
//! waits behind its delivery in flight; the binary prints one JSON record per line, the summary
//! last with its status first.

use crate::demo::load_demo;
use crate::fake_bookkeeper::FakeBookkeeper;
use crate::helpers::{at, on_both_backends, TestStore};
use std::collections::BTreeSet;
use tally::bookkeepers::http::ACCOUNT_ID_HEADER;
use tally::config::Settings;
use tally::demo::DemoSpec;
use tally::domain::AccountId;
use tally::jobs::billing_preview::{BillingPreview, DeliveryPlan, DeliveryPreview, InvoicePreview, PreviewSink};
use tally::jobs::context::{JobContext, RunScope};
use tally::store::{DeliveryState, Store};
use tokio_util::sync::CancellationToken;

const T0: i64 = 63_965_851_200;
const T1: i64 = T0 + 86_400;

/// Every table billing may write, and a few sums that change without adding rows.
const TABLES: &[&str] = &[
    "accounts",
    "services",
    "service_quantities",
    "reconcile_marks",
    "reconcile_full_requests",
    "quantity_change_records",
    "quantity_day_summaries",
    "invoice_snapshots",
    "audit_logs",
    "deliveries",
    "runs",
    "ingest_state",
];

async fn state(store: &Store) -> Vec<(String, i64)> {
    let mut figures = Vec::new();
    for table in TABLES {
        let count = store
            .query_count(&format!("SELECT COUNT(*) FROM {table}"))
            .await
            .expect("counts");
        figures.push((table.to_string(), count));
    }
    for (name, sql) in [
        ("dirty accounts", "SELECT COUNT(*) FROM services WHERE dirty"),
        (
            "sum of quantities",
            "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM service_quantities",
        ),
        (
            "sum of dirty_since",
            "SELECT CAST(COALESCE(SUM(dirty_since), 0) AS BIGINT) FROM services",
        ),
        (
            "sum of recurring units",
            "SELECT CAST(COALESCE(SUM(recurring_units), 0) AS BIGINT) FROM invoice_snapshots",
        ),
    ] {
        figures.push((name.to_owned(), store.query_count(sql).await.expect("sums")));
    }
    figures
}

/// Keeps what the dry run streams (a test may; the command line prints and drops).
#[derive(Default)]
struct Collected {
    invoices: Vec<InvoicePreview>,
    deliveries: Vec<DeliveryPreview>,
}

impl PreviewSink for Collected {
    fn delivery(&mut self, delivery: &DeliveryPreview) -> std::io::Result<()> {
        self.deliveries.push(delivery.clone());
        Ok(())
    }

    fn invoice(&mut self, invoice: &InvoicePreview) -> std::io::Result<()> {
        self.invoices.push(invoice.clone());
        Ok(())
    }
}

fn context(store: &Store, bookkeeper: Option<&FakeBookkeeper>) -> JobContext {
    let mut settings = Settings::default();
    if let Some(bookkeeper) = bookkeeper {
        settings.bookkeepers.http.http_url = bookkeeper.url();
    }
    JobContext::new(store.clone(), settings).expect("context")
}

async fn dry_run(context: &JobContext, now: i64) -> (BillingPreview, Collected) {
    let mut collected = Collected::default();
    let preview = context
        .billing_preview(&RunScope::default(), at(now), CancellationToken::new(), &mut collected)
        .await
        .expect("the dry run runs");
    (preview, collected)
}

async fn billing(context: &JobContext, now: i64) -> tally::jobs::billing::BillingReport {
    context
        .billing(&RunScope::default(), at(now), CancellationToken::new(), &|_| {})
        .await
        .expect("billing runs")
}

/// Accounts that got a delivery, from the requests after the first `skip`.
fn delivered_accounts(bookkeeper: &FakeBookkeeper, skip: usize) -> Vec<String> {
    let mut accounts: Vec<String> = bookkeeper
        .requests()
        .iter()
        .skip(skip)
        .map(|request| request.header(ACCOUNT_ID_HEADER).expect("account header").to_owned())
        .collect();
    accounts.sort();
    accounts
}

async fn a_billing_dry_run_lists_what_billing_then_changes_and_writes_nothing(store: &Store) {
    load_demo(store, DemoSpec { accounts: 80, seed: 1 }).await;
    let bookkeeper = FakeBookkeeper::start().await;
    let context = context(store, Some(&bookkeeper));
    billing(&context, T0).await;
    let delivered_before = bookkeeper.requests().len();
    // Numbers leave accounts billed through the HTTP bookkeeper, users join accounts
    // billed by the default one: the triggers mark them, their ancestors' cascades move.
    store
        .execute_script(
            "UPDATE phone_numbers SET deleted = TRUE WHERE id IN (SELECT p.id FROM phone_numbers p \
               WHERE NOT p.deleted AND p.account_id IN (SELECT account_id FROM invoice_snapshots \
               WHERE kind = 'computed' AND bookkeeper_type = 'http') ORDER BY p.id LIMIT 4);
             INSERT INTO users (id, account_id) SELECT 'dry-run-' || account_id, account_id FROM \
               (SELECT DISTINCT account_id FROM invoice_snapshots WHERE kind = 'computed' \
                AND bookkeeper_type = 'default' ORDER BY account_id LIMIT 3) chosen;",
        )
        .await
        .expect("inventory changes");
    let before = state(store).await;

    let (preview, collected) = dry_run(&context, T1).await;

    assert_eq!(state(store).await, before, "the dry run wrote nothing");
    assert_eq!(
        bookkeeper.requests().len(),
        delivered_before,
        "the dry run sent nothing"
    );
    assert!(preview.reconcile.accounts_changed > 0, "{preview:?}");
    assert!(
        collected
            .invoices
            .iter()
            .any(|invoice| invoice.delivery == DeliveryPlan::New),
        "an HTTP invoice changes: {:?}",
        collected.invoices
    );
    assert!(
        collected
            .invoices
            .iter()
            .any(|invoice| invoice.delivery == DeliveryPlan::CallFree),
        "a default invoice changes"
    );
    assert!(
        collected.deliveries.is_empty(),
        "nothing was queued after the first run"
    );
    assert_eq!(preview.invoices_changed, collected.invoices.len());
    for invoice in &collected.invoices {
        assert!(!invoice.lines.is_empty(), "every changed invoice shows its lines");
    }

    let billed = billing(&context, T1).await;

    let synced = billed.sync.as_ref().expect("sync ran");
    assert_eq!(synced.invoices_changed, preview.invoices_changed);
    assert_eq!(billed.reconcile.accounts_changed, preview.reconcile.accounts_changed);
    let written = store
        .query_count(&format!("SELECT COUNT(*) FROM audit_logs WHERE created_at = {T1}"))
        .await
        .expect("counts");
    assert_eq!(
        written,
        collected.invoices.len() as i64,
        "one audit row per listed invoice"
    );
    for invoice in &collected.invoices {
        let bookkeeper_is = format!(
            "bookkeeper_type = '{}' AND bookkeeper_vendor_id = '{}' AND bookkeeper_id = '{}'",
            invoice.bookkeeper.kind, invoice.bookkeeper.vendor_id, invoice.bookkeeper.id
        );
        let audit_rows = store
            .query_count(&format!(
                "SELECT COUNT(*) FROM audit_logs WHERE created_at = {T1} AND account_id = '{}' AND {bookkeeper_is}",
                invoice.account
            ))
            .await
            .expect("counts");
        assert_eq!(audit_rows, 1, "{} {}", invoice.account, invoice.bookkeeper);
        let units = invoice.new_recurring.to_units().expect("units");
        let snapshots = store
            .query_count(&format!(
                "SELECT COUNT(*) FROM invoice_snapshots WHERE kind = 'computed' AND account_id = '{}' \
                 AND {bookkeeper_is} AND recurring_units = {units}",
                invoice.account
            ))
            .await
            .expect("counts");
        assert_eq!(
            snapshots, 1,
            "{} {}: new total {}",
            invoice.account, invoice.bookkeeper, invoice.new_recurring
        );
    }
    let mut announced: Vec<String> = collected
        .invoices
        .iter()
        .filter(|invoice| invoice.delivery == DeliveryPlan::New)
        .map(|invoice| invoice.account.to_string())
        .collect();
    announced.sort();
    assert_eq!(delivered_accounts(&bookkeeper, delivered_before), announced);
    assert_eq!(preview.deliveries.sent(), announced.len());
}

async fn a_billing_dry_run_lists_the_deliveries_already_waiting(store: &Store) {
    load_demo(store, DemoSpec { accounts: 40, seed: 2 }).await;
    // The first night has no HTTP bookkeeper configured: its deliveries wait for it.
    let unconfigured = billing(&context(store, None), T0).await;
    let waiting = unconfigured
        .bookkeeper_sync
        .as_ref()
        .expect("bookkeeper-sync ran")
        .pending
        .awaiting_configuration;
    assert!(waiting > 0, "HTTP invoices wait for the bookkeeper");
    let before = state(store).await;
    let (still_unconfigured, _) = dry_run(&context(store, None), T1).await;
    assert_eq!(still_unconfigured.deliveries.sent(), 0, "nothing can go yet");
    assert_eq!(still_unconfigured.deliveries.awaiting_configuration as u64, waiting);
    let bookkeeper = FakeBookkeeper::start().await;
    let context = context(store, Some(&bookkeeper));

    let (preview, collected) = dry_run(&context, T1).await;

    assert_eq!(state(store).await, before, "the dry run wrote nothing");
    assert!(collected.invoices.is_empty(), "no inventory changed");
    let mut listed: Vec<String> = collected
        .deliveries
        .iter()
        .map(|delivery| match delivery {
            DeliveryPreview::Retry {
                delivery,
                waits_for_configuration: false,
            } => delivery.account.clone(),
            other => panic!("only waiting deliveries: {other:?}"),
        })
        .collect();
    listed.sort();
    assert_eq!(listed.len() as u64, waiting);
    assert_eq!(preview.deliveries.retries, listed.len());

    billing(&context, T1).await;

    assert_eq!(delivered_accounts(&bookkeeper, 0), listed);
}

/// Removes one US number of the first account billed through the HTTP bookkeeper.
const ONE_NUMBER_LESS: &str = "UPDATE phone_numbers SET deleted = TRUE WHERE id IN (SELECT p.id FROM phone_numbers p \
     WHERE NOT p.deleted AND p.classification = 'did_us' AND p.account_id = (SELECT MIN(account_id) \
     FROM invoice_snapshots WHERE kind = 'computed' AND bookkeeper_type = 'http') ORDER BY p.id LIMIT 1);";

async fn a_change_to_a_bookkeeper_with_queued_rows_joins_their_delivery(store: &Store) {
    load_demo(store, DemoSpec { accounts: 40, seed: 1 }).await;
    let bookkeeper = FakeBookkeeper::start().await;
    let context = context(store, Some(&bookkeeper));
    billing(&context, T0).await;
    // Reconciled and synced, not yet delivered: the account's audit row is queued.
    store.execute_script(ONE_NUMBER_LESS).await.expect("a number goes");
    context.reconcile_changed(at(T0 + 10)).await.expect("reconciles");
    context
        .sync(&RunScope::default(), at(T0 + 20), CancellationToken::new())
        .await
        .expect("syncs");
    store
        .execute_script(ONE_NUMBER_LESS)
        .await
        .expect("another number goes");
    let delivered_before = bookkeeper.requests().len();

    let (preview, collected) = dry_run(&context, T1).await;

    let queued: Vec<&AccountId> = collected
        .deliveries
        .iter()
        .map(|delivery| match delivery {
            DeliveryPreview::Queued { account, .. } => account,
            other => panic!("only the queued delivery: {other:?}"),
        })
        .collect();
    assert_eq!(queued.len(), 1, "{:?}", collected.deliveries);
    let joining: Vec<&InvoicePreview> = collected
        .invoices
        .iter()
        .filter(|invoice| invoice.delivery == DeliveryPlan::JoinsQueued)
        .collect();
    assert_eq!(joining.len(), 1, "{:?}", collected.invoices);
    assert_eq!(&joining[0].account, queued[0]);
    assert_eq!((preview.deliveries.queued, preview.deliveries.new), (1, 0));

    billing(&context, T1).await;

    assert_eq!(
        delivered_accounts(&bookkeeper, delivered_before),
        vec![queued[0].to_string()],
        "one delivery carries both changes"
    );
}

async fn a_change_behind_a_delivery_in_flight_waits_for_it(store: &Store) {
    load_demo(store, DemoSpec { accounts: 40, seed: 1 }).await;
    let unconfigured = context(store, None);
    billing(&unconfigured, T0).await;
    store.execute_script(ONE_NUMBER_LESS).await.expect("a number goes");

    let (preview, collected) = dry_run(&unconfigured, T1).await;

    let behind: Vec<&InvoicePreview> = collected
        .invoices
        .iter()
        .filter(|invoice| invoice.delivery == DeliveryPlan::AfterInFlight(DeliveryState::AwaitingConfiguration))
        .collect();
    assert_eq!(behind.len(), 1, "{:?}", collected.invoices);
    assert!(collected.deliveries.iter().any(|delivery| matches!(delivery,
        DeliveryPreview::Retry { delivery, waits_for_configuration: true } if delivery.account == behind[0].account.as_str())));
    assert_eq!(preview.deliveries.after_in_flight, 1);
    assert_eq!(preview.deliveries.sent(), 0, "nothing can go without the bookkeeper");
}

async fn the_binary_prints_one_record_per_line_and_the_summary_last(database: &TestStore) {
    let store = &database.store;
    load_demo(store, DemoSpec { accounts: 30, seed: 1 }).await;
    billing(&context(store, None), T0).await;
    store
        .execute_script(
            "INSERT INTO users (id, account_id) SELECT 'dry-run-' || account_id, account_id FROM \
               (SELECT DISTINCT account_id FROM invoice_snapshots WHERE kind = 'computed' ORDER BY account_id LIMIT 5) chosen;",
        )
        .await
        .expect("inventory changes");
    let before = state(store).await;

    let output = database.tally(&["run", "billing", "--dry-run", "--json"]);

    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let (summary, streamed) = records.split_last().expect("a summary");
    assert_eq!(
        summary
            .as_object()
            .and_then(|fields| fields.keys().next())
            .map(String::as_str),
        Some("status")
    );
    assert_eq!(summary["record"], "summary");
    assert_eq!(
        summary["invoices_changed"].as_u64(),
        Some(streamed.iter().filter(|r| r["record"] == "invoice").count() as u64)
    );
    let kinds: BTreeSet<&str> = streamed.iter().filter_map(|record| record["record"].as_str()).collect();
    assert!(kinds.is_subset(&BTreeSet::from(["invoice", "delivery"])), "{kinds:?}");
    assert!(!streamed.is_empty(), "the new users change invoices: {text}");
    assert_eq!(state(store).await, before, "the binary's dry run wrote nothing either");
}

on_both_backends!(
    a_billing_dry_run_lists_what_billing_then_changes_and_writes_nothing,
    a_billing_dry_run_lists_the_deliveries_already_waiting,
    a_change_to_a_bookkeeper_with_queued_rows_joins_their_delivery,
    a_change_behind_a_delivery_in_flight_waits_for_it,
);
on_both_backends!(@with database => &database; the_binary_prints_one_record_per_line_and_the_summary_last);
