//! The platform's inventory as tally keeps it: what a Kazoo document (an account, a
//! user, a device, a number…) becomes once read, before the store writes it.
//!
//! Pure values and rules only: which database a name designates (`account/xx/yy/rest`,
//! its URL-encoded form and the raw id all name one account), Kazoo's exclusion rule
//! for `enabled`/`pvt_deleted` (`quantities.md` §1), and the records each document type
//! maps to. Reading JSON into these values is `wire::kazoo`'s job; writing them is the
//! store's. Phone-number classification lives in [`crate::domain::classify`].

use super::AccountId;
use std::fmt;

/// An account id as Kazoo writes it: 32 lowercase hexadecimal characters.
///
/// Ingestion is stricter than [`AccountId::parse`] (which accepts any non-empty text,
/// for hand-made test data): a platform's document naming an account any other way is
/// a data error to report, not an account to create.
pub fn parse_kazoo_account_id(text: &str) -> Result<AccountId, InvalidAccountId> {
    let valid = text.len() == 32 && text.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
    if !valid {
        return Err(InvalidAccountId { text: text.to_owned() });
    }
    AccountId::parse(text).map_err(|_| InvalidAccountId { text: text.to_owned() })
}

/// The error of [`parse_kazoo_account_id`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an account id (32 lowercase hexadecimal characters)")]
pub struct InvalidAccountId {
    pub text: String,
}

/// The CouchDB database a document comes from, which says what the document is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Database {
    /// `accounts`: the account definitions.
    Accounts,
    /// An account's own database: its users, devices, boxes, limits, apps…
    Account(AccountId),
    /// A number database (`numbers/+1415`…): phone-number documents.
    Numbers(String),
    /// `port_requests`: port requests of every account.
    PortRequests,
    /// Anything else (`services`, `system_config`, an account's MODB…): not inventory.
    Other(String),
}

impl Database {
    /// Reads a database name in any of the forms Kazoo and CouchDB use: encoded
    /// (`account%2Fxx%2Fyy%2Frest`), unencoded (`account/xx/yy/rest`), the raw account
    /// id, and the slash-less form some servers list (`accountxxyyrest`).
    pub fn parse(name: &str) -> Database {
        let decoded = decode_database_name(name);
        if decoded == "accounts" {
            return Database::Accounts;
        }
        if decoded == "port_requests" {
            return Database::PortRequests;
        }
        if let Some(rest) = decoded.strip_prefix("numbers") {
            let rest = rest.strip_prefix('/').unwrap_or(rest);
            if !rest.is_empty() {
                return Database::Numbers(rest.to_owned());
            }
        }
        if let Some(account) = account_of_database(&decoded) {
            return Database::Account(account);
        }
        Database::Other(decoded)
    }

    /// The name tally stores and prints: unencoded, with slashes.
    pub fn canonical_name(&self) -> String {
        match self {
            Database::Accounts => "accounts".to_owned(),
            Database::PortRequests => "port_requests".to_owned(),
            Database::Numbers(range) => format!("numbers/{range}"),
            Database::Account(account) => {
                let id = account.as_str();
                format!("account/{}/{}/{}", &id[..2], &id[2..4], &id[4..])
            }
            Database::Other(name) => name.clone(),
        }
    }

    /// Whether documents of this database can be inventory (the follower reads these).
    pub fn holds_inventory(&self) -> bool {
        match self {
            Database::Accounts | Database::Account(_) | Database::Numbers(_) | Database::PortRequests => true,
            Database::Other(_) => false,
        }
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical_name())
    }
}

/// Undoes the URL encoding CouchDB database names travel in (`%2F`, `%2B`, `%2f`…).
fn decode_database_name(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            let hex = &name[index + 1..index + 3];
            if let Ok(byte) = u8::from_str_radix(hex, 16) {
                decoded.push(byte);
                index += 3;
                continue;
            }
        }
        decoded.push(bytes[index]);
        index += 1;
    }
    String::from_utf8(decoded).unwrap_or_else(|_| name.to_owned())
}

