//! Kazoo documents, as CouchDB stores them, read into inventory records.
//!
//! [`read_document`] looks at the database a document came from and its `pvt_type`,
//! and reads the fields `quantities.md` §1 counts from; nothing else of the document
//! is kept. A field of the wrong type rejects the document with its JSON path, so an
//! operator can find and fix it; documents of types tally does not count are
//! [`Reading::Ignored`] and counted by type.
//!
//! Coercions follow Kazoo where it is lenient (`"true"` for true, integers written as
//! strings) and stop where a value could only be a mistake.

use crate::domain::classify::NumberClassifiers;
use crate::domain::inventory::{
    number_state_is_billed, parse_kazoo_account_id, AccountRecord, AppStoreRecord, Change, Database, DedicatedIpRecord,
    DeviceRecord, DocumentId, EnabledMember, InventoryChange, InventoryRecord, LimitsRecord, NumberRecord,
    PortRequestRecord, Presence, QubicleQueueRecord, Secret, StoreApp, UserRecord, VmboxRecord, WhitelabelRecord,
};
use crate::domain::AccountId;
use serde_json::{Map, Value};
use std::fmt;

/// What a document is to tally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// A change to the inventory.
    Change(InventoryChange),
    /// A document of a type tally does not count (`kind` is its `pvt_type`, or what
    /// else names it), or from a database that holds no inventory.
    Ignored { kind: String },
}

/// A document that cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The database's canonical name.
    pub database: String,
    /// The document's `_id`, when it has one.
    pub id: Option<String>,
    /// The JSON path of the field at fault (`$` for the document itself).
    pub path: String,
    pub problem: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.id.as_deref().unwrap_or("(no _id)");
        write!(f, "{} {}: {}: {}", self.database, id, self.path, self.problem)
    }
}

impl std::error::Error for Rejection {}

/// Reads one document of `database`.
pub fn read_document(
    database: &Database,
    document: &Value,
    classifiers: &NumberClassifiers,
) -> Result<Reading, Rejection> {
    let Some(fields) = document.as_object() else {
        return Err(rejection(
            database,
            None,
            "$",
            format!("expected an object, found {}", kind_of(document)),
        ));
    };
    let reader = Fields {
        database,
        id: fields.get("_id").and_then(Value::as_str),
        fields,
    };
    let id = match fields.get("_id") {
        Some(Value::String(id)) if !id.is_empty() => id.as_str(),
        Some(Value::String(_)) => return Err(reader.reject("_id", "must not be empty")),
        Some(other) => return Err(reader.reject("_id", format!("expected a string, found {}", kind_of(other)))),
        None => return Err(reader.reject("_id", "is required")),
    };
    if id.starts_with("_design/") || id.starts_with("_local/") {
        return Ok(Reading::Ignored {
            kind: "design".to_owned(),
        });
    }
    if !database.holds_inventory() {
        return Ok(Reading::Ignored {
            kind: format!("database {database}"),
        });
    }
    let document_id = DocumentId::parse(id).expect("checked non-empty above");
    let change = |change: Change| {
        Ok(Reading::Change(InventoryChange {
            database: database.clone(),
            id: document_id.clone(),
            change,
        }))
    };
    if reader.flag("_deleted")? {
        return change(Change::Remove);
    }

    let pvt_type = reader.optional_string("pvt_type")?;
    let record = match (database, pvt_type) {
        (Database::Accounts, Some("account") | None) => InventoryRecord::Account(reader.account(id)?),
        (Database::Account(owner), Some("account")) => {
            let account = reader.account(id)?;
            if &account.id != owner {
                return Err(reader.reject("_id", format!("an account document in the database of {owner}")));
            }
            InventoryRecord::Account(account)
        }
        (Database::Numbers(_), Some("number") | None) => InventoryRecord::Number(reader.number(id, classifiers)?),
        (Database::PortRequests | Database::Account(_), Some("port_request")) => {
            InventoryRecord::PortRequest(reader.port_request()?)
        }
        (Database::Account(_), Some(kind)) => match reader.account_object(id, kind)? {
            Some(record) => record,
            None => return Ok(Reading::Ignored { kind: kind.to_owned() }),
        },
        (Database::Account(_), None) if id == "apps_store" => InventoryRecord::AppStore(reader.app_store()?),
        (_, kind) => {
            return Ok(Reading::Ignored {
                kind: kind.unwrap_or("(no pvt_type)").to_owned(),
            })
        }
    };
    change(Change::Upsert(record))
}

