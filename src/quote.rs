//! `tally quote`: price plans against quantities, no database (`quote-format.md`).
//!
//! The request is parsed strictly (every problem is refused with its JSON path) into
//! domain values, priced by the domain core twice when `activations` are given
//! (current and proposed quantities), and rendered with the shared invoice JSON.

use crate::domain::document::{Map, Path, Value};
use crate::domain::invoice::{annotate, Invoice};
use crate::domain::item_plan::{Issue, Severity};
use crate::domain::merge::StrategyPriorities;
use crate::domain::plan::{validate_plan_document, AssignedPlan, BookkeeperRef, PlanContext};
use crate::domain::pricing::{merge_account_plans, price_invoice, PricingError};
use crate::domain::{AccountId, Category, ItemName, PlanId, Quantities, QuantityBuckets};
use crate::wire;
use crate::wire::invoice::InvoiceJson;
use std::collections::BTreeSet;
use std::sync::Arc;

/// A request that cannot be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    #[error("invalid JSON at line {line} column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(Issue),
    #[error("{0}")]
    Pricing(#[from] PricingError),
}

/// A parsed quote request.
#[derive(Debug, Clone, PartialEq)]
pub struct QuoteRequest {
    pub context: PlanContext,
    pub plans: Vec<AssignedPlan>,
    pub quantities: QuantityBuckets,
    /// Per-item changes to the account bucket: the change being priced.
    pub activations: Option<Quantities>,
    /// Findings that did not stop the quote (`quirks.md` warnings).
    pub warnings: Vec<Issue>,
}

/// The priced answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub invoices: Vec<Invoice>,
    pub warnings: Vec<Issue>,
}

/// Parses, prices and renders one request as a JSON value: the whole command minus its I/O.
pub fn quote_json(text: &str, priorities: &StrategyPriorities) -> Result<serde_json::Value, QuoteError> {
    let request = parse_request(text)?;
    let quote = price(&request, priorities)?;
    Ok(serde_json::to_value(render(&quote)).expect("a quote response has string keys and finite numbers"))
}

pub fn price(request: &QuoteRequest, priorities: &StrategyPriorities) -> Result<Quote, QuoteError> {
    let merged_plans = merge_account_plans(&request.context, &request.plans, &[], priorities);
    let proposed_quantities = request.activations.as_ref().map(|activations| {
        let mut quantities = request.quantities.clone();
        quantities.account.add_all(activations);
        quantities
    });
    let mut invoices = Vec::with_capacity(merged_plans.len());
    for merged in &merged_plans {
        let current = price_invoice(merged, &request.quantities)?;
        let invoice = match &proposed_quantities {
            None => current,
            Some(proposed_quantities) => {
                let proposed = price_invoice(merged, proposed_quantities)?;
                annotate(Some(&current), &proposed).map_err(|_| PricingError::InvoiceOutOfRange {
                    bookkeeper: merged.bookkeeper.to_string(),
                    what: "activation charges",
                })?
            }
        };
        invoices.push(invoice);
    }
    Ok(Quote {
        invoices,
        warnings: request.warnings.clone(),
    })
}

/// The response of `quote-format.md`, ready to serialize.
#[derive(Debug, serde::Serialize)]
pub struct QuoteResponse<'a> {
    pub invoices: Vec<InvoiceJson<'a>>,
    /// Our extension: findings that did not stop pricing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

pub fn render(quote: &Quote) -> QuoteResponse<'_> {
    QuoteResponse {
        invoices: quote.invoices.iter().map(InvoiceJson::from).collect(),
        warnings: quote.warnings.iter().map(ToString::to_string).collect(),
    }
}

/// Reads a request strictly; the first error found is returned.
pub fn parse_request(text: &str) -> Result<QuoteRequest, QuoteError> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|error| QuoteError::Syntax {
        line: error.line(),
        column: error.column(),
        message: syntax_message(&error),
    })?;
    let root = Path::root();
    let mut request = expect_object(wire::document::from_json(&json), &root)?;

    for key in request.keys() {
        if !matches!(
            key.as_str(),
            "plans" | "overrides" | "quantities" | "activations" | "bookkeeper"
        ) {
            return Err(invalid(
                root.key(key),
                "unknown key; a request has plans, overrides, quantities, activations and bookkeeper",
            ));
        }
    }

    let mut findings = Vec::new();
    let default_bookkeeper = parse_bookkeeper(request.remove("bookkeeper"), &root.key("bookkeeper"))?;
    let global_overrides = match request.remove("overrides") {
        None | Some(Value::Null) => Map::new(),
        Some(value) => {
            let path = root.key("overrides");
            let overrides = expect_object(value, &path)?;
            findings.extend(validate_plan_document(&overrides, &path));
            overrides
        }
    };
    let plans = parse_plans(request.remove("plans"), &root.key("plans"), &mut findings)?;
    let quantities = match request.remove("quantities") {
        None | Some(Value::Null) => QuantityBuckets::default(),
        Some(value) => parse_buckets(value, &root.key("quantities"))?,
    };
    let activations = match request.remove("activations") {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse_bucket(value, &root.key("activations"), Sign::Any)?),
    };

    if let Some(error) = findings.iter().find(|issue| issue.severity == Severity::Error) {
        return Err(QuoteError::Invalid(error.clone()));
    }
    Ok(QuoteRequest {
        context: PlanContext {
            default_bookkeeper,
            global_overrides,
        },
        plans,
        quantities,
        activations,
        warnings: findings,
    })
}

fn syntax_message(error: &serde_json::Error) -> String {
    // serde_json appends " at line L column C"; the position is reported separately.
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(position) => text[..position].to_owned(),
        None => text,
    }
}

