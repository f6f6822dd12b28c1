//! The operations layer: every services and service-plans operation of `api.md`, one
//! function each, shared by the command line (`tally services …`, `tally plans …`) and
//! the HTTP API (`tally serve`).
//!
//! An operation takes a [`Caller`] (who asks, with which rights, and what to write in
//! the audit log), the target account, and its input as the JSON `data` member of a
//! request; it checks permissions, validates the input (errors name the failing field),
//! reads and writes through the store, commits (reprices the account at once, so the
//! audit log shows the change with who made it) and returns the response `data`. Both
//! faces only translate: arguments or HTTP requests in, JSON or tables out, so the same
//! operation gives the same data on both.
//!
//! Writes are saved with the account's repricing mark in one transaction before the
//! commit: if the process dies in between, the next sync run finishes the commit, and a
//! commit that fails is logged while the write is answered as saved. A write that
//! modifies what is stored reads it inside that transaction, under the account's
//! write lock (`Store::modify_services`), so concurrent writers never lose a change.

mod audit;
mod error;
mod input;
mod inventory;
mod plans;
mod services;
mod summary;
mod topup;

pub use error::{FieldError, OpsError};
pub use plans::ImportReport;

use crate::domain::summary::GregorianSeconds;
use crate::domain::AccountId;
use crate::jobs::context::JobContext;
use crate::store::{AccountNode, Store};

/// Who asks, and with which rights.
#[derive(Debug, Clone)]
pub struct Caller {
    pub rights: Rights,
    /// What the audit rows of this caller's changes say about the request
    /// (`audit-and-summaries.md` §2: `crossbar_request`, `authentication`, `request`,
    /// or our `agent` of type `operator` for the command line). The operation adds
    /// `account` and `changes`.
    pub audit: serde_json::Value,
}

/// The rights of a caller (`api.md` §1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rights {
    /// An operator at the command line, with access to the database: every account.
    Operator,
    /// A token of an account: that account and its descendants; `super_admin` tokens
    /// act on every account and may use the super-admin operations.
    Token { account: AccountId, super_admin: bool },
}

impl Caller {
    /// An operator at the command line, named in the audit log.
    pub fn operator(user: &str) -> Caller {
        Caller {
            rights: Rights::Operator,
            audit: serde_json::json!({ "agent": { "type": "operator", "user": user } }),
        }
    }

    /// The account a token acts as; `None` for an operator.
    pub fn account(&self) -> Option<&AccountId> {
        match &self.rights {
            Rights::Operator => None,
            Rights::Token { account, .. } => Some(account),
        }
    }

    fn is_super_admin(&self) -> bool {
        match &self.rights {
            Rights::Operator => true,
            Rights::Token { super_admin, .. } => *super_admin,
        }
    }

    /// The access rule: the target itself, a descendant of the caller's account, or
    /// any account for a super admin.
    fn check_access(&self, target: &AccountNode) -> Result<(), OpsError> {
        match &self.rights {
            _ if self.is_super_admin() => Ok(()),
            Rights::Token { account, .. } if *account == target.id || target.ancestors.contains(account) => Ok(()),
            _ => Err(OpsError::Forbidden),
        }
    }

    /// The reseller-only rule: the target's reseller, or a super admin.
    fn check_reseller(&self, target: &AccountNode) -> Result<(), OpsError> {
        self.check_access(target)?;
        match &self.rights {
            _ if self.is_super_admin() => Ok(()),
            Rights::Token { account, .. } if target.reseller_id.as_ref() == Some(account) => Ok(()),
            _ => Err(OpsError::Forbidden),
        }
    }

    fn check_super_admin(&self) -> Result<(), OpsError> {
        if self.is_super_admin() {
            Ok(())
        } else {
            Err(OpsError::Forbidden)
        }
    }
}

/// A clock, so tests can place changes on chosen days.
pub trait Clock: Send + Sync {
    fn now(&self) -> GregorianSeconds;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> GregorianSeconds {
        GregorianSeconds::from_utc(chrono::Utc::now())
    }
}

