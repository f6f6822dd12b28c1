//! Every worked example of `pricing.md` §13 and `plans.md` §7.7, through `tally quote`'s
//! request and response format. Each item is compared field by field in both
//! directions: a field we emit that the example does not expect fails too.

use crate::support::same_json;
use serde_json::{json, Value};
use tally::domain::merge::StrategyPriorities;
use tally::quote::quote_json;

fn quote(request: Value) -> Value {
    quote_json(&request.to_string(), &StrategyPriorities::default()).unwrap_or_else(|error| panic!("refused: {error}"))
}

/// A request with one plan whose `plan` is `plan`, and the given account quantities.
fn one_plan(plan: Value, account: Value) -> Value {
    json!({ "plans": [{ "id": "p", "plan": plan }], "quantities": { "account": account } })
}

fn invoice(response: &Value, index: usize) -> &Value {
    &response["invoices"][index]
}

fn item<'a>(invoice: &'a Value, category: &str, plan_item: &str) -> &'a Value {
    invoice["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["category"] == category && item["plan_item"] == plan_item)
        .unwrap_or_else(|| panic!("no item {category}.{plan_item} in {invoice}"))
}

/// Compares every field; `prorate` defaults to both flags true when the example omits it.
fn assert_item(actual: &Value, expected: Value) {
    let mut expected = expected;
    if expected.get("prorate").is_none() {
        expected["prorate"] = json!({ "additions": true, "removals": true });
    }
    if let Err(difference) = same_json(&expected, actual, "item") {
        panic!("{difference}\nexpected {expected}\n     got {actual}");
    }
}

fn assert_money(actual: &Value, expected: &str) {
    same_json(&json!(expected), actual, "amount").unwrap_or_else(|difference| panic!("{difference}"));
}

fn only_item(plan: Value, account: Value, category: &str, plan_item: &str) -> Value {
    let response = quote(one_plan(plan, account));
    item(invoice(&response, 0), category, plan_item).clone()
}

#[test]
fn example_1_tiered_rates_pick_the_smallest_threshold_at_or_above_the_quantity() {
    let plan = json!({ "users": { "user": { "rates": { "5": 10, "10": 8, "20": 6 }, "rate": 12 } } });
    let cases = [(0, 10, 0), (7, 8, 56), (10, 8, 80), (25, 12, 300)];
    for (quantity, rate, total) in cases {
        let mut expected = json!({
            "category": "users", "item": "user", "plan_item": "user", "name": "users/user",
            "quantity": quantity, "billable": quantity, "rate": rate, "total": total,
        });
        if quantity != 0 {
            expected["maximum"] = json!(quantity);
        }
        assert_item(
            &only_item(plan.clone(), json!({ "users": { "user": quantity } }), "users", "user"),
            expected,
        );
    }
}

#[test]
fn example_2_flat_rates_bill_once_even_for_nothing() {
    let plan = json!({ "limits": { "twoway_trunks": { "flat_rates": { "2": 20, "5": 45 }, "rate": 10 } } });
    let cases = [(0, 1, 20, 20), (4, 1, 45, 45), (7, 7, 10, 70)];
    for (quantity, billable, rate, total) in cases {
        let mut expected = json!({
            "category": "limits", "item": "twoway_trunks", "plan_item": "twoway_trunks", "name": "limits/twoway_trunks",
            "quantity": quantity, "billable": billable, "rate": rate, "total": total,
        });
        if quantity != 0 {
            expected["maximum"] = json!(quantity);
        }
        let account = json!({ "limits": { "twoway_trunks": quantity } });
        assert_item(&only_item(plan.clone(), account, "limits", "twoway_trunks"), expected);
    }

    let flat = json!({ "limits": { "twoway_trunks": { "flat_rate": 15, "rate": 10 } } });
    for quantity in [0, 9] {
        let mut expected = json!({
            "category": "limits", "item": "twoway_trunks", "plan_item": "twoway_trunks", "name": "limits/twoway_trunks",
            "quantity": quantity, "billable": 1, "rate": 15, "total": 15,
        });
        if quantity != 0 {
            expected["maximum"] = json!(quantity);
        }
        let account = json!({ "limits": { "twoway_trunks": quantity } });
        assert_item(&only_item(flat.clone(), account, "limits", "twoway_trunks"), expected);
    }
}

