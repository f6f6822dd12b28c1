//! The demo's inventory as Kazoo documents, as CouchDB stores them: what `tally demo`
//! loads through the ingestion core, so the quick start runs production's path.
//!
//! Pure and lazy: [`DemoDocuments`] yields `(database, document)` pairs one account at
//! a time (about a hundred documents), so 100 000 accounts (about ten million
//! documents) pass in flat memory. The same `(accounts, seed)` always yields the same
//! documents in the same order: every account document (in `accounts`, parents before
//! children) first, then, account after account, its own database's documents, its
//! numbers (in `numbers/+1415`-style databases, assigned to it) and its port requests.
//!
//! The mix follows the earlier set-based demo: about 20 users, 25 devices, 25 numbers,
//! 15 voicemail boxes, 3 fax boxes and 4 conferences per account, a limits document, an
//! app store with three apps, a whitelabel per reseller, dedicated IPs, qubicle queues
//! and port requests, with a few objects disabled or deleted.

use super::{DemoAccount, DemoData, DemoSpec};
use md5::{Digest, Md5};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::io::{self, Write};

/// The documents of a demo data set, in load order.
pub fn documents(spec: DemoSpec, data: &DemoData) -> DemoDocuments<'_> {
    DemoDocuments {
        seed: spec.seed,
        accounts: &data.accounts,
        next_account_document: 0,
        next_objects_of: 0,
        next_number: 0,
        pending: Vec::new().into_iter(),
    }
}

/// The lazy iterator of [`documents`]: `(database name, document)`.
#[derive(Debug)]
pub struct DemoDocuments<'a> {
    seed: u64,
    accounts: &'a [DemoAccount],
    /// The next account whose account document comes (the first phase).
    next_account_document: usize,
    /// The next account whose objects come (the second phase).
    next_objects_of: usize,
    /// Numbers are numbered across accounts so that each is unique.
    next_number: u64,
    /// The objects of the current account not yet yielded.
    pending: std::vec::IntoIter<(String, Value)>,
}

impl Iterator for DemoDocuments<'_> {
    type Item = (String, Value);

    fn next(&mut self) -> Option<(String, Value)> {
        if let Some(account) = self.accounts.get(self.next_account_document) {
            self.next_account_document += 1;
            return Some(("accounts".to_owned(), account_document(self.accounts, account)));
        }
        loop {
            if let Some(document) = self.pending.next() {
                return Some(document);
            }
            let account = self.accounts.get(self.next_objects_of)?;
            self.next_objects_of += 1;
            let mut objects = Vec::with_capacity(128);
            account_objects(self.seed, account, &mut self.next_number, &mut objects);
            self.pending = objects.into_iter();
        }
    }
}

/// `account/xx/yy/rest`, the name of an account's own database.
pub fn account_database(account_id: &str) -> String {
    format!(
        "account/{}/{}/{}",
        &account_id[..2],
        &account_id[2..4],
        &account_id[4..]
    )
}

/// Kazoo's number database of a number: `numbers/` and its first five characters.
pub fn number_database(number: &str) -> String {
    let prefix: String = number.chars().take(5).collect();
    format!("numbers/{prefix}")
}

/// `pvt_tree`: the ancestors' ids, root first (the demo tree is implicit in the indexes).
fn ancestors(accounts: &[DemoAccount], account: &DemoAccount) -> Vec<Value> {
    let mut tree = Vec::new();
    let mut current = account.index;
    while let Some(parent) = super::parent_index(current) {
        let parent_account = usize::try_from(parent)
            .ok()
            .and_then(|parent| accounts.get(parent))
            .expect("a parent comes before its children");
        tree.push(Value::String(parent_account.id.clone()));
        current = parent;
    }
    tree.reverse();
    tree
}

fn account_document(accounts: &[DemoAccount], account: &DemoAccount) -> Value {
    let mut document = json!({
        "_id": account.id,
        "pvt_type": "account",
        "name": account.name,
        "realm": format!("{}.demo.example", account.index),
        "pvt_tree": ancestors(accounts, account),
        "pvt_reseller": account.is_reseller,
        "pvt_reseller_id": account.reseller_id,
        "pvt_enabled": account.enabled,
        "pvt_deleted": account.deleted,
    });
    if account.is_reseller || account.index == 0 {
        // The API's `api_auth` reads it; a demo key is no secret.
        document["pvt_api_key"] = Value::String(hex::encode(Md5::digest(format!("demo-key:{}", account.id))));
    }
    document
}

/// A deterministic value in `0..65521` per `(seed, account, kind, n)`: each attribute
/// of each object is drawn from its own mix.
fn draw(seed: u64, index: u64, kind: u64, n: u64) -> u64 {
    let mut x = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(kind.wrapping_mul(0x94D0_49BB_1331_11EB))
        .wrapping_add(n);
    x ^= x >> 31;
    x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    x ^= x >> 32;
    x % 65_521
}