/// The account of an account database name, in its unencoded forms, or of a raw id.
/// MODBs (`account/xx/yy/rest-YYYYMM`) and YODBs are not account databases.
fn account_of_database(decoded: &str) -> Option<AccountId> {
    let compact: String = match decoded.strip_prefix("account") {
        Some(rest) => rest.chars().filter(|character| *character != '/').collect(),
        None => decoded.to_owned(),
    };
    parse_kazoo_account_id(&compact).ok()
}

/// Kazoo's exclusion rule (`quantities.md` §1): what an `enabled` member says.
///
/// A member that is false, `"false"`, null, 0 or `""` disables the document (the view's
/// semantics); a missing member, or any other value, leaves it enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnabledMember<'a> {
    Missing,
    Null,
    Bool(bool),
    /// A number, by its text (`0`, `0.0` and `-0` are zero).
    Number(&'a str),
    String(&'a str),
    /// An array or an object.
    Other,
}

impl EnabledMember<'_> {
    pub fn enables(self) -> bool {
        match self {
            EnabledMember::Missing | EnabledMember::Other => true,
            EnabledMember::Null => false,
            EnabledMember::Bool(value) => value,
            EnabledMember::Number(text) => !is_zero_number(text),
            EnabledMember::String(text) => !(text.is_empty() || text == "false"),
        }
    }
}

fn is_zero_number(text: &str) -> bool {
    let digits = text.trim_start_matches('-');
    let mantissa = digits.split(['e', 'E']).next().unwrap_or(digits);
    !mantissa.is_empty() && mantissa.chars().all(|character| character == '0' || character == '.')
}

/// Whether a document counts, before its type's own rules: not deleted, not disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    pub enabled: bool,
    /// `pvt_deleted` is true.
    pub deleted: bool,
}

impl Presence {
    pub const COUNTED: Presence = Presence {
        enabled: true,
        deleted: false,
    };

    pub fn counts(self) -> bool {
        self.enabled && !self.deleted
    }
}

/// A document's id inside its database.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId(String);

impl DocumentId {
    pub fn parse(text: impl Into<String>) -> Option<DocumentId> {
        let text = text.into();
        (!text.is_empty()).then_some(DocumentId(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One inventory change read from one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryChange {
    pub database: Database,
    pub id: DocumentId,
    pub change: Change,
}

/// What a document does to tally's inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The document exists with this content (created or updated).
    Upsert(InventoryRecord),
    /// A `_deleted` tombstone: whatever this document put in the inventory goes.
    Remove,
}

impl InventoryChange {
    /// The account whose quantities the change touches directly, where the document
    /// itself says (account documents, account databases, numbers, port requests).
    pub fn account(&self) -> Option<&AccountId> {
        match (&self.change, &self.database) {
            (Change::Upsert(InventoryRecord::Account(account)), _) => Some(&account.id),
            (Change::Upsert(InventoryRecord::Number(number)), _) => number.assigned_to.as_ref(),
            (Change::Upsert(InventoryRecord::PortRequest(request)), _) => Some(&request.account),
            (_, Database::Account(account)) => Some(account),
            _ => None,
        }
    }
}

/// The record a document of a known type becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryRecord {
    Account(AccountRecord),
    User(UserRecord),
    Device(DeviceRecord),
    Vmbox(VmboxRecord),
    Faxbox(Presence),
    Conference(Presence),
    Limits(LimitsRecord),
    Whitelabel(WhitelabelRecord),
    AppStore(AppStoreRecord),
    DedicatedIp(DedicatedIpRecord),
    QubicleQueue(QubicleQueueRecord),
    PortRequest(PortRequestRecord),
    Number(NumberRecord),
}

impl InventoryRecord {
    /// The document type's name in reports (Kazoo's `pvt_type`).
    pub fn kind(&self) -> &'static str {
        match self {
            InventoryRecord::Account(_) => "account",
            InventoryRecord::User(_) => "user",
            InventoryRecord::Device(_) => "device",
            InventoryRecord::Vmbox(_) => "vmbox",
            InventoryRecord::Faxbox(_) => "faxbox",
            InventoryRecord::Conference(_) => "conference",
            InventoryRecord::Limits(_) => "limits",
            InventoryRecord::Whitelabel(_) => "whitelabel",
            InventoryRecord::AppStore(_) => "app_store",
            InventoryRecord::DedicatedIp(_) => "dedicated_ip",
            InventoryRecord::QubicleQueue(_) => "qubicle_queue",
            InventoryRecord::PortRequest(_) => "port_request",
            InventoryRecord::Number(_) => "number",
        }
    }
}

/// An account definition (`pvt_type` `account`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub id: AccountId,
    /// The last element of `pvt_tree`; `None` for the root (the master account).
    pub parent: Option<AccountId>,
    pub name: String,
    pub is_reseller: bool,
    /// `pvt_reseller_id`, when the document names one.
    pub reseller_id: Option<AccountId>,
    pub billing_id: Option<String>,
    /// `pvt_enabled` (and `enabled`) and `pvt_deleted`.
    pub presence: Presence,
    /// `pvt_api_key`: a secret, kept for the API's `api_auth` and never printed.
    pub api_key: Option<Secret>,
}

