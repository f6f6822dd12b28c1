//! The OpenAPI document (`openapi/tally.json`) describes exactly the routes the server
//! is built from: every (method, path) both ways, and every path capture declared.

use serde_json::Value;
use std::collections::BTreeSet;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/tally.json");
    let text = std::fs::read_to_string(path).expect("openapi/tally.json readable");
    serde_json::from_str(&text).expect("openapi/tally.json is JSON")
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => document
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {reference}")),
        None => value,
    }
}

#[test]
fn the_document_lists_exactly_the_served_routes() {
    let document = document();
    assert!(document["openapi"]
        .as_str()
        .is_some_and(|version| version.starts_with("3.")));
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let served: BTreeSet<(String, String)> = tally::api::routes()
        .iter()
        .map(|route| (route.verb.as_str().to_owned(), route.path.to_owned()))
        .chain(
            tally::api::OPERATIONAL_ROUTES
                .iter()
                .map(|path| ("GET".to_owned(), (*path).to_owned())),
        )
        .collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(missing.is_empty(), "served but not documented: {missing:?}");
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
}

#[test]
fn every_operation_declares_its_captures_security_and_errors() {
    let document = document();
    let scheme = &document["components"]["securitySchemes"]["XAuthToken"];
    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["in"], "header");
    assert_eq!(scheme["name"], "X-Auth-Token");
    assert!(document["security"][0].get("XAuthToken").is_some());
    for route in tally::api::routes() {
        let operation = &document["paths"][route.path][route.verb.as_str().to_lowercase()];
        let declared: BTreeSet<String> = operation["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|parameter| resolve(&document, parameter))
            .filter(|parameter| parameter["in"] == "path")
            .map(|parameter| parameter["name"].as_str().expect("name").to_owned())
            .collect();
        let captures: BTreeSet<String> = route
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        assert_eq!(declared, captures, "{} {}", route.verb.as_str(), route.path);
        for code in ["200", "400", "401", "403", "404", "405", "500"] {
            let response = resolve(&document, &operation["responses"][code]);
            assert!(
                response.get("content").is_some(),
                "{code} of {} {}",
                route.verb.as_str(),
                route.path
            );
        }
        if route.op.is_listing() {
            let names: Vec<String> = operation["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .map(|parameter| resolve(&document, parameter)["name"].as_str().unwrap_or("").to_owned())
                .collect();
            assert!(names.iter().any(|name| name == "page_size"), "{}", route.path);
        }
    }
    let topup = &document["paths"]["/v2/accounts/{account_id}/services/topup"]["post"]["responses"];
    assert!(topup.get("402").is_some(), "top-up documents 402");
}

#[test]
fn the_dry_run_parameter_is_declared_on_exactly_the_routes_that_have_one() {
    let document = document();
    let declared: BTreeSet<(String, String)> = tally::api::routes()
        .iter()
        .filter(|route| {
            let operation = &document["paths"][route.path][route.verb.as_str().to_lowercase()];
            operation["parameters"].as_array().is_some_and(|parameters| {
                parameters
                    .iter()
                    .any(|parameter| resolve(&document, parameter)["name"] == "dry_run")
            })
        })
        .map(|route| (route.verb.as_str().to_owned(), route.path.to_owned()))
        .collect();
    let served: BTreeSet<(String, String)> = tally::api::routes()
        .iter()
        .filter(|route| route.op.has_dry_run())
        .map(|route| (route.verb.as_str().to_owned(), route.path.to_owned()))
        .collect();
    assert_eq!(declared, served);
}
