//! What a stored API token, or a login, still grants (issue 12: Kazoo's model).
//!
//! A token acts as one account. It stops granting anything when it expires, when its
//! account is deleted (gone for the API, as in Kazoo) or disabled, and a super-admin
//! token is only honoured for the master account: a row that says otherwise (written
//! before the rule existed, or by hand) is refused rather than trusted. The store reads
//! the facts in one query; this module decides.

use super::summary::GregorianSeconds;

/// The facts about a token's account that decide whether it may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountStanding {
    pub deleted: bool,
    pub enabled: bool,
    /// The root of the tree (no parent).
    pub is_master: bool,
}

/// Whether an account may act through the API (hold a token, or log in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountAccess {
    /// It may.
    Active,
    /// Deleted, or not in the store at all: the API knows no such account (401).
    Gone,
    /// Disabled: known, but refused (403).
    Disabled,
}

impl AccountStanding {
    /// Kazoo's rule: a deleted account is gone, a disabled one refused.
    pub fn access(self) -> AccountAccess {
        match (self.deleted, self.enabled) {
            (true, _) => AccountAccess::Gone,
            (false, false) => AccountAccess::Disabled,
            (false, true) => AccountAccess::Active,
        }
    }
}

/// A stored token as the store reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredToken {
    pub super_admin: bool,
    /// `None`: never expires.
    pub expires_at: Option<GregorianSeconds>,
    /// `None` when the token's account is not in the store.
    pub account: Option<AccountStanding>,
}

/// What a presented token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVerdict {
    /// It acts as its account (and, if `super_admin`, on every account).
    Granted { super_admin: bool },
    /// No such token, an expired one, or one whose account is gone: 401.
    Invalid,
    /// Its account is disabled: 403.
    AccountDisabled,
    /// A super-admin token of an account other than the master: 403.
    SuperAdminOffMaster,
}

impl StoredToken {
    /// The verdict at `now`; a token expires at its `expires_at` second.
    pub fn verdict(&self, now: GregorianSeconds) -> TokenVerdict {
        if self.expires_at.is_some_and(|expires_at| expires_at <= now) {
            return TokenVerdict::Invalid;
        }
        let Some(account) = self.account else {
            return TokenVerdict::Invalid;
        };
        match account.access() {
            AccountAccess::Gone => TokenVerdict::Invalid,
            AccountAccess::Disabled => TokenVerdict::AccountDisabled,
            AccountAccess::Active if self.super_admin && !account.is_master => TokenVerdict::SuperAdminOffMaster,
            AccountAccess::Active => TokenVerdict::Granted {
                super_admin: self.super_admin,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: GregorianSeconds = GregorianSeconds(63_900_000_000);
    const ACTIVE_SUB: AccountStanding = AccountStanding {
        deleted: false,
        enabled: true,
        is_master: false,
    };
    const MASTER: AccountStanding = AccountStanding {
        is_master: true,
        ..ACTIVE_SUB
    };

    fn check(token: StoredToken, expected: TokenVerdict) {
        assert_eq!(token.verdict(NOW), expected, "{token:?}");
    }

    fn token(account: Option<AccountStanding>) -> StoredToken {
        StoredToken {
            super_admin: false,
            expires_at: None,
            account,
        }
    }

    #[test]
    fn a_live_token_of_an_active_account_is_granted() {
        check(token(Some(ACTIVE_SUB)), TokenVerdict::Granted { super_admin: false });
        let later = StoredToken {
            expires_at: Some(GregorianSeconds(NOW.0 + 1)),
            ..token(Some(ACTIVE_SUB))
        };
        check(later, TokenVerdict::Granted { super_admin: false });
    }

    #[test]
    fn a_token_expires_at_its_second() {
        let expiring = StoredToken {
            expires_at: Some(NOW),
            ..token(Some(ACTIVE_SUB))
        };
        check(expiring, TokenVerdict::Invalid);
    }

    #[test]
    fn deleted_or_missing_accounts_invalidate_and_disabled_ones_forbid() {
        check(token(None), TokenVerdict::Invalid);
        let deleted = AccountStanding {
            deleted: true,
            ..ACTIVE_SUB
        };
        check(token(Some(deleted)), TokenVerdict::Invalid);
        let disabled = AccountStanding {
            enabled: false,
            ..ACTIVE_SUB
        };
        check(token(Some(disabled)), TokenVerdict::AccountDisabled);
        let deleted_and_disabled = AccountStanding {
            enabled: false,
            ..deleted
        };
        check(token(Some(deleted_and_disabled)), TokenVerdict::Invalid);
    }

    #[test]
    fn super_admin_is_only_honoured_for_the_master() {
        let master = StoredToken {
            super_admin: true,
            ..token(Some(MASTER))
        };
        check(master, TokenVerdict::Granted { super_admin: true });
        let sub = StoredToken {
            super_admin: true,
            ..token(Some(ACTIVE_SUB))
        };
        check(sub, TokenVerdict::SuperAdminOffMaster);
    }
}
