//! The one nearest-reseller rule (`sync-and-bookkeepers.md` §9): which account is an
//! account's reseller, decided from the stored `pvt_reseller_id` and its ancestors.
//!
//! Billing, top-up and the services operations all ask this function, so they cannot
//! disagree about who bills an account or who may change its plans. Nothing here reads
//! a database: the store hands over the account's lineage.

use super::ids::AccountId;

/// One ancestor of an account as the rule reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ancestor {
    pub id: AccountId,
    /// `pvt_reseller` of the ancestor.
    pub is_reseller: bool,
}

/// What the rule needs to know about one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    pub account: AccountId,
    /// `pvt_reseller_id` as stored for the account, when it names one.
    pub stored_reseller: Option<AccountId>,
    /// The account's ancestors, its parent first, the root last.
    pub ancestors: Vec<Ancestor>,
}

/// The account's reseller.
///
/// The master's reseller is the master: nothing stands above it, whatever is stored.
/// Otherwise the stored `pvt_reseller_id` wins, because Kazoo computes it once when the
/// services document is created and later lookups read it (§9), so a promotion or a
/// move that was not cascaded keeps the stored value until maintenance rewrites it.
/// Without a stored value the walk goes up from the parent: the first ancestor flagged
/// reseller wins, else the master. Without a known master (a tree with no root) the
/// account stands for itself.
pub fn nearest_reseller(lineage: &Lineage, master: Option<&AccountId>) -> AccountId {
    if master == Some(&lineage.account) {
        return lineage.account.clone();
    }
    if let Some(stored) = &lineage.stored_reseller {
        return stored.clone();
    }
    if let Some(reseller) = lineage.ancestors.iter().find(|ancestor| ancestor.is_reseller) {
        return reseller.id.clone();
    }
    master.unwrap_or(&lineage.account).clone()
}

/// Whether the account is billed by the master: it is the master, or its reseller is.
/// Its bookkeeper type then defaults to `master_account_bookkeeper` (`plans.md` §5.3).
pub fn billed_by_master(lineage: &Lineage, master: Option<&AccountId>) -> bool {
    master.is_some_and(|master| nearest_reseller(lineage, Some(master)) == *master)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> AccountId {
        AccountId::parse(text).expect("test id")
    }

    /// `ancestors` parent first, as `(id, is_reseller)`.
    fn lineage(account: &str, stored: Option<&str>, ancestors: &[(&str, bool)]) -> Lineage {
        Lineage {
            account: id(account),
            stored_reseller: stored.map(id),
            ancestors: ancestors
                .iter()
                .map(|(ancestor, is_reseller)| Ancestor {
                    id: id(ancestor),
                    is_reseller: *is_reseller,
                })
                .collect(),
        }
    }

    fn check(lineage: Lineage, master: Option<&str>, expected: &str) {
        let master = master.map(id);
        assert_eq!(nearest_reseller(&lineage, master.as_ref()).as_str(), expected);
    }

    #[test]
    fn without_a_stored_value_the_nearest_flagged_ancestor_wins() {
        check(
            lineage("c", None, &[("sub", true), ("res", true), ("m", false)]),
            Some("m"),
            "sub",
        );
    }

    #[test]
    fn the_walk_starts_at_the_parent_so_a_reseller_is_not_its_own_reseller() {
        check(
            lineage("res", None, &[("mid", false), ("top", true), ("m", false)]),
            Some("m"),
            "top",
        );
    }

    #[test]
    fn without_a_stored_value_or_a_flagged_ancestor_the_master_wins() {
        check(lineage("c", None, &[("a", false), ("m", false)]), Some("m"), "m");
    }

    #[test]
    fn a_stored_reseller_id_wins_over_the_tree() {
        check(
            lineage("c", Some("old"), &[("sub", true), ("m", false)]),
            Some("m"),
            "old",
        );
    }

    #[test]
    fn a_stored_master_wins_over_a_flagged_ancestor() {
        check(lineage("c", Some("m"), &[("sub", true), ("m", false)]), Some("m"), "m");
    }

    #[test]
    fn the_master_is_its_own_reseller_whatever_is_stored() {
        check(lineage("m", Some("other"), &[]), Some("m"), "m");
        check(lineage("m", None, &[]), Some("m"), "m");
    }

    #[test]
    fn without_a_master_an_unflagged_account_stands_for_itself() {
        check(lineage("c", None, &[("a", false)]), None, "c");
    }

    #[test]
    fn billed_by_master_follows_the_same_reseller() {
        let master = id("m");
        assert!(billed_by_master(&lineage("m", None, &[]), Some(&master)));
        assert!(billed_by_master(
            &lineage("c", None, &[("a", false), ("m", false)]),
            Some(&master)
        ));
        assert!(billed_by_master(
            &lineage("c", Some("m"), &[("r", true), ("m", false)]),
            Some(&master)
        ));
        assert!(!billed_by_master(
            &lineage("c", None, &[("r", true), ("m", false)]),
            Some(&master)
        ));
        assert!(!billed_by_master(
            &lineage("c", Some("r"), &[("m", false)]),
            Some(&master)
        ));
        assert!(!billed_by_master(&lineage("c", None, &[]), None));
    }
}
