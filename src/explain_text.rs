//! The readable form of `tally services explain`: the operation's JSON answer spelled
//! out line by line for people. It only rewords the JSON; every figure is the one the
//! operation returned (`--json` prints that JSON itself).

use serde_json::Value;
use std::fmt::Write;

/// Text (no trailing newline) of an explanation answer (`Operations::explain`).
pub fn render(answer: &Value) -> String {
    let mut out = String::new();
    let invoices = answer["invoices"].as_array().map(Vec::as_slice).unwrap_or_default();
    let _ = write!(
        out,
        "account {}: {} invoice{}",
        plain(&answer["account_id"]),
        invoices.len(),
        if invoices.len() == 1 { "" } else { "s" }
    );
    for invoice in invoices {
        render_invoice(&mut out, invoice);
    }
    out
}

fn render_invoice(out: &mut String, invoice: &Value) {
    let bookkeeper = &invoice["bookkeeper"];
    let _ = write!(
        out,
        "\n\ninvoice for bookkeeper {}/{}/{}: recurring {}",
        plain(&bookkeeper["type"]),
        plain(&bookkeeper["vendor_id"]),
        plain(&bookkeeper["id"]),
        plain(&invoice["recurring"]),
    );
    let plans: Vec<String> = list(&invoice["plans"])
        .iter()
        .map(|plan| {
            let priority = match &plan["priority"] {
                Value::Null => "no priority".to_owned(),
                priority => format!("priority {priority}"),
            };
            format!("{} ({}, {priority})", plain(&plan["id"]), plain(&plan["strategy"]))
        })
        .collect();
    let _ = write!(out, "\n  plans merged, in assignment order: {}", plans.join("; "));
    for line in list(&invoice["lines"]) {
        render_line(out, line);
    }
}

fn render_line(out: &mut String, line: &Value) {
    let _ = write!(
        out,
        "\n\n  {}.{} \"{}\": total {}",
        plain(&line["category"]),
        plain(&line["item"]),
        plain(&line["name"]),
        plain(&line["total"]["rounded"]),
    );
    if line["item"] != line["plan_item"] {
        let _ = write!(out, " (plan item {})", plain(&line["plan_item"]));
    }

    let quantity = &line["quantity"];
    let sources: Vec<String> = list(&quantity["sources"])
        .iter()
        .map(|source| {
            let own = match plain(&source["used"]).as_str() {
                "manual" => format!("manual {}", plain(&source["manual"])),
                _ => format!("account {}", plain(&source["account"])),
            };
            match &source["cascade"] {
                Value::Null => format!("{} {own}", plain(&source["item"])),
                cascade => format!("{} {own} + cascade {}", plain(&source["item"]), cascade),
            }
        })
        .collect();
    let counts = if quantity["counts"] == "category" {
        "sum of the category"
    } else {
        "the item"
    };
    let _ = write!(out, "\n    quantity {}: {counts}", plain(&quantity["value"]));
    if quantity["cascade"] == true {
        let _ = write!(out, " with descendants (cascade)");
    }
    if quantity["deleted"] == true {
        let _ = write!(out, "; the account is deleted, so it counts nothing");
    } else if sources.is_empty() {
        let _ = write!(out, "; no bucket holds it");
    } else {
        let _ = write!(out, "; {}", sources.join(", "));
    }
    let excepted = list(&quantity["excepted"]);
    if !excepted.is_empty() {
        let names: Vec<String> = excepted.iter().map(plain).collect();
        let _ = write!(out, "; excepted {}", names.join(", "));
    }

    let billable = &line["billable"];
    let bound = match plain(&billable["bound"]).as_str() {
        "minimum" => "raised to the minimum",
        "maximum" => "capped at the maximum",
        _ => "within the bounds",
    };
    // Without a `maximum` field pricing caps at the quantity itself, which is no
    // bound a reader set: say there is none rather than print the quantity as one.
    let has_maximum = list(&line["fields"]).iter().any(|field| field["path"] == "maximum");
    let maximum = match has_maximum {
        true => format!("maximum {}", plain(&billable["maximum"])),
        false => "no maximum".to_owned(),
    };
    let _ = write!(
        out,
        "\n    billable {}: quantity rounded up to step {} is {}, {bound} (minimum {}, {maximum})",
        plain(&billable["value"]),
        plain(&billable["step"]),
        plain(&billable["stepped_quantity"]),
        plain(&billable["minimum"]),
    );

    let rate = &line["rate"];
    let rule = match (plain(&rate["rule"]).as_str(), &rate["threshold"]) {
        ("flat_rates", threshold) => format!("flat_rates tier up to {threshold} units, billed once"),
        ("flat_rate", _) => "flat_rate, billed once".to_owned(),
        ("rates", threshold) => format!("rates tier up to {threshold} units"),
        _ => "the plain rate".to_owned(),
    };
    let _ = write!(
        out,
        "\n    rate {} ({rule}); charge {} × {} = {}",
        plain(&rate["value"]),
        plain(&rate["billable"]),
        plain(&rate["value"]),
        plain(&line["charge"]),
    );

    let discounts = &line["discounts"];
    let _ = write!(
        out,
        "\n    discounts (plain rate {}): single {}; cumulative {}; exact {}",
        plain(&discounts["plain_rate"]),
        discount(&discounts["single"]),
        discount(&discounts["cumulative"]),
        plain(&discounts["exact"]),
    );
    let total = &line["total"];
    let _ = write!(
        out,
        "\n    total {} − {} = {}, rounded to {}: {}",
        plain(&line["charge"]),
        plain(&discounts["exact"]),
        plain(&total["exact"]),
        plain(&total["rounding"]),
        plain(&total["rounded"]),
    );
    if !line["activation_charge"].is_null() {
        let _ = write!(
            out,
            "\n    activation charge {} per billable unit added",
            plain(&line["activation_charge"])
        );
    }
    let _ = write!(out, "\n    fields of the merged item plan:");
    for field in list(&line["fields"]) {
        let writers: Vec<String> = list(&field["from"])
            .iter()
            .map(|writer| {
                let layer = match plain(&writer["layer"]).as_str() {
                    "account_override" => "account-wide override on",
                    "plan_override" => "per-plan override of",
                    _ => "plan",
                };
                format!("{layer} {}", plain(&writer["plan"]))
            })
            .collect();
        let combined = match &field["combined_by"] {
            Value::String(rule) => format!(" ({rule} of)"),
            _ => String::new(),
        };
        let _ = write!(
            out,
            "\n      {} = {} ←{combined} {}",
            plain(&field["path"]),
            field["value"],
            writers.join(", ")
        );
    }
}

fn discount(discount: &Value) -> String {
    match plain(&discount["outcome"]).as_str() {
        "applied" if discount.get("cap").is_some() => format!(
            "{} × {} (cap {}, rate from {})",
            plain(&discount["quantity"]),
            plain(&discount["rate"]),
            plain(&discount["cap"]),
            plain(&discount["rate_from"]),
        ),
        "applied" => format!("{} (from {})", plain(&discount["rate"]), plain(&discount["rate_from"])),
        "below_minimum" => format!(
            "not applied, billable below its minimum {}",
            plain(&discount["minimum"])
        ),
        "no_plain_rate" => "not applied, the item has no plain rate above 0".to_owned(),
        _ => "none".to_owned(),
    }
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A scalar without JSON quotes.
fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