#[test]
fn example_3_minimum_maximum_and_step_shape_the_billable_quantity() {
    let did = |fields: Value| json!({ "phone_numbers": { "did_us": fields } });
    let numbers = |quantity: i64| json!({ "phone_numbers": { "did_us": quantity } });
    let expected = |quantity: i64, billable: i64, total: i64, extras: Value| {
        let mut item = json!({
            "category": "phone_numbers", "item": "did_us", "plan_item": "did_us", "name": "phone_numbers/did_us",
            "quantity": quantity, "billable": billable, "rate": 1, "total": total,
        });
        for (key, value) in extras.as_object().expect("extras") {
            item[key] = value.clone();
        }
        item
    };

    let plan_a = did(json!({ "rate": 1, "minimum": 10 }));
    assert_item(
        &only_item(plan_a.clone(), numbers(0), "phone_numbers", "did_us"),
        expected(0, 10, 10, json!({ "minimum": 10 })),
    );
    assert_item(
        &only_item(plan_a.clone(), numbers(3), "phone_numbers", "did_us"),
        expected(3, 10, 10, json!({ "minimum": 10, "maximum": 3 })),
    );
    assert_item(
        &only_item(plan_a, numbers(13), "phone_numbers", "did_us"),
        expected(13, 13, 13, json!({ "minimum": 10, "maximum": 13 })),
    );

    let plan_b = did(json!({ "rate": 1, "minimum": 10, "step": 5, "maximum": 20 }));
    for (quantity, billable) in [(3, 10), (13, 15), (22, 20)] {
        assert_item(
            &only_item(plan_b.clone(), numbers(quantity), "phone_numbers", "did_us"),
            expected(quantity, billable, billable, json!({ "minimum": 10, "maximum": 20 })),
        );
    }

    let plan_c = did(json!({ "rate": 2, "minimum": 30, "maximum": 20 }));
    let mut minimum_wins = expected(12, 30, 60, json!({ "minimum": 30, "maximum": 20 }));
    minimum_wins["rate"] = json!(2);
    assert_item(&only_item(plan_c, numbers(12), "phone_numbers", "did_us"), minimum_wins);
}

#[test]
fn example_4_single_discount_is_taken_once_and_may_make_a_total_negative() {
    let e911 = |fields: Value| json!({ "number_services": { "e911": fields } });
    let numbers = |quantity: i64| json!({ "number_services": { "e911": quantity } });
    let base = |quantity: i64, total: i64| {
        json!({
            "category": "number_services", "item": "e911", "plan_item": "e911", "name": "number_services/e911",
            "quantity": quantity, "billable": quantity, "rate": 2, "total": total,
        })
    };
    let plan = e911(json!({ "rate": 2, "discounts": { "single": { "rate": 5 } } }));
    assert_item(
        &only_item(plan.clone(), numbers(0), "number_services", "e911"),
        base(0, 0),
    );
    for (quantity, total) in [(1, -3), (4, 3)] {
        let mut expected = base(quantity, total);
        expected["maximum"] = json!(quantity);
        expected["discounts"] = json!({ "total": 5, "single": { "rate": 5 } });
        assert_item(
            &only_item(plan.clone(), numbers(quantity), "number_services", "e911"),
            expected,
        );
    }

    let ignored_tiers = e911(json!({ "rate": 2, "discounts": { "single": { "rates": { "10": 1 } } } }));
    let mut expected = base(4, 6);
    expected["maximum"] = json!(4);
    expected["discounts"] = json!({ "total": 2, "single": { "rate": 2 } });
    assert_item(
        &only_item(ignored_tiers, numbers(4), "number_services", "e911"),
        expected,
    );

    let no_plain_rate = e911(json!({ "rates": { "10": 2 }, "discounts": { "single": { "rate": 1 } } }));
    let mut expected = base(4, 8);
    expected["maximum"] = json!(4);
    assert_item(
        &only_item(no_plain_rate, numbers(4), "number_services", "e911"),
        expected.clone(),
    );

    let below_minimum = e911(json!({ "rate": 2, "discounts": { "single": { "rate": 1, "minimum": 5 } } }));
    assert_item(
        &only_item(below_minimum, numbers(4), "number_services", "e911"),
        expected,
    );
}

