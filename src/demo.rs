//! The deterministic demo data set of `tally demo`: the account tree and the plan catalog.
//!
//! Pure generation: the same `(accounts, seed)` always gives the same ids, tree, plans
//! and assignments. The accounts and their inventory are not rows but Kazoo documents
//! ([`documents`]), made lazily and loaded through the ingestion core like a
//! platform's; the plan catalog and assignments, which are not inventory, stay here.

pub mod documents;

use md5::{Digest, Md5};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSpec {
    /// Accounts in the tree, master included (at least 1).
    pub accounts: u64,
    pub seed: u64,
}

/// Each account below the master has this many children at most: the tree is a
/// complete 10-ary tree, so 100 000 accounts are five levels below the master.
pub const BRANCHING: u64 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoAccount {
    /// Position in the tree (0 = master); the inventory SQL refers to accounts by it.
    pub index: u64,
    pub id: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub enabled: bool,
    pub deleted: bool,
    pub is_reseller: bool,
    pub reseller_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoPlan {
    pub vendor_id: String,
    pub plan_id: String,
    pub name: String,
    pub description: String,
    /// The plan document as JSON text.
    pub document: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoAssignment {
    pub account_id: String,
    pub plan_id: String,
    pub vendor_id: String,
    pub position: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoData {
    pub accounts: Vec<DemoAccount>,
    pub plans: Vec<DemoPlan>,
    pub assignments: Vec<DemoAssignment>,
}

/// The plans of `pricing.md` §13, one JSON document each: (id, name, document).
pub const EXAMPLE_PLANS: &[(&str, &str, &str)] = &[
    (
        "tiered_users",
        "Example 1: tiered user rates",
        r#"{"name":"Example 1: tiered user rates","plan":{"users":{"user":{"rates":{"5":10,"10":8,"20":6},"rate":12}}}}"#,
    ),
    (
        "flat_trunks",
        "Example 2: flat-rated trunks",
        r#"{"name":"Example 2: flat-rated trunks","plan":{"limits":{"twoway_trunks":{"flat_rates":{"2":20,"5":45},"rate":10}}}}"#,
    ),
    (
        "did_minimum",
        "Example 3: DID minimum",
        r#"{"name":"Example 3: DID minimum","plan":{"phone_numbers":{"did_us":{"rate":1,"minimum":10}}}}"#,
    ),
    (
        "e911_discount",
        "Example 4: single discount",
        r#"{"name":"Example 4: single discount","plan":{"number_services":{"e911":{"rate":2,"discounts":{"single":{"rate":5}}}}}}"#,
    ),
    (
        "sip_cumulative",
        "Example 5: cumulative discount",
        r#"{"name":"Example 5: cumulative discount","plan":{"devices":{"sip_device":{"rate":5,"discounts":{"cumulative":{"maximum":20,"rate":1.5,"rates":{"10":2}}}}}}}"#,
    ),
    (
        "devices_all",
        "Example 6: all devices but softphones",
        r#"{"name":"Example 6: all devices but softphones","plan":{"devices":{"_all":{"rate":3,"as":"sip_device","exceptions":["softphone"],"name":"SIP Device"}}}}"#,
    ),
    (
        "reseller_cascade",
        "Example 7: cascade billing",
        r#"{"name":"Example 7: cascade billing","plan":{"phone_numbers":{"did_us":{"rate":1,"cascade":true}},"users":{"_all":{"rate":18.99,"cascade":true,"as":"user","name":"User"}}}}"#,
    ),
    (
        "simple_a",
        "Example 8: plan A",
        r#"{"name":"Example 8: plan A","merge":{"strategy":"simple","priority":10},"plan":{"devices":{"sip_device":{"rate":10,"discounts":{"single":{"rate":2}}}},"users":{"user":{"rate":5}}}}"#,
    ),
    (
        "simple_b",
        "Example 8: plan B",
        r#"{"name":"Example 8: plan B","merge":{"strategy":"simple","priority":20},"plan":{"devices":{"sip_device":{"rate":8}}}}"#,
    ),
    (
        "activation",
        "Example 11: activation charges",
        r#"{"name":"Example 11: activation charges","plan":{"devices":{"sip_device":{"rate":5,"activation_charge":10,"minimum":2}},"users":{"user":{"rate":4.99,"activation_charge":1.5}}}}"#,
    ),
    (
        "decimal_trunks",
        "Example 12: decimal rates",
        r#"{"name":"Example 12: decimal rates","plan":{"limits":{"twoway_trunks":{"rate":1.1},"inbound_trunks":{"rate":0.1},"outbound_trunks":{"rate":0.2}}}}"#,
    ),
    (
        "http_dids",
        "Example 13: DIDs billed over HTTP",
        r#"{"name":"Example 13: DIDs billed over HTTP","bookkeeper":{"type":"http","id":"bk1"},"plan":{"phone_numbers":{"did_us":{"rate":1,"cascade":true}}}}"#,
    ),
];

/// Plans a direct (non-reseller) account gets, by `index % 5`.
const CUSTOMER_PLAN_SETS: [&[&str]; 5] = [
    &["simple_a", "simple_b"],
    &["sip_cumulative", "did_minimum"],
    &["devices_all", "e911_discount"],
    &["activation", "decimal_trunks"],
    &["tiered_users", "flat_trunks", "http_dids"],
];

/// Plans a reseller gets from its own reseller.
const RESELLER_PLANS: &[&str] = &["reseller_cascade", "tiered_users"];

/// A stable 32-hex account id.
pub fn account_id(seed: u64, index: u64) -> String {
    let digest = Md5::digest(format!("tally-demo:{seed}:{index}").as_bytes());
    hex::encode(digest)
}

fn parent_index(index: u64) -> Option<u64> {
    index.checked_sub(1).map(|above| above / BRANCHING)
}

fn level(index: u64) -> u32 {
    let mut depth = 0;
    let mut current = index;
    while let Some(parent) = parent_index(current) {
        depth += 1;
        current = parent;
    }
    depth
}

/// A small deterministic mix of index and seed.
fn mix(seed: u64, index: u64) -> u64 {
    index.wrapping_add(seed).wrapping_mul(2_654_435_761) % 4_294_967_296
}

/// Builds the tree, the catalog (every reseller and the master are vendors of the
/// example plans) and the assignments (each account gets plans of its reseller).
pub fn generate(spec: DemoSpec) -> DemoData {
    let count = spec.accounts.max(1);
    let is_reseller = |index: u64| match level(index) {
        1 => true,
        2 => index % 4 == 0,
        _ => false,
    };
    let mut accounts: Vec<DemoAccount> = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut reseller_of: Vec<u64> = Vec::with_capacity(accounts.capacity());
    for index in 0..count {
        let parent = parent_index(index);
        // Nearest reseller ancestor, walking up from the parent; else the master.
        let reseller = match parent {
            None => 0,
            Some(parent) if is_reseller(parent) => parent,
            Some(parent) => reseller_of[usize::try_from(parent).expect("index fits memory")],
        };
        reseller_of.push(reseller);
        let reseller_flag = index != 0 && is_reseller(index);
        let hash = mix(spec.seed, index);
        let leaf_level = level(index) >= 3;
        accounts.push(DemoAccount {
            index,
            id: account_id(spec.seed, index),
            parent_id: parent.map(|parent| account_id(spec.seed, parent)),
            name: match (index, reseller_flag) {
                (0, _) => "Master".to_string(),
                (_, true) => format!("Reseller {index}"),
                (_, false) => format!("Customer {index}"),
            },
            enabled: !(leaf_level && hash % 97 == 0),
            deleted: leaf_level && hash % 101 == 0,
            is_reseller: reseller_flag,
            reseller_id: account_id(spec.seed, reseller),
        });
    }

    let vendors: Vec<&DemoAccount> = accounts
        .iter()
        .filter(|account| account.index == 0 || account.is_reseller)
        .collect();
    let plans = vendors
        .iter()
        .flat_map(|vendor| {
            EXAMPLE_PLANS.iter().map(move |(plan_id, name, document)| DemoPlan {
                vendor_id: vendor.id.clone(),
                plan_id: (*plan_id).to_string(),
                name: (*name).to_string(),
                description: "From the worked examples of pricing.md §13.".to_string(),
                document: (*document).to_string(),
            })
        })
        .collect();

    let assignments = accounts
        .iter()
        .filter(|account| account.index != 0)
        .flat_map(|account| {
            let set: &[&str] = if account.is_reseller {
                RESELLER_PLANS
            } else {
                CUSTOMER_PLAN_SETS[usize::try_from(account.index % 5).expect("below 5")]
            };
            set.iter().enumerate().map(move |(position, plan_id)| DemoAssignment {
                account_id: account.id.clone(),
                plan_id: (*plan_id).to_string(),
                vendor_id: account.reseller_id.clone(),
                position: i64::try_from(position).expect("small"),
            })
        })
        .collect();

    DemoData {
        accounts,
        plans,
        assignments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_data_and_another_seed_other_ids() {
        let spec = DemoSpec { accounts: 300, seed: 7 };
        assert_eq!(generate(spec), generate(spec));
        assert_ne!(
            generate(spec).accounts[5].id,
            generate(DemoSpec { seed: 8, ..spec }).accounts[5].id
        );
    }

    #[test]
    fn the_tree_has_a_master_resellers_and_deep_customers() {
        let data = generate(DemoSpec {
            accounts: 2_000,
            seed: 1,
        });
        let master = &data.accounts[0];
        assert!(master.parent_id.is_none());
        assert_eq!(master.reseller_id, master.id);
        assert!(data.accounts.iter().filter(|a| a.is_reseller).count() >= 10);
        assert!(data.accounts.iter().map(|a| level(a.index)).max() >= Some(4));
        // A customer under a sub-reseller has that sub-reseller as its reseller.
        let sub_reseller = data
            .accounts
            .iter()
            .find(|a| a.is_reseller && level(a.index) == 2)
            .expect("one exists");
        let customer = data
            .accounts
            .iter()
            .find(|a| a.parent_id.as_deref() == Some(sub_reseller.id.as_str()))
            .expect("it has children");
        assert_eq!(customer.reseller_id, sub_reseller.id);
    }

    #[test]
    fn every_assignment_names_a_plan_of_its_vendor() {
        let data = generate(DemoSpec { accounts: 500, seed: 3 });
        for assignment in &data.assignments {
            assert!(data
                .plans
                .iter()
                .any(|plan| plan.vendor_id == assignment.vendor_id && plan.plan_id == assignment.plan_id));
        }
    }
}