/// A clock that always says the same time.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub GregorianSeconds);

impl Clock for FixedClock {
    fn now(&self) -> GregorianSeconds {
        self.0
    }
}

/// A listing's page: the rows, and where the next page starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub rows: Vec<serde_json::Value>,
    /// The number of rows in this page, as Kazoo answers `page_size` (not the size
    /// asked for); `None` when paging is off.
    pub page_size: Option<usize>,
    pub start_key: Option<String>,
    pub next_start_key: Option<String>,
}

/// The query of a listing (`api.md` §1.1): range in Gregorian seconds, order, paging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub created_from: Option<i64>,
    pub created_to: Option<i64>,
    /// Oldest first; the default is newest first.
    pub ascending: bool,
    /// Rows per page (default 50); ignored when `paginate` is false.
    pub page_size: Option<usize>,
    pub start_key: Option<String>,
    /// `false` returns every row at once.
    pub paginate: bool,
    /// Whole documents instead of `{id, name, description, category}` (plan listings).
    pub details: bool,
}

impl ListQuery {
    /// Paged, newest first, 50 rows.
    pub fn new() -> ListQuery {
        ListQuery {
            paginate: true,
            ..ListQuery::default()
        }
    }
}

/// How a write combines with what is stored (`api.md` §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// POST: the input replaces the stored value.
    Replace,
    /// PATCH, or POST with `merge: true`: deep merge, `null` deletes.
    Merge,
}

/// Where a dry run's operations leave the impact of the change they would have saved
/// (`Operations::previewing`).
#[derive(Debug, Clone, Default)]
pub struct Preview(std::sync::Arc<std::sync::Mutex<Option<serde_json::Value>>>);

impl Preview {
    fn record(&self, impact: serde_json::Value) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(impact);
    }

    /// The impact (`wire::impact`) of the change the operation decided, if it decided one.
    pub fn take(&self) -> Option<serde_json::Value> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

/// The operations, over one store and the job settings.
#[derive(Clone)]
pub struct Operations {
    context: JobContext,
    clock: std::sync::Arc<dyn Clock>,
    /// Set for a dry run: services changes are decided as usual, priced and recorded
    /// here instead of saved and committed.
    preview: Option<Preview>,
}

impl Operations {
    pub fn new(context: JobContext) -> Operations {
        Operations {
            context,
            clock: std::sync::Arc::new(SystemClock),
            preview: None,
        }
    }

    /// The same operations as a dry run (`?dry_run=true`): every services change an
    /// operation decides (plans assigned or removed, overrides) is checked exactly as
    /// for real, then priced for its impact instead of written; the impact is left in
    /// the returned [`Preview`]. Operations that write anything else write it.
    pub fn previewing(&self) -> (Operations, Preview) {
        let preview = Preview::default();
        let operations = Operations {
            preview: Some(preview.clone()),
            ..self.clone()
        };
        (operations, preview)
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Operations {
        self.clock = std::sync::Arc::new(clock);
        self
    }

    pub fn store(&self) -> &Store {
        &self.context.store
    }

    pub fn context(&self) -> &JobContext {
        &self.context
    }

    /// The operations' clock (the API's logins and tokens read it too).
    pub fn now(&self) -> GregorianSeconds {
        self.clock.now()
    }

    /// The target account, or 404 `bad identifier` when it does not exist. A caller
    /// that is not a super admin gets 403 instead, as for an existing account outside
    /// its tree: whether an account exists is not revealed outside one's tree.
    async fn account(&self, caller: &Caller, account: &AccountId) -> Result<AccountNode, OpsError> {
        match self.store().account_node(account).await? {
            Some(node) => Ok(node),
            None if caller.is_super_admin() => Err(OpsError::BadIdentifier {
                cause: account.to_string(),
            }),
            None => Err(OpsError::Forbidden),
        }
    }
}