/// Object kinds, also the two hex digits in their ids.
const USER: u64 = 1;
const DEVICE: u64 = 2;
const VMBOX: u64 = 3;
const FAXBOX: u64 = 4;
const CONFERENCE: u64 = 5;
const DEDICATED_IP: u64 = 6;
const QUEUE: u64 = 7;
const NUMBER: u64 = 8;
const PORT_REQUEST: u64 = 9;
/// The per-account count of each kind comes from this draw.
const COUNT: u64 = 15;

/// A 32-hex document id, unique across the data set: the account id's first 24
/// characters, the kind and a serial.
fn object_id(account: &DemoAccount, kind: u64, n: u64) -> String {
    format!("{}{kind:02x}{n:06x}", &account.id[..24])
}

/// `enabled` and `pvt_deleted` for the few disabled and deleted objects.
fn presence(document: &mut Value, k: u64, disabled_at: u64, deleted_at: u64) {
    if k % 53 == disabled_at {
        document["enabled"] = Value::Bool(false);
    }
    if k % 47 == deleted_at {
        document["pvt_deleted"] = Value::Bool(true);
    }
}

fn account_objects(seed: u64, account: &DemoAccount, next_number: &mut u64, out: &mut Vec<(String, Value)>) {
    let index = account.index;
    let database = account_database(&account.id);
    let count = |kind: u64, low: u64, spread: u64| low + draw(seed, index, COUNT, kind) % spread;
    let mut push = |document: Value| out.push((database.clone(), document));

    let users = count(USER, 10, 21);
    let mut user_ids = Vec::new();
    for n in 0..users {
        let k = draw(seed, index, USER, n);
        let id = object_id(account, USER, n);
        let username = format!("user{n}.{index}");
        let mut user = json!({
            "_id": id,
            "pvt_type": "user",
            "first_name": "Demo",
            "last_name": format!("User {n}"),
            "username": username,
            "priv_level": if k % 6 == 0 { "admin" } else { "user" },
        });
        if k % 6 == 0 {
            // Admins can sign in to the API with the password `demo`.
            user["pvt_md5_auth"] = Value::String(hex::encode(Md5::digest(format!("{username}:demo"))));
        }
        if k % 25 == 0 {
            let recipient = if k % 50 == 0 {
                json!({"offering": "pro"})
            } else {
                json!({})
            };
            user["qubicle"] = json!({"enabled": true, "recipient": recipient});
        }
        presence(&mut user, k, 7, 3);
        user_ids.push(id);
        push(user);
    }

    for n in 0..count(DEVICE, 12, 27) {
        let k = draw(seed, index, DEVICE, n);
        let mut device =
            json!({"_id": object_id(account, DEVICE, n), "pvt_type": "device", "name": format!("Device {n}")});
        let device_type = match k % 10 {
            0 | 1 => Some("softphone"),
            2 => Some("cellphone"),
            3 => Some("fax"),
            4 => Some("smartphone"),
            5 => None,
            _ => Some("sip_device"),
        };
        if let Some(device_type) = device_type {
            device["device_type"] = Value::String(device_type.to_owned());
        }
        presence(&mut device, k, 11, 5);
        push(device);
    }

    for n in 0..count(VMBOX, 8, 15) {
        let k = draw(seed, index, VMBOX, n);
        let mut vmbox = json!({
            "_id": object_id(account, VMBOX, n),
            "pvt_type": "vmbox",
            "mailbox": format!("{}", 1000 + n),
            "transcribe": k % 3 == 0,
        });
        presence(&mut vmbox, k, 17, 11);
        push(vmbox);
    }

    for (kind, pvt_type, low, spread, disabled_at, deleted_at) in [
        (FAXBOX, "faxbox", 0, 7, 19, 13),
        (CONFERENCE, "conference", 1, 7, 23, 17),
    ] {
        for n in 0..count(kind, low, spread) {
            let k = draw(seed, index, kind, n);
            let mut document =
                json!({"_id": object_id(account, kind, n), "pvt_type": pvt_type, "name": format!("{pvt_type} {n}")});
            presence(&mut document, k, disabled_at, deleted_at);
            push(document);
        }
    }

    for n in 0..count(DEDICATED_IP, 0, 2) {
        let k = draw(seed, index, DEDICATED_IP, n);
        let mut ip = json!({
            "_id": object_id(account, DEDICATED_IP, n),
            "pvt_type": "dedicated_ip",
            "ip": format!("10.{}.{}.{}", index / 62_500 % 250, index / 250 % 250, index % 250),
        });
        presence(&mut ip, k, 29, 19);
        push(ip);
    }

    for n in 0..count(QUEUE, 0, 3) {
        let k = draw(seed, index, QUEUE, n);
        let mut queue =
            json!({"_id": object_id(account, QUEUE, n), "pvt_type": "qubicle_queue", "name": format!("Queue {n}")});
        if k % 4 == 0 {
            queue["pvt_offering"] = Value::String("pro".to_owned());
        }
        presence(&mut queue, k, 31, 23);
        push(queue);
    }

    push(json!({
        "_id": "limits",
        "pvt_type": "limits",
        "twoway_trunks": index % 5,
        "inbound_trunks": index % 3,
        "outbound_trunks": index % 2,
    }));

    let specific: Vec<Value> = user_ids.iter().take(2).cloned().map(Value::String).collect();
    let blacklist: Vec<&str> = if index % 9 == 0 { vec![FAX_APP] } else { Vec::new() };
    push(json!({
        "_id": "apps_store",
        "pvt_type": "apps_store",
        "apps": {
            VOIP_APP: {"name": "voip", "allowed_users": "all"},
            CALLFLOWS_APP: {"name": "callflows", "allowed_users": "admins"},
            FAX_APP: {"name": "fax", "allowed_users": "specific", "users": specific},
        },
        "blacklist": blacklist,
    }));

    if account.is_reseller {
        push(json!({"_id": "whitelabel", "pvt_type": "whitelabel", "domain": format!("portal{index}.example")}));
    }

    for n in 0..count(NUMBER, 12, 27) {
        let k = draw(seed, index, NUMBER, n);
        let serial = *next_number;
        *next_number += 1;
        let number = match k % 20 {
            0..=13 => format!("+1415{}", 2_000_000 + serial),
            14 | 15 => format!("+1800{}", 2_000_000 + serial),
            16 => format!("+4420{}", 2_000_000 + serial),
            17 => format!("+1876{}", 2_000_000 + serial),
            _ => format!("+1650{}", 2_000_000 + serial),
        };
        let local = k % 20 >= 18;
        let module = match (local, k % 7) {
            (true, _) => "knm_local",
            (false, 0) => "knm_bandwidth2",
            (false, 1) => "knm_inventory",
            (false, _) => "knm_telnyx",
        };
        let mut features = Map::new();
        if local {
            features.insert("local".to_owned(), json!({}));
        }
        if k % 3 == 0 {
            features.insert("cnam".to_owned(), json!({"inbound_lookup": true}));
        }
        if k % 4 == 0 {
            features.insert(
                "e911".to_owned(),
                json!({"street_address": "140 New Montgomery St", "postal_code": "94105"}),
            );
        }
        let mut document = json!({
            "_id": number,
            "pvt_type": "number",
            "pvt_module_name": module,
            "pvt_assigned_to": account.id,
            "pvt_state": "in_service",
            "pvt_features": features,
        });
        presence(&mut document, k, 13, 9);
        out.push((number_database(&number), document));
    }

    for n in 0..count(PORT_REQUEST, 0, 2) {
        let k = draw(seed, index, PORT_REQUEST, n);
        let state = match k % 5 {
            0 => Some("pending"),
            1 => Some("submitted"),
            2 => Some("scheduled"),
            3 => Some("completed"),
            _ => None,
        };
        let numbers: Map<String, Value> = (0..1 + k % 5)
            .map(|m| (format!("+1510{}", 2_000_000 + index * 10 + m), json!({})))
            .collect();
        let mut transitions = vec![json!({"transition": {"new": state.unwrap_or("unconfirmed")}})];
        if k % 3 == 0 {
            transitions.push(json!({"transition": {"new": state.unwrap_or("unconfirmed")}}));
        }
        let mut request = json!({
            "_id": object_id(account, PORT_REQUEST, n),
            "pvt_type": "port_request",
            "pvt_account_id": account.id,
            "numbers": numbers,
            "pvt_transitions": transitions,
        });
        if let Some(state) = state {
            request["pvt_port_state"] = Value::String(state.to_owned());
        }
        if k % 47 == 29 {
            request["pvt_deleted"] = Value::Bool(true);
        }
        out.push(("port_requests".to_owned(), request));
    }
}