/// A user (`pvt_type` `user`): `users.<priv_level>` and `qubicle.<offering>_recipient`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// `priv_level`; a user without one counts as `user`.
    pub priv_level: String,
    /// `qubicle.enabled` is true.
    pub qubicle_enabled: bool,
    /// `qubicle.recipient.offering`; `None` is `basic`.
    pub qubicle_offering: Option<String>,
    pub presence: Presence,
    /// `username`, for the API's `user_auth`.
    pub username: Option<String>,
    /// `pvt_md5_auth`: md5 of `username:password`, a secret never printed.
    pub md5_auth: Option<Secret>,
}

/// A device (`pvt_type` `device`): `devices.<device_type>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// `device_type`; `None` is `sip_device`.
    pub device_type: Option<String>,
    pub presence: Presence,
}

/// A voicemail box: `voicemails.mailbox`, and `voicemails.transcription` when it transcribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmboxRecord {
    pub transcribe: bool,
    pub presence: Presence,
}

/// The account's limits document: `limits.<kind>_trunks` when above zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsRecord {
    pub twoway_trunks: i64,
    pub inbound_trunks: i64,
    pub outbound_trunks: i64,
    pub presence: Presence,
}

/// The account's whitelabel document: `branding.whitelabel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhitelabelRecord {
    pub domain: Option<String>,
    pub presence: Presence,
}

/// The app store document: `account_apps.<name>` and `user_apps.<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStoreRecord {
    pub apps: Vec<StoreApp>,
    pub presence: Presence,
}

/// One entry of the app store's `apps` map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreApp {
    /// The key of the entry (the app id).
    pub app_id: String,
    /// The app's `name`: the item counted.
    pub name: String,
    /// The app id is in the store's `blacklist`.
    pub blacklisted: bool,
    /// `allowed_users`: `all`, `admins`, `specific`, or anything else (counts nothing).
    pub allowed_users: String,
    /// Length of the app's `users` array (for `specific`).
    pub specific_users: i64,
}

/// A dedicated IP: `ips.dedicated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedicatedIpRecord {
    pub ip: String,
    pub presence: Presence,
}

/// A qubicle queue: `qubicle.<offering>_queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QubicleQueueRecord {
    /// `pvt_offering`; `None` is `basic`.
    pub offering: Option<String>,
    pub presence: Presence,
}

/// A port request: `port_request.<state>` and `port_request.first_<state>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequestRecord {
    /// `pvt_account_id`.
    pub account: AccountId,
    /// `pvt_port_state`; `None` is `unconfirmed`.
    pub state: Option<String>,
    /// Number of keys in `numbers`.
    pub number_count: i64,
    /// `transition.new` of each `pvt_transitions` entry, in order (`None` is `unconfirmed`).
    pub transitions: Vec<Option<String>>,
    pub presence: Presence,
}

/// A phone number of a number database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRecord {
    /// The account billed for it: `pvt_assigned_to` while the number is in a billed
    /// state ([`number_state_is_billed`]); `None` otherwise (the number leaves the
    /// inventory).
    pub assigned_to: Option<AccountId>,
    /// `pvt_module_name`, e.g. `knm_local`.
    pub carrier_module: String,
    /// The keys of `pvt_features` (or its entries, in the older list form).
    pub features: Vec<String>,
    /// The first matching classifier; `None` when none matches.
    pub classification: Option<String>,
    pub presence: Presence,
}