#[test]
fn example_5_cumulative_discount_covers_up_to_maximum_units() {
    let sip = |discount: Value| json!({ "devices": { "sip_device": { "rate": 5, "discounts": { "cumulative": discount } } } });
    let devices = |quantity: i64| json!({ "devices": { "sip_device": quantity } });
    let expected = |quantity: i64, total: i64, discounts: Value| {
        json!({
            "category": "devices", "item": "sip_device", "plan_item": "sip_device", "name": "devices/sip_device",
            "quantity": quantity, "billable": quantity, "rate": 5, "maximum": quantity, "total": total,
            "discounts": discounts,
        })
    };
    let plan = sip(json!({ "maximum": 20, "rate": 1.5, "rates": { "10": 2 } }));
    assert_item(
        &only_item(plan.clone(), devices(8), "devices", "sip_device"),
        expected(
            8,
            24,
            json!({ "total": 16, "cumulative": { "rate": 2, "quantity": 8 } }),
        ),
    );
    assert_item(
        &only_item(plan, devices(25), "devices", "sip_device"),
        expected(
            25,
            95,
            json!({ "total": 30, "cumulative": { "rate": 1.5, "quantity": 20 } }),
        ),
    );
    assert_item(
        &only_item(sip(json!({ "rate": 1.5 })), devices(8), "devices", "sip_device"),
        expected(8, 40, json!({ "cumulative": { "rate": 1.5 } })),
    );
    assert_item(
        &only_item(sip(json!({ "maximum": 3 })), devices(8), "devices", "sip_device"),
        expected(
            8,
            25,
            json!({ "total": 15, "cumulative": { "rate": 5, "quantity": 3 } }),
        ),
    );
}

#[test]
fn example_6_all_sums_the_category_minus_exceptions_and_masquerades() {
    let account = json!({ "devices": { "sip_device": 2, "softphone": 5, "fax": 1 } });
    let plan = json!({ "devices": { "_all": { "rate": 3, "as": "sip_device", "exceptions": ["softphone"], "name": "SIP Device" } } });
    let expected = |quantity: i64, total: i64| {
        json!({
            "category": "devices", "item": "sip_device", "plan_item": "_all", "name": "SIP Device",
            "quantity": quantity, "billable": quantity, "rate": 3, "maximum": quantity, "total": total,
        })
    };
    assert_item(
        &only_item(plan.clone(), account.clone(), "devices", "_all"),
        expected(3, 9),
    );

    let with_manual = json!({
        "plans": [{ "id": "p", "plan": plan }],
        "quantities": { "account": account, "manual": { "devices": { "fax": 4 } } },
    });
    assert_item(
        item(invoice(&quote(with_manual), 0), "devices", "_all"),
        expected(6, 18),
    );

    let bare = json!({ "devices": { "_all": { "rate": 3 } } });
    assert_item(
        &only_item(bare, account, "devices", "_all"),
        json!({
            "category": "devices", "item": "_all", "plan_item": "_all", "name": "devices",
            "quantity": 8, "billable": 8, "rate": 3, "maximum": 8, "total": 24,
        }),
    );
}

#[test]
fn example_7_cascade_adds_descendants_and_manual_replaces_only_the_account_part() {
    let quantities = |manual: Value| {
        json!({
            "account": { "phone_numbers": { "did_us": 4 }, "users": { "admin": 1, "user": 4 } },
            "cascade": { "phone_numbers": { "did_us": 10 }, "users": { "admin": 3, "user": 3 } },
            "manual": manual,
        })
    };
    let did = |quantity: i64| {
        json!({
            "category": "phone_numbers", "item": "did_us", "plan_item": "did_us", "name": "phone_numbers/did_us",
            "quantity": quantity, "billable": quantity, "rate": 1, "maximum": quantity, "total": quantity,
        })
    };
    let priced = |fields: Value, manual: Value| {
        let request = json!({
            "plans": [{ "id": "p", "plan": { "phone_numbers": { "did_us": fields } } }],
            "quantities": quantities(manual),
        });
        item(invoice(&quote(request), 0), "phone_numbers", "did_us").clone()
    };
    assert_item(&priced(json!({ "rate": 1, "cascade": true }), json!({})), did(14));
    assert_item(&priced(json!({ "rate": 1 }), json!({})), did(4));
    assert_item(
        &priced(
            json!({ "rate": 1, "cascade": true }),
            json!({ "phone_numbers": { "did_us": 2 } }),
        ),
        did(12),
    );

    let users = json!({
        "plans": [{ "id": "p", "plan": { "users": { "_all": { "rate": 18.99, "cascade": true, "as": "user", "name": "User" } } } }],
        "quantities": quantities(json!({})),
    });
    assert_item(
        item(invoice(&quote(users), 0), "users", "_all"),
        json!({
            "category": "users", "item": "user", "plan_item": "_all", "name": "User",
            "quantity": 11, "billable": 11, "rate": 18.99, "maximum": 11, "total": 208.89,
        }),
    );
}