fn rejection(database: &Database, id: Option<&str>, path: &str, problem: impl Into<String>) -> Rejection {
    Rejection {
        database: database.canonical_name(),
        id: id.map(str::to_owned),
        path: path.to_owned(),
        problem: problem.into(),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One document's fields, with the readers that name the path of what is wrong.
struct Fields<'a> {
    database: &'a Database,
    id: Option<&'a str>,
    fields: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn reject(&self, path: &str, problem: impl Into<String>) -> Rejection {
        rejection(self.database, self.id, path, problem)
    }

    fn wrong(&self, path: &str, expected: &str, found: &Value) -> Rejection {
        self.reject(path, format!("expected {expected}, found {}", kind_of(found)))
    }

    /// A member anywhere below the document, by a dotted path of object keys.
    fn get(&self, path: &str) -> Option<&'a Value> {
        let mut keys = path.split('.');
        let mut value = self.fields.get(keys.next()?)?;
        for key in keys {
            value = value.as_object()?.get(key)?;
        }
        Some(value)
    }

    /// A string member; null and missing are `None`.
    fn optional_string(&self, path: &str) -> Result<Option<&'a str>, Rejection> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.as_str())),
            Some(other) => Err(self.wrong(path, "a string", other)),
        }
    }

    /// A non-empty string member; null, missing and `""` are `None`.
    fn optional_label(&self, path: &str) -> Result<Option<String>, Rejection> {
        Ok(self
            .optional_string(path)?
            .filter(|text| !text.is_empty())
            .map(str::to_owned))
    }

    /// Kazoo's `is_true`: true and `"true"`; false, `"false"`, null and missing are false.
    fn flag(&self, path: &str) -> Result<bool, Rejection> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(Value::String(text)) if text == "true" => Ok(true),
            Some(Value::String(text)) if text == "false" => Ok(false),
            Some(other) => Err(self.wrong(path, "a boolean", other)),
        }
    }

    /// An integer member, also written as a string of digits; missing and null are 0.
    fn integer(&self, path: &str) -> Result<i64, Rejection> {
        let text = match self.get(path) {
            None | Some(Value::Null) => return Ok(0),
            Some(Value::Number(number)) => number.to_string(),
            Some(Value::String(text)) => text.trim().to_owned(),
            Some(other) => return Err(self.wrong(path, "an integer", other)),
        };
        text.parse::<i64>()
            .map_err(|_| self.reject(path, format!("expected an integer, found {text:?}")))
    }

    fn account_id(&self, path: &str, text: &str) -> Result<AccountId, Rejection> {
        parse_kazoo_account_id(text).map_err(|error| self.reject(path, error.to_string()))
    }

    fn optional_account_id(&self, path: &str) -> Result<Option<AccountId>, Rejection> {
        match self.optional_string(path)? {
            None | Some("") => Ok(None),
            Some(text) => self.account_id(path, text).map(Some),
        }
    }

    /// `enabled` and `pvt_deleted` (`quantities.md` §1).
    fn presence(&self) -> Result<Presence, Rejection> {
        let enabled = match self.fields.get("enabled") {
            None => EnabledMember::Missing,
            Some(Value::Null) => EnabledMember::Null,
            Some(Value::Bool(flag)) => EnabledMember::Bool(*flag),
            Some(Value::Number(number)) => {
                let text = number.to_string();
                return Ok(Presence {
                    enabled: EnabledMember::Number(&text).enables(),
                    deleted: self.flag("pvt_deleted")?,
                });
            }
            Some(Value::String(text)) => EnabledMember::String(text),
            Some(_) => EnabledMember::Other,
        };
        Ok(Presence {
            enabled: enabled.enables(),
            deleted: self.flag("pvt_deleted")?,
        })
    }

    fn account(&self, id: &str) -> Result<AccountRecord, Rejection> {
        let account = self.account_id("_id", id)?;
        let tree = match self.get("pvt_tree") {
            Some(Value::Array(tree)) => tree,
            Some(other) => return Err(self.wrong("pvt_tree", "an array of account ids", other)),
            None => return Err(self.reject("pvt_tree", "is required (an empty array for the master account)")),
        };
        let mut ancestors = Vec::with_capacity(tree.len());
        for (index, entry) in tree.iter().enumerate() {
            let path = format!("pvt_tree[{index}]");
            let Value::String(text) = entry else {
                return Err(self.wrong(&path, "an account id", entry));
            };
            let ancestor = self.account_id(&path, text)?;
            if ancestor == account {
                return Err(self.reject(&path, "an account cannot be its own ancestor"));
            }
            ancestors.push(ancestor);
        }
        let mut presence = self.presence()?;
        // Kazoo disables an account through `pvt_enabled` (kz_account:is_enabled).
        if matches!(self.get("pvt_enabled"), Some(Value::Bool(false)))
            || matches!(self.get("pvt_enabled"), Some(Value::String(text)) if text == "false")
        {
            presence.enabled = false;
        }
        Ok(AccountRecord {
            id: account,
            parent: ancestors.pop(),
            name: self.optional_string("name")?.unwrap_or_default().to_owned(),
            is_reseller: self.flag("pvt_reseller")?,
            reseller_id: self.optional_account_id("pvt_reseller_id")?,
            billing_id: self.optional_label("billing_id")?,
            presence,
            api_key: self.optional_label("pvt_api_key")?.map(Secret::new),
        })
    }

    /// The documents of an account database, by `pvt_type`; `None` for types not counted.
    fn account_object(&self, id: &str, kind: &str) -> Result<Option<InventoryRecord>, Rejection> {
        let record = match kind {
            "user" => InventoryRecord::User(UserRecord {
                priv_level: self.optional_label("priv_level")?.unwrap_or_else(|| "user".to_owned()),
                qubicle_enabled: self.flag("qubicle.enabled")?,
                qubicle_offering: self.optional_label("qubicle.recipient.offering")?,
                presence: self.presence()?,
                username: self.optional_label("username")?,
                md5_auth: self.optional_label("pvt_md5_auth")?.map(Secret::new),
            }),
            "device" => InventoryRecord::Device(DeviceRecord {
                device_type: self.optional_label("device_type")?,
                presence: self.presence()?,
            }),
            "vmbox" => InventoryRecord::Vmbox(VmboxRecord {
                transcribe: self.flag("transcribe")?,
                presence: self.presence()?,
            }),
            "faxbox" => InventoryRecord::Faxbox(self.presence()?),
            "conference" => InventoryRecord::Conference(self.presence()?),
            "limits" => InventoryRecord::Limits(LimitsRecord {
                twoway_trunks: self.integer("twoway_trunks")?,
                inbound_trunks: self.integer("inbound_trunks")?,
                outbound_trunks: self.integer("outbound_trunks")?,
                presence: self.presence()?,
            }),
            "whitelabel" => InventoryRecord::Whitelabel(WhitelabelRecord {
                domain: self.optional_label("domain")?,
                presence: self.presence()?,
            }),
            "app_store" | "apps_store" => InventoryRecord::AppStore(self.app_store()?),
            "dedicated_ip" => InventoryRecord::DedicatedIp(DedicatedIpRecord {
                ip: self.optional_string("ip")?.unwrap_or(id).to_owned(),
                presence: self.presence()?,
            }),
            "qubicle_queue" => InventoryRecord::QubicleQueue(QubicleQueueRecord {
                offering: self.optional_label("pvt_offering")?,
                presence: self.presence()?,
            }),
            // Numbers are read from the number databases, which say whom they are
            // assigned to; the copies Kazoo keeps in account databases would count twice.
            _ => return Ok(None),
        };
        Ok(Some(record))
    }

    fn app_store(&self) -> Result<AppStoreRecord, Rejection> {
        let blacklist: Vec<&str> = match self.get("blacklist") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(entries)) => entries
                .iter()
                .enumerate()
                .map(|(index, entry)| {
                    entry
                        .as_str()
                        .ok_or_else(|| self.wrong(&format!("blacklist[{index}]"), "an app id", entry))
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(self.wrong("blacklist", "an array of app ids", other)),
        };
        let apps = match self.get("apps") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(apps)) => {
                let mut read = Vec::with_capacity(apps.len());
                for (app_id, app) in apps {
                    let path = format!("apps.{app_id}");
                    let Value::Object(app) = app else {
                        return Err(self.wrong(&path, "an object", app));
                    };
                    let name = match app.get("name") {
                        Some(Value::String(name)) if !name.is_empty() => name.clone(),
                        None | Some(Value::Null | Value::String(_)) => {
                            return Err(self.reject(&format!("{path}.name"), "is required"))
                        }
                        Some(other) => return Err(self.wrong(&format!("{path}.name"), "a string", other)),
                    };
                    let allowed_users = match app.get("allowed_users") {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(text)) => text.clone(),
                        Some(other) => return Err(self.wrong(&format!("{path}.allowed_users"), "a string", other)),
                    };
                    let specific_users = match app.get("users") {
                        None | Some(Value::Null) => 0,
                        Some(Value::Array(users)) => i64::try_from(users.len()).unwrap_or(i64::MAX),
                        Some(other) => return Err(self.wrong(&format!("{path}.users"), "an array", other)),
                    };
                    read.push(StoreApp {
                        blacklisted: blacklist.contains(&app_id.as_str()),
                        app_id: app_id.clone(),
                        name,
                        allowed_users,
                        specific_users,
                    });
                }
                read
            }
            Some(other) => return Err(self.wrong("apps", "an object of apps", other)),
        };
        Ok(AppStoreRecord {
            apps,
            presence: self.presence()?,
        })
    }

    fn port_request(&self) -> Result<PortRequestRecord, Rejection> {
        let account = match self.optional_string("pvt_account_id")? {
            Some(text) if !text.is_empty() => self.account_id("pvt_account_id", text)?,
            _ => return Err(self.reject("pvt_account_id", "is required")),
        };
        let number_count = match self.get("numbers") {
            None | Some(Value::Null) => 0,
            Some(Value::Object(numbers)) => i64::try_from(numbers.len()).unwrap_or(i64::MAX),
            Some(other) => return Err(self.wrong("numbers", "an object of numbers", other)),
        };
        let transitions = match self.get("pvt_transitions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(entries)) => {
                let mut transitions = Vec::with_capacity(entries.len());
                for (index, entry) in entries.iter().enumerate() {
                    let path = format!("pvt_transitions[{index}].transition.new");
                    let new = entry
                        .as_object()
                        .and_then(|entry| entry.get("transition"))
                        .and_then(Value::as_object)
                        .and_then(|transition| transition.get("new"));
                    transitions.push(match new {
                        None | Some(Value::Null) => None,
                        Some(Value::String(state)) => Some(state.clone()),
                        Some(other) => return Err(self.wrong(&path, "a state", other)),
                    });
                }
                transitions
            }
            Some(other) => return Err(self.wrong("pvt_transitions", "an array", other)),
        };
        Ok(PortRequestRecord {
            account,
            state: self.optional_label("pvt_port_state")?,
            number_count,
            transitions,
            presence: self.presence()?,
        })
    }

    fn number(&self, id: &str, classifiers: &NumberClassifiers) -> Result<NumberRecord, Rejection> {
        let carrier_module = match self.optional_label("pvt_module_name")? {
            Some(module) => module,
            None => return Err(self.reject("pvt_module_name", "is required")),
        };
        let features = match self.get("pvt_features") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(features)) => features.keys().cloned().collect(),
            Some(Value::Array(features)) => features
                .iter()
                .enumerate()
                .map(|(index, feature)| match feature {
                    Value::String(name) => Ok(name.clone()),
                    other => Err(self.wrong(&format!("pvt_features[{index}]"), "a feature name", other)),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(self.wrong("pvt_features", "an object of features", other)),
        };
        let assigned = self.optional_account_id("pvt_assigned_to")?;
        let state = self.optional_string("pvt_state")?;
        Ok(NumberRecord {
            assigned_to: assigned.filter(|_| number_state_is_billed(state)),
            carrier_module,
            features,
            classification: classifiers.classify(id).map(str::to_owned),
            presence: self.presence()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MASTER: &str = "00000000000000000000000000000001";
    const RESELLER: &str = "0000000000000000000000000000000a";
    const CUSTOMER: &str = "0000000000000000000000000000000b";

    fn read(database: &str, document: Value) -> Result<Reading, Rejection> {
        read_document(
            &Database::parse(database),
            &document,
            &NumberClassifiers::kazoo_defaults(),
        )
    }

    fn record(database: &str, document: Value) -> InventoryRecord {
        match read(database, document) {
            Ok(Reading::Change(InventoryChange {
                change: Change::Upsert(record),
                ..
            })) => record,
            other => panic!("expected a record, got {other:?}"),
        }
    }

    fn rejected(database: &str, document: Value) -> Rejection {
        read(database, document).expect_err("rejected")
    }

    fn account_db(id: &str) -> String {
        format!("account%2F{}%2F{}%2F{}", &id[..2], &id[2..4], &id[4..])
    }

    fn id(text: &str) -> AccountId {
        AccountId::parse(text).expect("id")
    }

    #[test]
    fn an_account_document_names_its_parent_reseller_and_secrets() {
        let read = record(
            "accounts",
            json!({"_id": CUSTOMER, "pvt_type": "account", "pvt_tree": [MASTER, RESELLER], "name": "Acme",
                   "pvt_reseller_id": RESELLER, "billing_id": RESELLER, "pvt_api_key": "k3y",
                   "pvt_enabled": true}),
        );
        let InventoryRecord::Account(account) = read else {
            panic!("account")
        };
        assert_eq!(account.id, id(CUSTOMER));
        assert_eq!(account.parent, Some(id(RESELLER)));
        assert_eq!(account.reseller_id, Some(id(RESELLER)));
        assert_eq!(account.billing_id.as_deref(), Some(RESELLER));
        assert_eq!(account.api_key.as_ref().map(Secret::expose), Some("k3y"));
        assert!(!account.is_reseller);
        assert!(account.presence.counts());
        assert!(!format!("{account:?}").contains("k3y"), "the api key never prints");
    }

    #[test]
    fn the_master_has_an_empty_tree_and_pvt_enabled_false_disables() {
        let InventoryRecord::Account(master) = record(
            "accounts",
            json!({"_id": MASTER, "pvt_type": "account", "pvt_tree": [], "pvt_reseller": true, "pvt_enabled": false}),
        ) else {
            panic!("account")
        };
        assert_eq!(master.parent, None);
        assert!(master.is_reseller);
        assert!(!master.presence.enabled);
    }

    #[test]
    fn bad_account_documents_name_the_field() {
        let problem = rejected("accounts", json!({"_id": "master", "pvt_tree": []}));
        assert_eq!(problem.path, "_id");
        let problem = rejected("accounts", json!({"_id": CUSTOMER, "pvt_tree": [MASTER, 7]}));
        assert_eq!(problem.path, "pvt_tree[1]");
        let problem = rejected("accounts", json!({"_id": CUSTOMER}));
        assert_eq!(problem.path, "pvt_tree");
        let problem = rejected("accounts", json!({"_id": CUSTOMER, "pvt_tree": [CUSTOMER]}));
        assert_eq!(problem.path, "pvt_tree[0]");
        assert_eq!(
            problem.to_string(),
            format!("accounts {CUSTOMER}: pvt_tree[0]: an account cannot be its own ancestor")
        );
    }

    #[test]
    fn inventory_of_an_account_database_by_type() {
        let db = account_db(CUSTOMER);
        assert_eq!(
            record(
                &db,
                json!({"_id": "u1", "pvt_type": "user", "username": "ann", "pvt_md5_auth": "abc",
                               "qubicle": {"enabled": true, "recipient": {"offering": "pro"}}})
            ),
            InventoryRecord::User(UserRecord {
                priv_level: "user".to_owned(),
                qubicle_enabled: true,
                qubicle_offering: Some("pro".to_owned()),
                presence: Presence::COUNTED,
                username: Some("ann".to_owned()),
                md5_auth: Some(Secret::new("abc")),
            })
        );
        assert_eq!(
            record(&db, json!({"_id": "d1", "pvt_type": "device", "enabled": false})),
            InventoryRecord::Device(DeviceRecord {
                device_type: None,
                presence: Presence {
                    enabled: false,
                    deleted: false
                },
            })
        );
        assert_eq!(
            record(
                &db,
                json!({"_id": "limits", "pvt_type": "limits", "twoway_trunks": "5", "inbound_trunks": 2})
            ),
            InventoryRecord::Limits(LimitsRecord {
                twoway_trunks: 5,
                inbound_trunks: 2,
                outbound_trunks: 0,
                presence: Presence::COUNTED,
            })
        );
        assert!(matches!(
            record(
                &db,
                json!({"_id": "v", "pvt_type": "vmbox", "transcribe": "true", "pvt_deleted": true})
            ),
            InventoryRecord::Vmbox(VmboxRecord {
                transcribe: true,
                presence: Presence { deleted: true, .. }
            })
        ));
    }

    #[test]
    fn the_app_store_lists_its_apps_with_the_blacklist_applied() {
        let InventoryRecord::AppStore(store) = record(
            &account_db(CUSTOMER),
            json!({"_id": "apps_store", "blacklist": ["a2"], "apps": {
                "a1": {"name": "voip", "allowed_users": "all"},
                "a2": {"name": "fax", "allowed_users": "specific", "users": [{"id": "u"}, {"id": "v"}]}}}),
        ) else {
            panic!("app store")
        };
        assert_eq!(store.apps.len(), 2);
        assert!(!store.apps[0].blacklisted);
        assert!(store.apps[1].blacklisted);
        assert_eq!(store.apps[1].specific_users, 2);
        let problem = rejected(
            &account_db(CUSTOMER),
            json!({"_id": "apps_store", "apps": {"a1": {"allowed_users": "all"}}}),
        );
        assert_eq!(problem.path, "apps.a1.name");
    }

    #[test]
    fn numbers_are_classified_and_billed_only_while_assigned() {
        let InventoryRecord::Number(number) = record(
            "numbers%2F%2B1415",
            json!({"_id": "+14155550100", "pvt_type": "number", "pvt_module_name": "knm_telnyx",
                   "pvt_assigned_to": CUSTOMER, "pvt_state": "in_service", "pvt_features": {"e911": {}, "cnam": {}}}),
        ) else {
            panic!("number")
        };
        assert_eq!(number.assigned_to, Some(id(CUSTOMER)));
        assert_eq!(number.classification.as_deref(), Some("did_us"));
        assert_eq!(number.features, vec!["e911".to_owned(), "cnam".to_owned()]);
        let InventoryRecord::Number(released) = record(
            "numbers/+1415",
            json!({"_id": "+14155550101", "pvt_module_name": "knm_local", "pvt_assigned_to": CUSTOMER,
                   "pvt_state": "available", "pvt_features": ["local"]}),
        ) else {
            panic!("number")
        };
        assert_eq!(released.assigned_to, None);
        assert_eq!(released.features, vec!["local".to_owned()]);
        let problem = rejected(
            "numbers/+1415",
            json!({"_id": "+14155550102", "pvt_module_name": "knm_local", "pvt_assigned_to": 12}),
        );
        assert_eq!(
            (problem.path.as_str(), problem.database.as_str()),
            ("pvt_assigned_to", "numbers/+1415")
        );
    }

    #[test]
    fn port_requests_count_numbers_and_transitions() {
        let InventoryRecord::PortRequest(request) = record(
            "port_requests",
            json!({"_id": "p1", "pvt_type": "port_request", "pvt_account_id": CUSTOMER, "pvt_port_state": "submitted",
                   "numbers": {"+14155550100": {}, "+14155550101": {}},
                   "pvt_transitions": [{"transition": {"new": "submitted"}}, {"transition": {}}]}),
        ) else {
            panic!("port request")
        };
        assert_eq!(request.number_count, 2);
        assert_eq!(request.transitions, vec![Some("submitted".to_owned()), None]);
    }

    #[test]
    fn tombstones_remove_and_other_documents_are_ignored_by_type() {
        let db = account_db(CUSTOMER);
        assert!(matches!(
            read(&db, json!({"_id": "d1", "_rev": "2-x", "_deleted": true})),
            Ok(Reading::Change(InventoryChange {
                change: Change::Remove,
                ..
            }))
        ));
        assert_eq!(
            read(&db, json!({"_id": "cf1", "pvt_type": "callflow"})),
            Ok(Reading::Ignored {
                kind: "callflow".to_owned()
            })
        );
        assert_eq!(
            read(&db, json!({"_id": "+14155550100", "pvt_type": "number"})),
            Ok(Reading::Ignored {
                kind: "number".to_owned()
            })
        );
        assert_eq!(
            read("services", json!({"_id": CUSTOMER, "pvt_type": "service"})),
            Ok(Reading::Ignored {
                kind: "database services".to_owned()
            })
        );
        assert_eq!(
            read(&db, json!({"_id": "_design/services"})),
            Ok(Reading::Ignored {
                kind: "design".to_owned()
            })
        );
    }

    #[test]
    fn documents_without_a_usable_id_are_rejected() {
        assert_eq!(rejected("accounts", json!([1])).path, "$");
        assert_eq!(rejected("accounts", json!({"pvt_tree": []})).path, "_id");
        assert_eq!(rejected("accounts", json!({"_id": 5})).path, "_id");
    }

    #[test]
    fn fields_of_the_wrong_type_are_rejected_with_their_path() {
        let db = account_db(CUSTOMER);
        let problem = rejected(&db, json!({"_id": "d", "pvt_type": "device", "device_type": ["x"]}));
        assert_eq!(problem.path, "device_type");
        assert_eq!(problem.problem, "expected a string, found an array");
        let problem = rejected(&db, json!({"_id": "l", "pvt_type": "limits", "twoway_trunks": "many"}));
        assert_eq!(problem.path, "twoway_trunks");
        let problem = rejected(&db, json!({"_id": "v", "pvt_type": "vmbox", "transcribe": 3}));
        assert_eq!(problem.path, "transcribe");
    }
}
