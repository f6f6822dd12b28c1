//! Validation of the account tree: which accounts have no sound path to a root.
//!
//! The tree is given as `(account, parent)` pairs, parent `None` for a root (the
//! master). An account is sound when following parents from it reaches a root. It is
//! broken when the walk meets a parent that does not exist (dangling parent), runs in a
//! circle (cycle), or passes through an account that is itself broken. Reconciliation
//! skips broken accounts and reports them by id; nothing here reads a database.

use super::ids::AccountId;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Why an account has no path to a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breakage {
    /// The account lies on a cycle of parent links.
    Cycle,
    /// The account's parent does not exist.
    DanglingParent { parent: AccountId },
    /// The account is sound itself but one of its ancestors is broken.
    BrokenAncestor { ancestor: AccountId },
}

impl fmt::Display for Breakage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breakage::Cycle => f.write_str("its parent links form a cycle"),
            Breakage::DanglingParent { parent } => write!(f, "its parent {parent} does not exist"),
            Breakage::BrokenAncestor { ancestor } => write!(f, "its ancestor {ancestor} is broken"),
        }
    }
}

/// One broken account and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenAccount {
    pub account: AccountId,
    pub breakage: Breakage,
}

#[derive(Debug, Clone)]
enum Status {
    Sound,
    Broken(Breakage),
}

/// The status an account inherits from its settled parent `parent`.
fn below(parent: &AccountId, parent_status: &Status) -> Status {
    match parent_status {
        Status::Sound => Status::Sound,
        Status::Broken(Breakage::BrokenAncestor { ancestor }) => Status::Broken(Breakage::BrokenAncestor {
            ancestor: ancestor.clone(),
        }),
        Status::Broken(Breakage::Cycle | Breakage::DanglingParent { .. }) => Status::Broken(Breakage::BrokenAncestor {
            ancestor: parent.clone(),
        }),
    }
}

/// Every broken account among `nodes`, sorted by account id.
///
/// A parent that is not among `nodes` counts as dangling. Callers may therefore pass
/// either the whole tree or only the accounts a root-first walk could not reach (the
/// ancestors of an unreachable account are all unreachable, so the answer is the same).
pub fn find_broken(nodes: &[(AccountId, Option<AccountId>)]) -> Vec<BrokenAccount> {
    let parents: HashMap<&AccountId, Option<&AccountId>> = nodes
        .iter()
        .map(|(account, parent)| (account, parent.as_ref()))
        .collect();
    let mut status: HashMap<&AccountId, Status> = HashMap::with_capacity(nodes.len());

    for (start, _) in nodes {
        // Walk up until a known status, a root, a missing parent or a repeat.
        let mut path: Vec<&AccountId> = Vec::new();
        let mut position: HashMap<&AccountId, usize> = HashMap::new();
        let mut current = start;
        let above: Status = loop {
            if let Some(known) = status.get(current) {
                break below(current, known);
            }
            if let Some(&first) = position.get(current) {
                // Everything from the first visit of `current` on is the cycle.
                for member in &path[first..] {
                    status.insert(member, Status::Broken(Breakage::Cycle));
                }
                path.truncate(first);
                break Status::Broken(Breakage::BrokenAncestor {
                    ancestor: current.clone(),
                });
            }
            position.insert(current, path.len());
            path.push(current);
            match parents.get(current).copied().flatten() {
                None => break Status::Sound,
                Some(parent) if !parents.contains_key(parent) => {
                    let dangling = path.pop().expect("current was just pushed");
                    status.insert(
                        dangling,
                        Status::Broken(Breakage::DanglingParent { parent: parent.clone() }),
                    );
                    break Status::Broken(Breakage::BrokenAncestor {
                        ancestor: dangling.clone(),
                    });
                }
                Some(parent) => current = parent,
            }
        };
        // `above` is what the account just below the settled one inherits.
        for account in path {
            status.insert(account, above.clone());
        }
    }

    let broken: BTreeMap<&AccountId, Breakage> = status
        .into_iter()
        .filter_map(|(account, status)| match status {
            Status::Sound => None,
            Status::Broken(breakage) => Some((account, breakage)),
        })
        .collect();
    broken
        .into_iter()
        .map(|(account, breakage)| BrokenAccount {
            account: account.clone(),
            breakage,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> AccountId {
        AccountId::parse(text).expect("test id")
    }

    fn check(edges: &[(&str, Option<&str>)], expected: &[(&str, Breakage)]) {
        let nodes: Vec<(AccountId, Option<AccountId>)> = edges
            .iter()
            .map(|(account, parent)| (id(account), parent.map(id)))
            .collect();
        let found: Vec<(String, Breakage)> = find_broken(&nodes)
            .into_iter()
            .map(|broken| (broken.account.to_string(), broken.breakage))
            .collect();
        let expected: Vec<(String, Breakage)> = expected
            .iter()
            .map(|(account, breakage)| (account.to_string(), breakage.clone()))
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn a_sound_tree_has_no_broken_account() {
        check(
            &[("m", None), ("r", Some("m")), ("a", Some("r")), ("b", Some("a"))],
            &[],
        );
    }

    #[test]
    fn a_missing_parent_breaks_the_account_and_everything_below_it() {
        check(
            &[("m", None), ("x", Some("gone")), ("y", Some("x")), ("z", Some("y"))],
            &[
                ("x", Breakage::DanglingParent { parent: id("gone") }),
                ("y", Breakage::BrokenAncestor { ancestor: id("x") }),
                ("z", Breakage::BrokenAncestor { ancestor: id("x") }),
            ],
        );
    }

    #[test]
    fn cycle_members_are_cycles_and_their_descendants_hang_below_them() {
        check(
            &[
                ("m", None),
                ("a", Some("b")),
                ("b", Some("c")),
                ("c", Some("a")),
                ("d", Some("c")),
                ("e", Some("d")),
            ],
            &[
                ("a", Breakage::Cycle),
                ("b", Breakage::Cycle),
                ("c", Breakage::Cycle),
                ("d", Breakage::BrokenAncestor { ancestor: id("c") }),
                ("e", Breakage::BrokenAncestor { ancestor: id("c") }),
            ],
        );
    }

    #[test]
    fn an_account_that_is_its_own_parent_is_a_cycle() {
        check(&[("m", None), ("s", Some("s"))], &[("s", Breakage::Cycle)]);
    }

    #[test]
    fn the_walk_order_does_not_change_the_answer() {
        check(
            &[
                ("e", Some("d")),
                ("d", Some("c")),
                ("c", Some("a")),
                ("a", Some("b")),
                ("b", Some("c")),
                ("m", None),
            ],
            &[
                ("a", Breakage::Cycle),
                ("b", Breakage::Cycle),
                ("c", Breakage::Cycle),
                ("d", Breakage::BrokenAncestor { ancestor: id("c") }),
                ("e", Breakage::BrokenAncestor { ancestor: id("c") }),
            ],
        );
    }
}