#[test]
fn example_8_simple_strategy_merges_leaf_by_leaf() {
    let request = json!({
        "plans": [
            { "id": "a", "merge": { "strategy": "simple", "priority": 10 },
              "plan": { "devices": { "sip_device": { "rate": 10, "discounts": { "single": { "rate": 2 } } } }, "users": { "user": { "rate": 5 } } } },
            { "id": "b", "merge": { "strategy": "simple", "priority": 20 }, "plan": { "devices": { "sip_device": { "rate": 8 } } } },
        ],
        "quantities": { "account": { "devices": { "sip_device": 3 }, "users": { "user": 2 } } },
    });
    let response = quote(request);
    let invoice = invoice(&response, 0);
    assert_item(
        item(invoice, "devices", "sip_device"),
        json!({
            "category": "devices", "item": "sip_device", "plan_item": "sip_device", "name": "devices/sip_device",
            "quantity": 3, "billable": 3, "rate": 8, "maximum": 3, "total": 22,
            "discounts": { "total": 2, "single": { "rate": 2 } },
        }),
    );
    assert_item(
        item(invoice, "users", "user"),
        json!({
            "category": "users", "item": "user", "plan_item": "user", "name": "users/user",
            "quantity": 2, "billable": 2, "rate": 5, "maximum": 2, "total": 10,
        }),
    );
    assert_money(&invoice["summary"]["recurring"], "32");
    assert_money(&invoice["summary"]["today"], "0");
}

#[test]
fn example_9_cumulative_strategy_rebuilds_the_item() {
    let request = json!({
        "plans": [
            { "id": "a", "merge": { "strategy": "cumulative", "priority": 10 },
              "plan": { "devices": { "sip_device": { "rate": 10, "minimum": 2, "rates": { "5": 9 }, "maximum": 50,
                "exceptions": ["x", "y"], "cascade": false, "discounts": { "cumulative": { "maximum": 3, "rate": 1 } } } } } },
            { "id": "b", "merge": { "strategy": "cumulative", "priority": 20 },
              "plan": { "devices": { "sip_device": { "rate": 12, "minimum": 3, "rates": { "10": 11, "5": 8.5 },
                "exceptions": ["y", "z"], "cascade": true, "discounts": { "cumulative": { "maximum": 2 } } } } } },
        ],
        "quantities": { "account": { "devices": { "sip_device": 7 } } },
    });
    let response = quote(request);
    let invoice = invoice(&response, 0);
    same_json(
        &json!({ "rate": 12, "minimum": 5, "rates": { "5": 8.5, "10": 11 }, "exceptions": ["x", "y", "z"], "cascade": true,
                 "discounts": { "cumulative": { "maximum": 5, "rate": 1 } } }),
        &invoice["plan"]["devices"]["sip_device"],
        "plan.devices.sip_device",
    )
    .unwrap_or_else(|difference| panic!("{difference}"));
    assert_item(
        item(invoice, "devices", "sip_device"),
        json!({
            "category": "devices", "item": "sip_device", "plan_item": "sip_device", "name": "devices/sip_device",
            "quantity": 7, "billable": 7, "rate": 11, "minimum": 5, "maximum": 7, "total": 72,
            "discounts": { "total": 5, "cumulative": { "rate": 1, "quantity": 5 } },
        }),
    );
}

