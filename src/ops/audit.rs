//! Audit logs and day summaries (`audit-and-summaries.md` §5, §6; `api.md` §2.6-§2.8).

use super::{Caller, FieldError, ListQuery, Operations, OpsError, Page};
use crate::domain::summary::GregorianSeconds;
use crate::domain::AccountId;
use crate::store::{AuditCursor, AuditLogQuery, AuditLogRow};
use serde_json::{json, Map, Value};

/// Crossbar's `maximum_range`: 31 days and an hour.
pub const MAXIMUM_RANGE: i64 = 2_682_000;
/// Kazoo's "year", the summaries' range when `created_to` is given.
pub const SUMMARY_RANGE_WITH_END: i64 = 31_540_000;
/// Rows per page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: usize = 50;

/// `created_from`/`created_to` resolved (`audit-and-summaries.md` §5.3 steps 1-3).
fn resolve_range(query: &ListQuery, now: GregorianSeconds, max_range: i64) -> Result<(i64, i64), OpsError> {
    let given = |value: Option<i64>| value.filter(|seconds| *seconds > 0);
    let to = given(query.created_to).unwrap_or(now.0);
    let from = given(query.created_from).unwrap_or(to.saturating_sub(max_range));
    let refuse = |message: String| {
        OpsError::Validation(vec![
            FieldError::new("created_from", "date_range", message).with_cause(Value::from(from))
        ])
    };
    if to < from {
        return Err(refuse(format!("created_to {to} is prior to created_from {from}")));
    }
    if to - from > max_range {
        return Err(refuse(format!(
            "created_to {to} is more than {max_range} seconds from created_from {from}"
        )));
    }
    Ok((from, to))
}

fn day_of(seconds: i64, field: &str) -> Result<String, OpsError> {
    GregorianSeconds(seconds)
        .day_key()
        .ok_or_else(|| OpsError::field(field, "date_range", format!("{seconds} is not a date")))
}

fn cursor(start_key: &str) -> Result<AuditCursor, OpsError> {
    start_key
        .split_once(':')
        .and_then(|(time, id)| {
            Some(AuditCursor {
                created_at: time.parse().ok()?,
                id: id.to_owned(),
            })
        })
        .ok_or_else(|| OpsError::field("start_key", "type", "is not a key this listing gave"))
}

fn summary_row(summary: &crate::domain::summary::DaySummary) -> Value {
    json!({
        "addition": summary.addition,
        "last_timestamp": summary.last_timestamp.0,
        "quantity": summary.quantity,
        "removal": summary.removal,
        "sum_quantity": false,
    })
}

/// A listed audit log (`audit-and-summaries.md` §6.1).
fn listed(row: &AuditLogRow) -> Value {
    let mut entry = Map::new();
    entry.insert("id".to_owned(), Value::String(row.id.clone()));
    entry.insert("status".to_owned(), Value::String(row.status.clone()));
    if let Some(reason) = &row.reason {
        entry.insert("reason".to_owned(), Value::String(reason.clone()));
    }
    if let Some(message) = &row.message {
        entry.insert("message".to_owned(), Value::String(message.clone()));
    }
    if let Some(kind) = row.audit.pointer("/changes/type") {
        entry.insert("type".to_owned(), kind.clone());
    }
    let summary = row.invoice.get("summary").cloned().unwrap_or_else(|| json!({}));
    entry.insert("summary".to_owned(), summary);
    Value::Object(entry)
}

/// A fetched audit log: its public fields and `id` (`audit-and-summaries.md` §2, §6.2).
fn fetched(row: AuditLogRow) -> Value {
    let mut document = Map::new();
    document.insert("id".to_owned(), Value::String(row.id));
    document.insert("status".to_owned(), Value::String(row.status));
    if let Some(reason) = row.reason {
        document.insert("reason".to_owned(), Value::String(reason));
    }
    if let Some(message) = row.message {
        document.insert("message".to_owned(), Value::String(message));
    }
    document.insert(
        "bookkeeper".to_owned(),
        json!({
            "id": row.bookkeeper_id,
            "type": row.bookkeeper_type,
            "vendor_id": row.bookkeeper_vendor_id,
            "results": row.bookkeeper_results,
        }),
    );
    document.insert("invoice".to_owned(), row.invoice);
    document.insert("audit".to_owned(), row.audit);
    document.insert("created".to_owned(), Value::from(row.created_at));
    document.insert("modified".to_owned(), Value::from(row.modified_at));
    if let Some(delivery) = row.delivery_id {
        document.insert("delivery_id".to_owned(), Value::String(delivery));
    }
    Value::Object(document)
}