/// Whether a number in this `pvt_state` sits in its assigned account's database, and so
/// is counted there (Kazoo mirrors assigned numbers into the account database; numbers
/// `available`, in `discovery`, `aging`, `released` or `deleted` belong to nobody).
pub fn number_state_is_billed(state: Option<&str>) -> bool {
    match state {
        None => true,
        Some(state) => !matches!(state, "available" | "discovery" | "aging" | "released" | "deleted"),
    }
}

/// Why a change cannot be applied yet: it names an account tally does not know, or
/// would give the tree a second root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceProblem {
    /// An account whose parent (the last element of `pvt_tree`) is unknown.
    UnknownParent { parent: AccountId },
    /// A root account (empty `pvt_tree`) when the tree already has another root.
    SecondRoot { root: AccountId },
    /// An object of, or a number assigned to, an account that is unknown.
    UnknownAccount { account: AccountId },
}

impl ReferenceProblem {
    /// The account whose arrival may make the change applicable.
    pub fn waiting_for(&self) -> Option<&AccountId> {
        match self {
            ReferenceProblem::UnknownParent { parent } => Some(parent),
            ReferenceProblem::UnknownAccount { account } => Some(account),
            ReferenceProblem::SecondRoot { .. } => None,
        }
    }

    /// The JSON path of the field that names the problem, for rejection messages.
    pub fn path(&self, change: &InventoryChange) -> &'static str {
        match (self, &change.change) {
            (ReferenceProblem::UnknownParent { .. } | ReferenceProblem::SecondRoot { .. }, _) => "pvt_tree",
            (ReferenceProblem::UnknownAccount { .. }, Change::Upsert(InventoryRecord::Number(_))) => "pvt_assigned_to",
            (ReferenceProblem::UnknownAccount { .. }, Change::Upsert(InventoryRecord::PortRequest(_))) => {
                "pvt_account_id"
            }
            (ReferenceProblem::UnknownAccount { .. }, _) => "$",
        }
    }
}

impl fmt::Display for ReferenceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReferenceProblem::UnknownParent { parent } => write!(f, "the parent account {parent} is unknown"),
            ReferenceProblem::SecondRoot { root } => {
                write!(
                    f,
                    "a second root account: the tree's root is {root} (give it a pvt_tree)"
                )
            }
            ReferenceProblem::UnknownAccount { account } => write!(f, "the account {account} is unknown"),
        }
    }
}

/// Checks a batch's references against the accounts already stored (`existing`, the
/// stored ones among those the batch names) and the stored root. Accounts of the batch
/// count as known when their own references hold, whatever their order in the batch,
/// so a child may come before its parent. Returns one verdict per change, in order.
pub fn check_references(
    changes: &[InventoryChange],
    existing: &std::collections::HashSet<AccountId>,
    root: Option<&AccountId>,
) -> Vec<Option<ReferenceProblem>> {
    use std::collections::{HashMap, HashSet};
    // The last version of each account in the batch decides its parent.
    let mut candidates: HashMap<&AccountId, Option<&AccountId>> = HashMap::new();
    for change in changes {
        if let Change::Upsert(InventoryRecord::Account(account)) = &change.change {
            candidates.insert(&account.id, account.parent.as_ref());
        }
    }
    let mut known: HashSet<&AccountId> = existing.iter().collect();
    let mut root: Option<&AccountId> = root;
    let mut verdicts: HashMap<&AccountId, Option<ReferenceProblem>> = HashMap::new();
    // Roots first, in batch order, so "the first root wins" is well defined.
    for change in changes {
        if let Change::Upsert(InventoryRecord::Account(account)) = &change.change {
            if candidates.get(&account.id) == Some(&None) && !verdicts.contains_key(&account.id) {
                let verdict = match root {
                    Some(existing_root) if existing_root != &account.id => Some(ReferenceProblem::SecondRoot {
                        root: existing_root.clone(),
                    }),
                    _ => {
                        root = Some(&account.id);
                        known.insert(&account.id);
                        None
                    }
                };
                verdicts.insert(&account.id, verdict);
            }
        }
    }
    // Then children whose parent is known, until nothing more can be decided.
    loop {
        let mut progressed = false;
        for (account, parent) in &candidates {
            if let Some(parent) = parent {
                if !verdicts.contains_key(account) && known.contains(parent) {
                    verdicts.insert(account, None);
                    known.insert(account);
                    progressed = true;
                }
            }
        }
        if !progressed {
            break;
        }
    }
    changes
        .iter()
        .map(|change| match &change.change {
            Change::Remove => None,
            Change::Upsert(InventoryRecord::Account(account)) => match verdicts.get(&account.id) {
                Some(verdict) => verdict.clone(),
                None => Some(ReferenceProblem::UnknownParent {
                    parent: account.parent.clone().expect("roots were all decided above"),
                }),
            },
            Change::Upsert(_) => match change.account() {
                Some(account) if !known.contains(account) => Some(ReferenceProblem::UnknownAccount {
                    account: account.clone(),
                }),
                _ => None,
            },
        })
        .collect()
}