/// Writes documents as NDJSON envelopes, `{"database": "...", "doc": {...}}` one per
/// line (the form `tally inventory import` reads); returns how many were written.
pub fn write_ndjson<W: Write>(out: &mut W, documents: impl Iterator<Item = (String, Value)>) -> io::Result<u64> {
    #[derive(Serialize)]
    struct Envelope<'a> {
        database: &'a str,
        doc: &'a Value,
    }
    let mut written = 0u64;
    for (database, doc) in documents {
        serde_json::to_writer(
            &mut *out,
            &Envelope {
                database: &database,
                doc: &doc,
            },
        )?;
        out.write_all(b"\n")?;
        written += 1;
    }
    Ok(written)
}

const VOIP_APP: &str = "8bed5d9a1e2f4c3b9a0d7e6f5c4b3a21";
const CALLFLOWS_APP: &str = "2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c0b";
const FAX_APP: &str = "f1e2d3c4b5a697887766554433221100";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::generate;
    use crate::domain::classify::NumberClassifiers;
    use crate::domain::inventory::Database;
    use crate::wire::kazoo::{read_document, Reading};
    use std::collections::{BTreeMap, HashSet};

    const SPEC: DemoSpec = DemoSpec { accounts: 300, seed: 5 };

    #[test]
    fn the_same_spec_gives_the_same_documents_in_the_same_order() {
        let data = generate(SPEC);
        assert!(documents(SPEC, &data).eq(documents(SPEC, &data)));
        let other_seed = DemoSpec { seed: 6, ..SPEC };
        let other = generate(other_seed);
        assert!(!documents(SPEC, &data)
            .take(500)
            .eq(documents(other_seed, &other).take(500)));
    }

    #[test]
    fn every_account_comes_first_parents_before_children() {
        let data = generate(SPEC);
        let mut seen = HashSet::new();
        let mut accounts_done = false;
        for (database, document) in documents(SPEC, &data) {
            if database == "accounts" {
                assert!(!accounts_done, "an account document after the objects");
                let tree = document["pvt_tree"].as_array().expect("a tree");
                if let Some(parent) = tree.last() {
                    assert!(seen.contains(parent.as_str().expect("an id")), "parent first");
                }
                seen.insert(document["_id"].as_str().expect("an id").to_owned());
            } else {
                accounts_done = true;
            }
        }
        assert_eq!(seen.len(), 300);
    }

    #[test]
    fn every_document_is_read_as_inventory_and_every_kind_appears() {
        let data = generate(SPEC);
        let classifiers = NumberClassifiers::kazoo_defaults();
        let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut ids = HashSet::new();
        let mut total = 0u64;
        for (database, document) in documents(SPEC, &data) {
            let parsed = Database::parse(&database);
            assert_eq!(parsed.canonical_name(), database);
            let reading = read_document(&parsed, &document, &classifiers).unwrap_or_else(|problem| panic!("{problem}"));
            let Reading::Change(change) = reading else {
                panic!("ignored: {database} {document}")
            };
            let crate::domain::inventory::Change::Upsert(record) = &change.change else {
                panic!("a removal")
            };
            *kinds.entry(record.kind()).or_default() += 1;
            assert!(ids.insert((database, change.id.as_str().to_owned())), "unique ids");
            total += 1;
        }
        for kind in [
            "account",
            "user",
            "device",
            "vmbox",
            "faxbox",
            "conference",
            "limits",
            "whitelabel",
            "app_store",
            "dedicated_ip",
            "qubicle_queue",
            "port_request",
            "number",
        ] {
            assert!(kinds.get(kind).copied().unwrap_or(0) > 0, "{kind} appears: {kinds:?}");
        }
        assert!(
            (300 * 85..300 * 110).contains(&total),
            "about a hundred per account: {total}"
        );
    }

    #[test]
    fn ndjson_envelopes_carry_the_database_and_the_document() {
        let data = generate(DemoSpec { accounts: 3, seed: 1 });
        let mut out = Vec::new();
        let written = write_ndjson(&mut out, documents(DemoSpec { accounts: 3, seed: 1 }, &data)).expect("writes");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(u64::try_from(text.lines().count()).expect("small"), written);
        let first: Value = serde_json::from_str(text.lines().next().expect("a line")).expect("json");
        assert_eq!(first["database"], "accounts");
        assert_eq!(first["doc"]["_id"], data.accounts[0].id.as_str());
    }

    #[test]
    fn numbers_cover_every_class_carrier_and_feature() {
        let data = generate(SPEC);
        let classifiers = NumberClassifiers::kazoo_defaults();
        let mut seen = HashSet::new();
        for (database, document) in documents(SPEC, &data).filter(|(database, _)| database.starts_with("numbers/")) {
            let number = document["_id"].as_str().expect("an id");
            assert_eq!(number_database(number), database);
            seen.insert(document["pvt_module_name"].as_str().expect("module").to_owned());
            for feature in document["pvt_features"].as_object().expect("features").keys() {
                seen.insert(feature.clone());
            }
            seen.insert(classifiers.classify(number).unwrap_or("none").to_owned());
        }
        for expected in [
            "knm_local",
            "knm_bandwidth2",
            "knm_inventory",
            "knm_telnyx",
            "local",
            "cnam",
            "e911",
            "did_us",
            "tollfree_us",
            "international",
            "caribbean",
        ] {
            assert!(seen.contains(expected), "{expected}");
        }
    }
}