#[test]
fn example_10_a_cumulative_group_outranks_a_simple_group() {
    let request = json!({
        "plans": [
            { "id": "p1", "merge": { "strategy": "simple", "priority": 99 }, "plan": { "devices": { "sip_device": { "rate": 1, "name": "from simple" } } } },
            { "id": "p2", "merge": { "strategy": "cumulative", "priority": 1 }, "plan": { "devices": { "sip_device": { "rate": 2 } } } },
        ],
        "quantities": { "account": { "devices": { "sip_device": 4 } } },
    });
    assert_item(
        item(invoice(&quote(request), 0), "devices", "sip_device"),
        json!({
            "category": "devices", "item": "sip_device", "plan_item": "sip_device", "name": "from simple",
            "quantity": 4, "billable": 4, "rate": 2, "maximum": 4, "total": 8,
        }),
    );
}

fn activation_request(activations: Value) -> Value {
    json!({
        "plans": [{ "id": "p", "plan": {
            "devices": { "sip_device": { "rate": 5, "activation_charge": 10, "minimum": 2 } },
            "users": { "user": { "rate": 4.99, "activation_charge": 1.5 } },
        } }],
        "quantities": { "account": { "devices": { "sip_device": 1 }, "users": { "user": 3 } } },
        "activations": activations,
    })
}

#[test]
fn example_11a_activation_charges_follow_billable_additions() {
    let response = quote(activation_request(
        json!({ "devices": { "sip_device": 3 }, "users": { "user": -1 } }),
    ));
    let invoice = invoice(&response, 0);
    assert_item(
        item(invoice, "devices", "sip_device"),
        json!({
            "category": "devices", "item": "sip_device", "plan_item": "sip_device", "name": "devices/sip_device",
            "quantity": 4, "billable": 4, "rate": 5, "minimum": 2, "maximum": 4, "total": 20, "activation_charge": 10,
            "changes": { "type": "modified", "difference": { "quantity": 3, "billable": 2 } },
        }),
    );
    assert_item(
        item(invoice, "users", "user"),
        json!({
            "category": "users", "item": "user", "plan_item": "user", "name": "users/user",
            "quantity": 2, "billable": 2, "rate": 4.99, "maximum": 2, "total": 9.98, "activation_charge": 1.5,
            "changes": { "type": "modified", "difference": { "quantity": -1, "billable": -1 } },
        }),
    );
}

#[test]
fn example_11a_invoice_lists_one_activation_line_and_sums() {
    let response = quote(activation_request(
        json!({ "devices": { "sip_device": 3 }, "users": { "user": -1 } }),
    ));
    let invoice = invoice(&response, 0);
    same_json(
        &json!([{ "category": "devices", "item": "sip_device", "plan_item": "sip_device", "name": "devices/sip_device",
                  "billable": 2, "rate": 10, "total": 20 }]),
        &invoice["activation_charges"],
        "activation_charges",
    )
    .unwrap_or_else(|difference| panic!("{difference}"));
    assert_money(&invoice["summary"]["today"], "20");
    assert_money(&invoice["summary"]["recurring"], "29.98");
}

#[test]
fn example_11b_units_added_under_the_minimum_charge_nothing() {
    let response = quote(activation_request(
        json!({ "devices": { "sip_device": 1 }, "users": { "user": 2 } }),
    ));
    let invoice = invoice(&response, 0);
    same_json(
        &json!([{ "category": "users", "item": "user", "plan_item": "user", "name": "users/user",
                  "billable": 2, "rate": 1.5, "total": 3 }]),
        &invoice["activation_charges"],
        "activation_charges",
    )
    .unwrap_or_else(|difference| panic!("{difference}"));
    assert_money(&item(invoice, "users", "user")["total"], "24.95");
    assert_money(&invoice["summary"]["today"], "3");
    assert_money(&invoice["summary"]["recurring"], "34.95");
}