/// How far a feed of one database has been applied: CouchDB's `last_seq`, kept per
/// source (the server, credentials left out) and database, written in the same
/// transaction as the documents it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The feed's origin, e.g. `http://127.0.0.1:5984/` (never with credentials).
    pub source: String,
    /// The database's canonical name ([`Database::canonical_name`]).
    pub database: String,
    /// CouchDB's opaque sequence text (a number or a string).
    pub last_seq: String,
}

/// A value that must never be printed (API keys, password digests): its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str) -> Database {
        Database::Account(AccountId::parse(id).expect("id"))
    }

    const ID: &str = "4fa2c3d45e6f708192a3b4c5d6e7f809";

    #[test]
    fn every_form_of_an_account_database_names_the_same_account() {
        for name in [
            "account/4f/a2/c3d45e6f708192a3b4c5d6e7f809",
            "account%2F4f%2Fa2%2Fc3d45e6f708192a3b4c5d6e7f809",
            "account%2f4f%2fa2%2fc3d45e6f708192a3b4c5d6e7f809",
            "account4fa2c3d45e6f708192a3b4c5d6e7f809",
            ID,
        ] {
            assert_eq!(Database::parse(name), account(ID), "{name}");
        }
        assert_eq!(
            account(ID).canonical_name(),
            "account/4f/a2/c3d45e6f708192a3b4c5d6e7f809"
        );
    }

    #[test]
    fn monthly_databases_and_bad_ids_are_not_account_databases() {
        assert_eq!(
            Database::parse("account%2F4f%2Fa2%2Fc3d45e6f708192a3b4c5d6e7f809-202611"),
            Database::Other("account/4f/a2/c3d45e6f708192a3b4c5d6e7f809-202611".to_owned())
        );
        assert!(matches!(
            Database::parse("account/4F/A2/C3D45E6F708192A3B4C5D6E7F809"),
            Database::Other(_)
        ));
        assert!(matches!(Database::parse("services"), Database::Other(_)));
    }

    #[test]
    fn number_databases_keep_their_range() {
        assert_eq!(
            Database::parse("numbers%2F%2B1415"),
            Database::Numbers("+1415".to_owned())
        );
        assert_eq!(Database::parse("numbers/+1415"), Database::Numbers("+1415".to_owned()));
        assert_eq!(Database::parse("numbers+1415"), Database::Numbers("+1415".to_owned()));
        assert_eq!(Database::Numbers("+1415".to_owned()).canonical_name(), "numbers/+1415");
        assert_eq!(Database::parse("accounts"), Database::Accounts);
        assert_eq!(Database::parse("port_requests"), Database::PortRequests);
    }

    #[test]
    fn the_enabled_member_follows_the_view() {
        let disabled = [
            EnabledMember::Bool(false),
            EnabledMember::String("false"),
            EnabledMember::Null,
            EnabledMember::Number("0"),
            EnabledMember::Number("0.0"),
            EnabledMember::String(""),
        ];
        for member in disabled {
            assert!(!member.enables(), "{member:?}");
        }
        let enabled = [
            EnabledMember::Missing,
            EnabledMember::Bool(true),
            EnabledMember::String("true"),
            EnabledMember::String("no"),
            EnabledMember::Number("1"),
            EnabledMember::Other,
        ];
        for member in enabled {
            assert!(member.enables(), "{member:?}");
        }
    }

    #[test]
    fn kazoo_account_ids_are_32_lowercase_hex() {
        assert!(parse_kazoo_account_id(ID).is_ok());
        assert!(parse_kazoo_account_id("master").is_err());
        assert!(parse_kazoo_account_id(&ID.to_uppercase()).is_err());
        assert!(parse_kazoo_account_id(&ID[1..]).is_err());
    }

    #[test]
    fn numbers_of_nobody_are_not_billed() {
        assert!(number_state_is_billed(Some("in_service")));
        assert!(number_state_is_billed(Some("port_in")));
        assert!(number_state_is_billed(None));
        assert!(!number_state_is_billed(Some("available")));
        assert!(!number_state_is_billed(Some("deleted")));
    }

    fn account_change(id: &str, parent: Option<&str>) -> InventoryChange {
        InventoryChange {
            database: Database::Accounts,
            id: DocumentId::parse(id).expect("id"),
            change: Change::Upsert(InventoryRecord::Account(AccountRecord {
                id: AccountId::parse(id).expect("id"),
                parent: parent.map(|parent| AccountId::parse(parent).expect("id")),
                name: String::new(),
                is_reseller: false,
                reseller_id: None,
                billing_id: None,
                presence: Presence::COUNTED,
                api_key: None,
            })),
        }
    }

    fn device_of(account: &str) -> InventoryChange {
        InventoryChange {
            database: Database::Account(AccountId::parse(account).expect("id")),
            id: DocumentId::parse("device").expect("id"),
            change: Change::Upsert(InventoryRecord::Device(DeviceRecord {
                device_type: None,
                presence: Presence::COUNTED,
            })),
        }
    }

    fn ids(names: &[&str]) -> std::collections::HashSet<AccountId> {
        names.iter().map(|name| AccountId::parse(*name).expect("id")).collect()
    }

    #[test]
    fn a_child_may_come_before_its_parent_in_a_batch() {
        let changes = [
            account_change("c", Some("p")),
            account_change("p", Some("m")),
            device_of("c"),
        ];
        let verdicts = check_references(&changes, &ids(&["m"]), Some(&AccountId::parse("m").expect("id")));
        assert_eq!(verdicts, vec![None, None, None]);
    }

    #[test]
    fn unknown_parents_accounts_and_second_roots_are_named() {
        let master = AccountId::parse("m").expect("id");
        let changes = [
            account_change("orphan", Some("nowhere")),
            account_change("other_root", None),
            device_of("stranger"),
            account_change("below_orphan", Some("orphan")),
        ];
        let verdicts = check_references(&changes, &ids(&["m"]), Some(&master));
        let nowhere = AccountId::parse("nowhere").expect("id");
        assert_eq!(
            verdicts[0],
            Some(ReferenceProblem::UnknownParent {
                parent: nowhere.clone()
            })
        );
        assert_eq!(verdicts[1], Some(ReferenceProblem::SecondRoot { root: master }));
        assert_eq!(
            verdicts[2],
            Some(ReferenceProblem::UnknownAccount {
                account: AccountId::parse("stranger").expect("id")
            })
        );
        assert_eq!(
            verdicts[0].as_ref().and_then(ReferenceProblem::waiting_for),
            Some(&nowhere)
        );
        assert!(verdicts[3].is_some(), "an account below a refused one waits too");
    }

    #[test]
    fn the_first_root_of_an_empty_tree_wins() {
        let changes = [
            account_change("m", None),
            account_change("n", None),
            account_change("m", None),
        ];
        let verdicts = check_references(&changes, &ids(&[]), None);
        assert_eq!(verdicts[0], None);
        assert!(matches!(verdicts[1], Some(ReferenceProblem::SecondRoot { .. })));
        assert_eq!(verdicts[2], None);
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("abc")), "Secret(…)");
    }
}