fn invalid(path: Path, message: impl Into<String>) -> QuoteError {
    QuoteError::Invalid(Issue::error(path, message))
}

fn expect_object(value: Value, path: &Path) -> Result<Map, QuoteError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(invalid(
            path.clone(),
            format!("expected an object, found {}", other.describe()),
        )),
    }
}

fn optional_text(map: &Map, key: &str, path: &Path) -> Result<Option<String>, QuoteError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if !text.is_empty() => Ok(Some(text.clone())),
        Some(Value::String(_)) => Err(invalid(path.key(key), "must not be empty")),
        Some(other) => Err(invalid(
            path.key(key),
            format!("expected a string, found {}", other.describe()),
        )),
    }
}

fn parse_bookkeeper(value: Option<Value>, path: &Path) -> Result<BookkeeperRef, QuoteError> {
    let map = match value {
        None | Some(Value::Null) => Map::new(),
        Some(value) => expect_object(value, path)?,
    };
    for key in map.keys() {
        if !matches!(key.as_str(), "type" | "vendor_id" | "id") {
            return Err(invalid(
                path.key(key),
                "unknown key; a bookkeeper has type, vendor_id and id",
            ));
        }
    }
    Ok(BookkeeperRef {
        kind: optional_text(&map, "type", path)?.unwrap_or_else(|| BookkeeperRef::DEFAULT_KIND.to_owned()),
        vendor_id: optional_text(&map, "vendor_id", path)?.unwrap_or_else(|| "reseller".to_owned()),
        id: optional_text(&map, "id", path)?.unwrap_or_else(|| BookkeeperRef::DEFAULT_ID.to_owned()),
    })
}

fn parse_plans(value: Option<Value>, path: &Path, findings: &mut Vec<Issue>) -> Result<Vec<AssignedPlan>, QuoteError> {
    let entries = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(other) => {
            return Err(invalid(
                path.clone(),
                format!("expected an array of plans, found {}", other.describe()),
            ))
        }
    };
    let mut seen = BTreeSet::new();
    let mut plans = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let entry_path = path.index(index);
        let mut document = expect_object(entry, &entry_path)?;
        let id = match document.remove("id") {
            Some(Value::String(id)) if !id.is_empty() => id,
            Some(Value::String(_)) => return Err(invalid(entry_path.key("id"), "must not be empty")),
            Some(other) => {
                return Err(invalid(
                    entry_path.key("id"),
                    format!("expected a string, found {}", other.describe()),
                ))
            }
            None => return Err(invalid(entry_path.key("id"), "required: every plan needs an id")),
        };
        if !seen.insert(id.clone()) {
            return Err(invalid(entry_path.key("id"), format!("duplicate plan id {id:?}")));
        }
        let vendor_id = optional_text(&document, "vendor_id", &entry_path)?;
        document.remove("vendor_id");
        let overrides = match document.remove("overrides") {
            None | Some(Value::Null) => None,
            Some(value) => {
                let overrides_path = entry_path.key("overrides");
                let overrides = expect_object(value, &overrides_path)?;
                findings.extend(validate_plan_document(&overrides, &overrides_path));
                Some(overrides)
            }
        };
        findings.extend(validate_plan_document(&document, &entry_path));
        plans.push(AssignedPlan {
            id: PlanId::parse(id).map_err(|error| invalid(entry_path.key("id"), error.to_string()))?,
            vendor_id: vendor_id
                .map(AccountId::parse)
                .transpose()
                .map_err(|error| invalid(entry_path.key("vendor_id"), error.to_string()))?,
            document: Arc::new(document),
            overrides,
        });
    }
    Ok(plans)
}

/// Whether counts may be negative: stored quantities may not, activations may.
#[derive(Clone, Copy)]
enum Sign {
    NonNegative,
    Any,
}

fn parse_buckets(value: Value, path: &Path) -> Result<QuantityBuckets, QuoteError> {
    let map = expect_object(value, path)?;
    let mut buckets = QuantityBuckets::default();
    for (key, bucket) in map {
        let bucket_path = path.key(&key);
        let parsed = match bucket {
            Value::Null => Quantities::new(),
            other => parse_bucket(other, &bucket_path, Sign::NonNegative)?,
        };
        match key.as_str() {
            "account" => buckets.account = parsed,
            "cascade" => buckets.cascade = parsed,
            "manual" => buckets.manual = parsed,
            _ => {
                return Err(invalid(
                    bucket_path,
                    "unknown bucket; quantities has account, cascade and manual",
                ))
            }
        }
    }
    Ok(buckets)
}

fn parse_bucket(value: Value, path: &Path, sign: Sign) -> Result<Quantities, QuoteError> {
    let mut quantities = Quantities::new();
    for (category_name, items) in expect_object(value, path)? {
        let category_path = path.key(&category_name);
        let category = Category::parse(category_name.as_str())
            .map_err(|error| invalid(category_path.clone(), error.to_string()))?;
        for (item_name, count) in expect_object(items, &category_path)? {
            let item_path = category_path.key(&item_name);
            let item =
                ItemName::parse(item_name.as_str()).map_err(|error| invalid(item_path.clone(), error.to_string()))?;
            let count = count
                .to_integer()
                .map_err(|coercion| invalid(item_path.clone(), format!("{coercion}, found {}", count.describe())))?;
            if matches!(sign, Sign::NonNegative) && count < 0 {
                return Err(invalid(
                    item_path,
                    format!("a quantity cannot be negative, found {count}"),
                ));
            }
            quantities.set(category.clone(), item, count);
        }
    }
    Ok(quantities)
}
