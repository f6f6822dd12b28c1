//! What a request says: its `{"data": …, "merge"?}` body and its listing query.

use super::envelope::ApiError;
use crate::ops::{ListQuery, OpsError};
use axum::body::Body;
use axum::extract::Query;
use axum::http::Uri;
use serde_json::{Map, Value};

/// The largest request body read (Kazoo's default is 8 MB; plans are small).
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The largest body of documents `POST /v2/inventory` reads at once; larger dumps go
/// through `tally inventory import` or in several requests.
const MAX_DOCUMENTS_BYTES: usize = 64 * 1024 * 1024;

/// Reads a body of documents (NDJSON or a JSON array) as bytes.
pub(super) async fn read_documents_body(body: Body) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_DOCUMENTS_BYTES)
        .await
        .map_err(|_| ApiError::body_too_large())
}

/// One query parameter's value, percent-decoded.
pub(super) fn query_value(uri: &Uri, name: &str) -> Option<String> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    pairs.into_iter().find(|(key, _)| key == name).map(|(_, value)| value)
}

/// A request body.
pub(super) struct Input {
    /// The whole body (`{}` when empty).
    body: Value,
    /// Its `data` member (`{}` when absent or null).
    pub(super) data: Value,
    /// Top-level `merge: true` (`api.md` §1.4).
    pub(super) merge: bool,
}

impl Input {
    /// Reads the body; an empty body is `{}`, anything else must be a JSON object.
    pub(super) async fn read(body: Body) -> Result<Input, ApiError> {
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::body_too_large())?;
        Ok(Input::parse(&bytes)?)
    }

    fn parse(bytes: &[u8]) -> Result<Input, OpsError> {
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice::<Value>(bytes)
                .map_err(|error| OpsError::field("data", "type", format!("the body is not valid JSON: {error}")))?
        };
        if !body.is_object() {
            return Err(OpsError::field("data", "type", "the body must be a JSON object"));
        }
        let data = match body.get("data") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(data) => data.clone(),
        };
        let merge = body.get("merge") == Some(&Value::Bool(true));
        Ok(Input { body, data, merge })
    }

    /// `POST /service_plans/override` takes `{"overrides": …}`: inside `data`, or as the
    /// whole body when the request has no `data` (the legacy documentation shows both).
    pub(super) fn overrides_body(&self) -> &Value {
        match (self.body.get("data"), self.body.get("overrides")) {
            (None | Some(Value::Null), Some(_)) => &self.body,
            _ => &self.data,
        }
    }
}

/// A listing's query (`api.md` §1.1, `audit-and-summaries.md` §5.3, §6.1).
pub(super) fn list_query(uri: &Uri) -> Result<ListQuery, OpsError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|error| OpsError::field("query", "type", format!("unreadable query string: {error}")))?;
    let mut query = ListQuery::new();
    for (name, value) in pairs {
        match name.as_str() {
            // Non-integers and values ≤ 0 are ignored, as Kazoo does.
            "created_from" => query.created_from = positive(&value).or(query.created_from),
            "created_to" => query.created_to = positive(&value).or(query.created_to),
            "page_size" => match value.trim().parse::<usize>() {
                Ok(size) if size > 0 => query.page_size = Some(size),
                _ => {
                    return Err(OpsError::field(
                        "page_size",
                        "type",
                        format!("page_size must be a positive integer, not {value:?}"),
                    ))
                }
            },
            "start_key" => query.start_key = Some(value),
            "paginate" => query.paginate = value != "false",
            // Only `ascending=true` switches the order (`descending=false` alone does not).
            "ascending" => query.ascending = value == "true",
            "details" => query.details = value == "true",
            _ => {}
        }
    }
    Ok(query)
}

fn positive(text: &str) -> Option<i64> {
    text.trim().parse::<i64>().ok().filter(|value| *value > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query(text: &str) -> Result<ListQuery, OpsError> {
        list_query(&format!("/x?{text}").parse::<Uri>().expect("uri"))
    }

    #[test]
    fn listing_parameters_are_read_and_bad_ranges_ignored() {
        let read =
            query("created_from=63900000000&created_to=abc&page_size=10&start_key=k&ascending=true&details=true")
                .expect("valid");
        assert_eq!(read.created_from, Some(63_900_000_000));
        assert_eq!(read.created_to, None);
        assert_eq!(read.page_size, Some(10));
        assert_eq!(read.start_key.as_deref(), Some("k"));
        assert!(read.ascending && read.details && read.paginate);
        let read = query("created_from=-5&descending=false&paginate=false").expect("valid");
        assert_eq!(read.created_from, None);
        assert!(!read.ascending && !read.paginate);
    }

    #[test]
    fn a_bad_page_size_names_the_field() {
        for bad in ["page_size=0", "page_size=ten", "page_size=-1"] {
            let Err(OpsError::Validation(fields)) = query(bad) else {
                panic!("{bad} is refused");
            };
            assert_eq!(fields[0].field, "page_size");
        }
    }

    #[test]
    fn bodies() {
        let input = Input::parse(b"").expect("empty");
        assert_eq!(input.data, json!({}));
        let input = Input::parse(br#"{"data": {"amount": 1.10}, "merge": true}"#).expect("valid");
        assert!(input.merge);
        assert_eq!(input.data.to_string(), r#"{"amount":1.10}"#);
        let input = Input::parse(br#"{"overrides": {"p": {}}}"#).expect("valid");
        assert_eq!(input.overrides_body(), &json!({"overrides": {"p": {}}}));
        let input = Input::parse(br#"{"data": {"overrides": {}}}"#).expect("valid");
        assert_eq!(input.overrides_body(), &json!({"overrides": {}}));
        assert!(matches!(Input::parse(b"{"), Err(OpsError::Validation(_))));
        assert!(matches!(Input::parse(b"[1]"), Err(OpsError::Validation(_))));
    }
}
