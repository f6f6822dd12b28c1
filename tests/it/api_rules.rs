//! Every route of the HTTP API against the rules that hold for all of them (issue 6):
//! a missing token is 401, a token from another branch of the tree or a descendant
//! acting on its ancestor is 403, and a body whose `data` is not what the operation
//! reads is 400 naming the field, never a 500. The table is the server's own route
//! list, so a new route is covered the day it is added.

use crate::api_support::{call, seed_tree, start_server, token};
use crate::helpers::on_both_backends;
use reqwest::Method;
use tally::api::{routes, Op};
use tally::store::Store;

/// A concrete path for a route template, on `account`.
fn concrete(path: &str, account: &str) -> String {
    path.replace("{account_id}", account)
        .replace("{plan_id}", "devices")
        .replace("{audit_id}", "202601-00000000000000000000000000000000")
        .replace("{source}", "user")
}

fn method(verb: tally::api::Verb) -> Method {
    Method::from_bytes(verb.as_str().as_bytes()).expect("an HTTP method")
}

fn body_for(verb: tally::api::Verb) -> Option<&'static str> {
    matches!(verb, tally::api::Verb::Post | tally::api::Verb::Patch).then_some(r#"{"data": {}}"#)
}

async fn every_route_needs_a_token_from_the_tree(store: &Store) {
    seed_tree(store).await;
    let (base, _server) = start_server(store).await;
    let sibling = token(store, "s", false).await;
    let customer = token(store, "a", false).await;
    for route in routes().iter().filter(|route| route.op.needs_token()) {
        let on_account = route.path.contains("{account_id}");
        let url = format!("{base}{}", concrete(route.path, "a"));
        let body = body_for(route.verb);
        let answer = call(method(route.verb), &url, None, body, &[]).await;
        assert_eq!(
            answer.status,
            401,
            "{} {} without a token: {}",
            route.verb.as_str(),
            url,
            answer.body
        );
        if !on_account {
            continue;
        }
        let answer = call(method(route.verb), &url, Some(&sibling), body, &[]).await;
        assert_eq!(
            answer.status,
            403,
            "{} {} by another branch: {}",
            route.verb.as_str(),
            url,
            answer.body
        );
        assert_eq!(answer.body["message"], "forbidden");
        let ancestor = format!("{base}{}", concrete(route.path, "r"));
        let answer = call(method(route.verb), &ancestor, Some(&customer), body, &[]).await;
        assert_eq!(
            answer.status,
            403,
            "{} {} by a descendant: {}",
            route.verb.as_str(),
            ancestor,
            answer.body
        );
    }
    let quote = call(
        Method::POST,
        &format!("{base}/v2/services/quote"),
        Some(&customer),
        Some(r#"{"data": {}}"#),
        &[],
    )
    .await;
    assert_eq!(
        quote.status, 403,
        "an account-less quote is for super admins: {}",
        quote.body
    );
    let editable = call(
        Method::GET,
        &format!("{base}/v2/services/editable"),
        Some(&customer),
        None,
        &[],
    )
    .await;
    assert_eq!(
        editable.status, 200,
        "editable fields are for any caller: {}",
        editable.body
    );
}

async fn every_write_refuses_data_of_the_wrong_shape_with_400(store: &Store) {
    seed_tree(store).await;
    store
        .execute_script(
            "INSERT INTO service_plans (vendor_id, plan_id, name, document) VALUES \
             ('r', 'devices', 'Devices', '{\"plan\": {\"devices\": {\"sip_device\": {\"rate\": 1}}}}');",
        )
        .await
        .expect("a plan");
    let (base, _server) = start_server(store).await;
    let admin = token(store, "m", true).await;
    for route in routes() {
        let reads_data = matches!(route.verb, tally::api::Verb::Post | tally::api::Verb::Patch)
            && !matches!(route.op, Op::Reconcile | Op::Synchronize | Op::AddServicePlan);
        if !reads_data {
            continue;
        }
        let url = format!("{base}{}", concrete(route.path, "a"));
        let answer = call(
            method(route.verb),
            &url,
            Some(&admin),
            Some(r#"{"data": "nonsense"}"#),
            &[],
        )
        .await;
        assert_eq!(answer.status, 400, "{} {}: {}", route.verb.as_str(), url, answer.body);
        assert_eq!(answer.body["error"], "400");
        let fields = answer.body["data"].as_object().expect("the failing fields");
        assert!(
            !fields.is_empty(),
            "{} {} names no field: {}",
            route.verb.as_str(),
            url,
            answer.body
        );
    }
    let topup = call(
        Method::POST,
        &format!("{base}/v2/accounts/a/services/topup"),
        Some(&admin),
        Some(r#"{"data": {"amount": "-3"}}"#),
        &[],
    )
    .await;
    assert_eq!(topup.status, 400);
    assert_eq!(
        topup.body["data"]["amount"]["minimum"]["message"],
        "must be more than 0 dollars"
    );
    let manual = call(
        Method::POST,
        &format!("{base}/v2/accounts/a/services/manual"),
        Some(&admin),
        Some(r#"{"data": {"devices": {"sip_device": -1}}}"#),
        &[],
    )
    .await;
    assert_eq!(manual.status, 400);
    assert_eq!(
        manual.body["data"]["devices.sip_device"]["type"]["message"],
        "must be a non-negative integer"
    );
    let unassigned = call(
        Method::DELETE,
        &format!("{base}/v2/accounts/a/services/devices"),
        Some(&admin),
        None,
        &[],
    )
    .await;
    assert_eq!(unassigned.status, 400, "{}", unassigned.body);
    assert_eq!(unassigned.body["message"], "plan_is_not_assigned");
    let unknown = call(
        Method::POST,
        &format!("{base}/v2/accounts/a/services/ghost"),
        Some(&admin),
        Some("{}"),
        &[],
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(unknown.body["data"]["cause"], "ghost");
}

on_both_backends!(
    every_route_needs_a_token_from_the_tree,
    every_write_refuses_data_of_the_wrong_shape_with_400
);
