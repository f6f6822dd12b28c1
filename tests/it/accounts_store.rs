//! The account listings of `tally accounts` (`store::accounts`), on both backends.

use crate::helpers::on_both_backends;
use tally::store::Store;

/// master ─┬─ reseller_a (reseller, delinquent, plans p2 then p1) ── customer_c
///         └─ Big_Co%50 (disabled)
async fn seed(store: &Store) {
    store
        .execute_script(
            "INSERT INTO accounts (id, parent_id, name, is_reseller, reseller_id) VALUES \
                 ('a0000000000000000000000000000000', NULL, 'Master', FALSE, NULL), \
                 ('b1000000000000000000000000000000', 'a0000000000000000000000000000000', 'Reseller A', TRUE, 'a0000000000000000000000000000000'), \
                 ('c2000000000000000000000000000000', 'b1000000000000000000000000000000', 'Customer C', FALSE, 'b1000000000000000000000000000000'); \
             INSERT INTO accounts (id, parent_id, name, enabled) VALUES \
                 ('d3000000000000000000000000000000', 'a0000000000000000000000000000000', 'Big_Co%50', FALSE); \
             INSERT INTO services (account_id, status, status_reason) VALUES \
                 ('b1000000000000000000000000000000', 'delinquent', 'unpaid'); \
             INSERT INTO service_plan_assignments (account_id, plan_id, vendor_id, position) VALUES \
                 ('b1000000000000000000000000000000', 'p1', 'a0000000000000000000000000000000', 2), \
                 ('b1000000000000000000000000000000', 'p2', 'a0000000000000000000000000000000', 1);",
        )
        .await
        .expect("seeded");
}

fn ids(listings: &[tally::store::AccountListing]) -> Vec<&str> {
    listings.iter().map(|account| &account.id[..2]).collect()
}

async fn list_pages_by_id_with_standing_and_plans_in_order(store: &Store) {
    seed(store).await;
    let first = store.list_accounts(None, 2).await.expect("lists");
    assert_eq!(ids(&first), ["a0", "b1"]);
    let reseller = &first[1];
    assert_eq!(reseller.name, "Reseller A");
    assert!(reseller.is_reseller);
    assert_eq!(reseller.standing, "delinquent");
    assert_eq!(reseller.plans, ["p2", "p1"], "one row per account, plans by position");
    assert_eq!(
        first[0].standing, "good_standing",
        "no services row reads as good standing"
    );
    let next = store.list_accounts(Some(&reseller.id), 10).await.expect("lists");
    assert_eq!(ids(&next), ["c2", "d3"]);
    assert!(!next[1].enabled);
}

async fn get_reads_one_account_or_none(store: &Store) {
    seed(store).await;
    let reseller = store
        .account_listing("b1000000000000000000000000000000")
        .await
        .expect("reads")
        .expect("stored");
    assert_eq!(reseller.parent_id.as_deref(), Some("a0000000000000000000000000000000"));
    assert_eq!(reseller.standing_reason.as_deref(), Some("unpaid"));
    assert_eq!(reseller.plans, ["p2", "p1"]);
    assert!(store.account_listing("ffff").await.expect("reads").is_none());
}

async fn find_matches_an_id_prefix_or_a_name_in_any_case_and_wildcards_literally(store: &Store) {
    seed(store).await;
    assert_eq!(ids(&store.find_accounts("C2", 10).await.expect("finds")), ["c2"]);
    assert_eq!(ids(&store.find_accounts("customer", 10).await.expect("finds")), ["c2"]);
    assert_eq!(ids(&store.find_accounts("_co%5", 10).await.expect("finds")), ["d3"]);
    assert!(
        store.find_accounts("B%50", 10).await.expect("finds").is_empty(),
        "a % in the text is not a wildcard"
    );
    assert_eq!(
        store.find_accounts("a", 1).await.expect("finds").len(),
        1,
        "the limit holds"
    );
}

async fn tree_lists_parents_before_children_with_their_depth(store: &Store) {
    seed(store).await;
    let whole = store.account_tree(None, 100).await.expect("tree");
    let shape: Vec<(&str, u32)> = whole.iter().map(|account| (&account.id[..2], account.depth)).collect();
    assert_eq!(shape, [("a0", 0), ("b1", 1), ("c2", 2), ("d3", 1)]);
    let under = store
        .account_tree(Some("b1000000000000000000000000000000"), 100)
        .await
        .expect("subtree");
    let shape: Vec<(&str, u32)> = under.iter().map(|account| (&account.id[..2], account.depth)).collect();
    assert_eq!(shape, [("b1", 0), ("c2", 1)]);
    assert_eq!(whole[1].plans, ["p2", "p1"]);
    assert_eq!(
        store.account_tree(None, 2).await.expect("tree").len(),
        2,
        "the limit holds"
    );
    assert!(store.account_tree(Some("nobody"), 10).await.expect("tree").is_empty());
}

async fn a_parent_cycle_ends_the_tree_instead_of_recursing_forever(store: &Store) {
    store
        .execute_script("INSERT INTO accounts (id, parent_id, name) VALUES ('e1', 'e2', 'one'), ('e2', 'e1', 'two');")
        .await
        .expect("seeded");
    let tree = store.account_tree(Some("e1"), 1000).await.expect("tree ends");
    assert!(tree.len() <= 66, "bounded by the depth limit: {}", tree.len());
}

on_both_backends!(
    list_pages_by_id_with_standing_and_plans_in_order,
    get_reads_one_account_or_none,
    find_matches_an_id_prefix_or_a_name_in_any_case_and_wildcards_literally,
    tree_lists_parents_before_children_with_their_depth,
    a_parent_cycle_ends_the_tree_instead_of_recursing_forever,
);