#[test]
fn example_12_decimal_totals_have_no_float_artefacts_and_round_half_away_from_zero() {
    let plan = json!({ "limits": { "twoway_trunks": { "rate": 1.1 }, "inbound_trunks": { "rate": 0.1 }, "outbound_trunks": { "rate": 0.2 } } });
    let account = json!({ "limits": { "twoway_trunks": 7, "inbound_trunks": 1, "outbound_trunks": 1 } });
    let response = quote(one_plan(plan, account));
    let invoice = invoice(&response, 0);
    assert_eq!(item(invoice, "limits", "twoway_trunks")["total"].to_string(), "7.7");
    assert_eq!(item(invoice, "limits", "inbound_trunks")["total"].to_string(), "0.1");
    assert_eq!(item(invoice, "limits", "outbound_trunks")["total"].to_string(), "0.2");
    assert_eq!(invoice["summary"]["recurring"].to_string(), "8");

    let rounding = only_item(
        json!({ "limits": { "twoway_trunks": { "rate": 0.00725 } } }),
        json!({ "limits": { "twoway_trunks": 3 } }),
        "limits",
        "twoway_trunks",
    );
    assert_eq!(rounding["total"].to_string(), "0.0218");
    assert_eq!(rounding["rate"].to_string(), "0.00725", "rates are never rounded");
}

