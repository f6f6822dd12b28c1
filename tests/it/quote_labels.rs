//! Issue 12, deliver 5: item labels Kazoo treats as empty (`kz_term:is_empty`, quirk
//! Q-PLN-16) and numeric names, through `tally quote`.

use serde_json::{json, Value};
use tally::domain::merge::StrategyPriorities;
use tally::quote::quote_json;

fn priced_items(sip_device: Value, all: Value) -> Vec<Value> {
    let request = json!({
        "plans": [{ "id": "p", "plan": { "devices": { "sip_device": sip_device, "_all": all } } }],
        "quantities": { "account": { "devices": { "sip_device": 2 } } },
    });
    let response = quote_json(&request.to_string(), &StrategyPriorities::default())
        .unwrap_or_else(|error| panic!("refused {request}: {error}"));
    response["invoices"][0]["items"].as_array().expect("items").clone()
}

fn labels(items: &[Value], plan_item: &str) -> (Value, Value) {
    let item = items
        .iter()
        .find(|item| item["plan_item"] == plan_item)
        .unwrap_or_else(|| panic!("no {plan_item} in {items:?}"));
    (item["item"].clone(), item["name"].clone())
}

#[test]
fn empty_as_and_name_keep_the_item_key_and_the_default_name() {
    for empty in [json!(""), json!("0"), json!("NULL"), json!("undefined"), json!(0)] {
        let items = priced_items(
            json!({ "rate": 1, "as": empty, "name": empty }),
            json!({ "rate": 2, "as": empty, "name": empty }),
        );
        assert_eq!(
            labels(&items, "sip_device"),
            (json!("sip_device"), json!("devices/sip_device")),
            "{empty}"
        );
        assert_eq!(labels(&items, "_all"), (json!("_all"), json!("devices")), "{empty}");
    }
}

#[test]
fn an_empty_name_falls_back_to_the_masqueraded_default() {
    let items = priced_items(
        json!({ "rate": 1, "as": "phone", "name": "NULL" }),
        json!({ "rate": 2 }),
    );
    assert_eq!(labels(&items, "sip_device"), (json!("phone"), json!("devices/phone")));
}

#[test]
fn a_numeric_name_or_as_is_read_as_its_text() {
    let items = priced_items(json!({ "rate": 1, "name": 42 }), json!({ "rate": 2, "as": 7 }));
    assert_eq!(labels(&items, "sip_device"), (json!("sip_device"), json!("42")));
    assert_eq!(labels(&items, "_all"), (json!("7"), json!("devices")));
}