impl Operations {
    /// `GET /services/audit`: `{id, status, reason?, message?, type?, summary}` rows,
    /// newest first, paged.
    pub async fn audit_logs(&self, caller: &Caller, account: &AccountId, query: &ListQuery) -> Result<Page, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        let (from, to) = resolve_range(query, self.now(), MAXIMUM_RANGE)?;
        let page_size = query
            .paginate
            .then(|| query.page_size.unwrap_or(DEFAULT_PAGE_SIZE).max(1));
        let start = match (&query.start_key, query.paginate) {
            (Some(key), true) => Some(cursor(key)?),
            _ => None,
        };
        let page = self
            .store()
            .audit_log_page(
                account,
                &AuditLogQuery {
                    from,
                    to,
                    ascending: query.ascending,
                    start,
                    limit: page_size,
                },
            )
            .await?;
        let rows: Vec<Value> = page.rows.iter().map(listed).collect();
        Ok(Page {
            page_size: page_size.map(|_| rows.len()),
            rows,
            start_key: query.start_key.clone().filter(|_| query.paginate),
            next_start_key: page.next.map(|next| format!("{}:{}", next.created_at, next.id)),
        })
    }

    /// `GET /services/audit/{AUDIT_ID}`: the audit log's public fields and `id`.
    pub async fn audit_log(&self, caller: &Caller, account: &AccountId, audit_id: &str) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        let not_found = || OpsError::BadIdentifier {
            cause: audit_id.to_owned(),
        };
        let month_prefixed = audit_id.len() > 7
            && audit_id.as_bytes()[6] == b'-'
            && audit_id[..6].bytes().all(|byte| byte.is_ascii_digit());
        if !month_prefixed {
            return Err(not_found());
        }
        let row = self.store().audit_log(account, audit_id).await?.ok_or_else(not_found)?;
        Ok(fetched(row))
    }

    /// `GET /services/audit/summary[/{SOURCE}]`: day summaries over whole UTC days.
    /// Only non-master resellers have them; any other account answers `[]`.
    pub async fn audit_summary(
        &self,
        caller: &Caller,
        account: &AccountId,
        query: &ListQuery,
        source: Option<&str>,
    ) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        let max_range = if query.created_to.is_some_and(|to| to > 0) {
            SUMMARY_RANGE_WITH_END
        } else {
            MAXIMUM_RANGE
        };
        let (from, to) = resolve_range(query, self.now(), max_range)?;
        if !node.is_reseller || node.is_master {
            return Ok(json!([]));
        }
        let rows = self
            .store()
            .day_summaries_between(
                account,
                &day_of(from, "created_from")?,
                &day_of(to, "created_to")?,
                source,
            )
            .await?;
        if rows.is_empty() {
            return Ok(json!([]));
        }
        match source {
            None => {
                let mut by_source = Map::new();
                let mut sorted = rows;
                sorted.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
                for (day, source, summary) in sorted {
                    let days = by_source.entry(source).or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(days) = days {
                        days.insert(day, summary_row(&summary));
                    }
                }
                Ok(Value::Array(vec![Value::Object(by_source)]))
            }
            Some(_) => {
                let mut days: Vec<Value> = rows
                    .into_iter()
                    .map(|(day, _, summary)| {
                        let mut entry = Map::new();
                        entry.insert(day, summary_row(&summary));
                        Value::Object(entry)
                    })
                    .collect();
                if !query.ascending {
                    days.reverse();
                }
                Ok(Value::Array(days))
            }
        }
    }
}