#[test]
fn example_13_two_bookkeepers_make_two_invoices() {
    let request = json!({
        "plans": [
            { "id": "p1", "plan": { "devices": { "sip_device": { "rate": 5 } } } },
            { "id": "p2", "bookkeeper": { "type": "http", "id": "bk1" }, "plan": { "phone_numbers": { "did_us": { "rate": 1, "cascade": true } } } },
        ],
        "quantities": { "account": { "devices": { "sip_device": 3 }, "phone_numbers": { "did_us": 2 } }, "cascade": { "phone_numbers": { "did_us": 5 } } },
        "bookkeeper": { "type": "default", "vendor_id": "res" },
    });
    let response = quote(request);
    let invoices = response["invoices"].as_array().expect("invoices");
    assert_eq!(invoices.len(), 2);
    same_json(
        &json!({ "type": "default", "vendor_id": "res", "id": "default_bookkeeper" }),
        &invoices[0]["bookkeeper"],
        "bookkeeper",
    )
    .unwrap_or_else(|difference| panic!("{difference}"));
    same_json(
        &json!({ "type": "http", "vendor_id": "res", "id": "bk1" }),
        &invoices[1]["bookkeeper"],
        "bookkeeper",
    )
    .unwrap_or_else(|difference| panic!("{difference}"));
    assert_eq!(invoices[0]["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(invoices[1]["items"].as_array().map(Vec::len), Some(1));
    assert_money(&item(&invoices[0], "devices", "sip_device")["total"], "15");
    assert_money(&invoices[0]["summary"]["recurring"], "15");
    assert_item(
        item(&invoices[1], "phone_numbers", "did_us"),
        json!({
            "category": "phone_numbers", "item": "did_us", "plan_item": "did_us", "name": "phone_numbers/did_us",
            "quantity": 7, "billable": 7, "rate": 1, "maximum": 7, "total": 7,
        }),
    );
    assert_money(&invoices[1]["summary"]["recurring"], "7");
}

/// `plans.md` §7.7: the merged `devices.sip_device` of two plans.
fn merged_sip_device(plans: Value) -> Value {
    let response = quote(json!({ "plans": plans }));
    invoice(&response, 0)["plan"]["devices"]["sip_device"].clone()
}

fn plan_entry(id: &str, strategy: &str, priority: Option<i64>, sip_device: Value) -> Value {
    let mut merge = json!({ "strategy": strategy });
    if let Some(priority) = priority {
        merge["priority"] = json!(priority);
    }
    json!({ "id": id, "merge": merge, "plan": { "devices": { "sip_device": sip_device } } })
}

#[test]
fn worked_merge_outcomes_of_plans_section_7_7() {
    let discounted = json!({ "rate": 10, "discounts": { "single": { "rate": 2 } } });
    for strategy in ["simple", "recursive"] {
        let merged = merged_sip_device(json!([
            plan_entry("a", strategy, Some(10), discounted.clone()),
            plan_entry("b", strategy, Some(20), json!({ "rate": 8 })),
        ]));
        assert_eq!(
            merged,
            json!({ "rate": 8, "discounts": { "single": { "rate": 2 } } }),
            "{strategy}"
        );
    }

    let empty = merged_sip_device(json!([
        plan_entry("a", "simple", Some(10), discounted.clone()),
        plan_entry("b", "simple", Some(20), json!({})),
    ]));
    assert_eq!(empty, discounted, "an empty item plan vanishes in preparation");

    for order in [["u1", "u2"], ["u2", "u1"]] {
        let entries: Vec<Value> = order
            .iter()
            .map(|id| match *id {
                "u1" => plan_entry("u1", "simple", None, json!({ "rate": 1 })),
                _ => plan_entry("u2", "simple", Some(1000), json!({ "rate": 2 })),
            })
            .collect();
        assert_eq!(
            merged_sip_device(Value::Array(entries)),
            json!({ "rate": 1 }),
            "missing priority wins"
        );
    }

    let t1 = plan_entry("t1", "simple", Some(5), json!({ "rate": 1 }));
    let t2 = plan_entry("t2", "simple", Some(5), json!({ "rate": 2 }));
    assert_eq!(merged_sip_device(json!([t1.clone(), t2.clone()])), json!({ "rate": 1 }));
    assert_eq!(merged_sip_device(json!([t2, t1])), json!({ "rate": 2 }));

    let null_override = json!({ "plan": { "devices": { "sip_device": { "discounts": null, "rate": 7 } } } });
    let mut per_plan = plan_entry("a", "simple", Some(10), discounted.clone());
    per_plan["overrides"] = null_override.clone();
    assert_eq!(
        merged_sip_device(json!([per_plan])),
        json!({ "rate": 7, "discounts": { "single": { "rate": 2 } } }),
        "a per-plan null does not reach the plan"
    );
    let account_wide = quote(json!({
        "plans": [plan_entry("a", "simple", Some(10), discounted)],
        "overrides": null_override,
    }));
    assert_eq!(
        invoice(&account_wide, 0)["plan"]["devices"]["sip_device"],
        json!({ "rate": 7 }),
        "an account-wide null deletes the plan's value"
    );
}

#[test]
fn a_per_plan_null_removes_the_account_wide_override_and_the_plan_value_stays() {
    let request = json!({
        "plans": [{
            "id": "a",
            "plan": { "devices": { "sip_device": { "rate": 10, "discounts": { "single": { "rate": 2 } } } } },
            "overrides": { "plan": { "devices": { "sip_device": { "discounts": null } } } },
        }],
        "overrides": { "plan": { "devices": { "sip_device": { "rate": 12, "discounts": { "single": { "rate": 5 } } } } } },
    });
    let response = quote(request);
    assert_eq!(
        invoice(&response, 0)["plan"]["devices"]["sip_device"],
        json!({ "rate": 12, "discounts": { "single": { "rate": 2 } } })
    );
}

/// Issue 12: plan `sip_device {rate 5, minimum 10}`, per-plan override `{minimum: null}`,
/// quantity 3. Kazoo keeps the minimum: billable 10, total 50.
#[test]
fn issue_12_a_per_plan_null_minimum_keeps_the_plan_minimum() {
    let request = json!({
        "plans": [{
            "id": "p",
            "plan": { "devices": { "sip_device": { "rate": 5, "minimum": 10 } } },
            "overrides": { "plan": { "devices": { "sip_device": { "minimum": null } } } },
        }],
        "quantities": { "account": { "devices": { "sip_device": 3 } } },
    });
    let response = quote(request.clone());
    let sip_device = item(invoice(&response, 0), "devices", "sip_device");
    assert_eq!(sip_device["quantity"], json!(3));
    assert_eq!(sip_device["billable"], json!(10));
    assert_money(&sip_device["total"], "50");
    assert_money(&invoice(&response, 0)["summary"]["recurring"], "50");

    // The same null as an account-wide override deletes the minimum: 3 × 5.
    let mut account_wide = request_without_plan_overrides(&request);
    account_wide["overrides"] = json!({ "plan": { "devices": { "sip_device": { "minimum": null } } } });
    let response = quote(account_wide);
    let sip_device = item(invoice(&response, 0), "devices", "sip_device");
    assert_eq!(sip_device["billable"], json!(3));
    assert_money(&sip_device["total"], "15");
}

fn request_without_plan_overrides(request: &Value) -> Value {
    let mut request = request.clone();
    for plan in request["plans"].as_array_mut().expect("plans") {
        plan.as_object_mut().expect("plan").remove("overrides");
    }
    request
}
