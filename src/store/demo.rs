//! Writes the demo data set: the generated tree and catalog in batched multi-row
//! inserts, and about a hundred inventory objects per account in set-based SQL over a
//! number series (no object passes through memory). Deterministic for a given seed.

use super::{on_conn, postgres, sqlite, step, Backend, Store, StoreError};
use crate::demo::{DemoData, DemoSpec};

/// What `tally demo` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoReport {
    pub accounts: u64,
    pub resellers: u64,
    pub plans: u64,
    /// Inventory rows (users, devices, numbers, boxes, apps, limits, …).
    pub objects: u64,
}

/// Rows per multi-row INSERT: well under both backends' parameter limits.
const ROWS_PER_INSERT: usize = 400;

/// Per series object `g.n`: `h` picks the account, `k` the attributes, independently.
const MIX: &str = "SELECT g.n AS n, ((g.n + $3) * 2654435761) % 4294967296 AS h, \
                   (g.n * 40503 + $3 * 7) % 65521 AS k FROM {series}";

const NUMBER_ID: &str = "CASE WHEN x.k % 20 < 14 THEN '+1415' || (2000000 + x.n) \
                              WHEN x.k % 20 < 16 THEN '+1800' || (2000000 + x.n) \
                              WHEN x.k % 20 = 16 THEN '+44' || (20000000 + x.n) \
                              WHEN x.k % 20 = 17 THEN '+1876' || (2000000 + x.n) \
                              ELSE '+1650' || (2000000 + x.n) END";

/// `(table, objects per account in halves, statement)`: each statement inserts
/// `halves × accounts / 2` rows from the series (`$1` rows, `$2` accounts, `$3` seed).
fn inventory_statements() -> Vec<(&'static str, u64, String)> {
    let join = "JOIN demo_index d ON d.idx = x.h % $2";
    vec![
        (
            "users",
            40,
            format!(
                "INSERT INTO users (id, account_id, priv_level, qubicle_enabled, qubicle_offering, enabled, deleted) \
             SELECT 'user-' || x.n, d.account_id, CASE WHEN x.k % 6 = 0 THEN 'admin' ELSE 'user' END, \
                    x.k % 25 = 0, CASE WHEN x.k % 50 = 0 THEN 'pro' END, x.k % 53 <> 7, x.k % 47 = 3 \
             FROM ({MIX}) x {join}"
            ),
        ),
        (
            "devices",
            50,
            format!(
                "INSERT INTO devices (id, account_id, device_type, enabled, deleted) \
             SELECT 'device-' || x.n, d.account_id, \
                    CASE x.k % 10 WHEN 0 THEN 'softphone' WHEN 1 THEN 'softphone' WHEN 2 THEN 'cellphone' \
                         WHEN 3 THEN 'fax' WHEN 4 THEN 'smartphone' WHEN 5 THEN NULL ELSE 'sip_device' END, \
                    x.k % 53 <> 11, x.k % 47 = 5 \
             FROM ({MIX}) x {join}"
            ),
        ),
        (
            "phone_numbers",
            50,
            format!(
                "INSERT INTO phone_numbers (id, account_id, carrier_module, classification, enabled, deleted) \
             SELECT {NUMBER_ID}, d.account_id, \
                    CASE WHEN x.k % 20 >= 18 THEN 'knm_local' WHEN x.k % 7 = 0 THEN 'knm_bandwidth2' \
                         WHEN x.k % 7 = 1 THEN 'knm_inventory' ELSE 'knm_telnyx' END, \
                    CASE WHEN x.k % 20 < 14 THEN 'did_us' WHEN x.k % 20 < 16 THEN 'tollfree_us' \
                         WHEN x.k % 20 = 16 THEN 'international' WHEN x.k % 20 = 17 THEN 'caribbean' END, \
                    x.k % 53 <> 13, x.k % 47 = 9 \
             FROM ({MIX}) x {join}"
            ),
        ),
        (
            "vmboxes",
            30,
            format!(
                "INSERT INTO vmboxes (id, account_id, transcribe, enabled, deleted) \
             SELECT 'vmbox-' || x.n, d.account_id, x.k % 3 = 0, x.k % 53 <> 17, x.k % 47 = 11 \
             FROM ({MIX}) x {join}"
            ),
        ),
        (
            "faxboxes",
            6,
            format!(
                "INSERT INTO faxboxes (id, account_id, enabled, deleted) \
             SELECT 'faxbox-' || x.n, d.account_id, x.k % 53 <> 19, x.k % 47 = 13 FROM ({MIX}) x {join}"
            ),
        ),
        (
            "conferences",
            8,
            format!(
                "INSERT INTO conferences (id, account_id, enabled, deleted) \
             SELECT 'conference-' || x.n, d.account_id, x.k % 53 <> 23, x.k % 47 = 17 FROM ({MIX}) x {join}"
            ),
        ),
        (
            "dedicated_ips",
            1,
            format!(
                "INSERT INTO dedicated_ips (id, account_id, ip, enabled, deleted) \
             SELECT 'ip-' || x.n, d.account_id, '10.' || (x.n % 250) || '.' || (x.k % 250) || '.1', \
                    x.k % 53 <> 29, x.k % 47 = 19 FROM ({MIX}) x {join}"
            ),
        ),
        (
            "qubicle_queues",
            2,
            format!(
                "INSERT INTO qubicle_queues (id, account_id, offering, enabled, deleted) \
             SELECT 'queue-' || x.n, d.account_id, CASE WHEN x.k % 4 = 0 THEN 'pro' END, \
                    x.k % 53 <> 31, x.k % 47 = 23 FROM ({MIX}) x {join}"
            ),
        ),
        (
            "port_requests",
            1,
            format!(
                "INSERT INTO port_requests (id, account_id, port_state, number_count, enabled, deleted) \
             SELECT 'port-' || x.n, d.account_id, \
                    CASE x.k % 5 WHEN 0 THEN 'pending' WHEN 1 THEN 'submitted' WHEN 2 THEN 'scheduled' \
                         WHEN 3 THEN 'completed' END, \
                    1 + x.k % 5, TRUE, x.k % 47 = 29 FROM ({MIX}) x {join}"
            ),
        ),
    ]
}

/// Rows that follow from the objects above, not counted as objects themselves.
fn dependent_statements() -> Vec<(u64, String)> {
    vec![
        (
            50,
            format!(
                "INSERT INTO phone_number_features (number_id, feature) \
             SELECT {NUMBER_ID}, 'local' FROM ({MIX}) x WHERE x.k % 20 >= 18 AND $2 > 0"
            ),
        ),
        (
            50,
            format!(
                "INSERT INTO phone_number_features (number_id, feature) \
             SELECT {NUMBER_ID}, 'cnam' FROM ({MIX}) x WHERE x.k % 3 = 0 AND $2 > 0"
            ),
        ),
        (
            50,
            format!(
                "INSERT INTO phone_number_features (number_id, feature) \
             SELECT {NUMBER_ID}, 'e911' FROM ({MIX}) x WHERE x.k % 4 = 0 AND $2 > 0"
            ),
        ),
        (
            1,
            format!(
                "INSERT INTO port_request_transitions (port_request_id, position, new_state) \
             SELECT 'port-' || x.n, 1, CASE x.k % 5 WHEN 0 THEN 'pending' WHEN 1 THEN 'submitted' \
                    WHEN 2 THEN 'scheduled' WHEN 3 THEN 'completed' END FROM ({MIX}) x WHERE $2 > 0"
            ),
        ),
        (
            1,
            format!(
                "INSERT INTO port_request_transitions (port_request_id, position, new_state) \
             SELECT 'port-' || x.n, 2, CASE x.k % 5 WHEN 0 THEN 'pending' WHEN 1 THEN 'submitted' \
                    WHEN 2 THEN 'scheduled' WHEN 3 THEN 'completed' END FROM ({MIX}) x WHERE x.k % 3 = 0 AND $2 > 0"
            ),
        ),
    ]
}

/// One row per account: limits, app store and its three apps, whitelabel of resellers.
const PER_ACCOUNT: &[&str] = &[
    "INSERT INTO trunk_limits (account_id, twoway_trunks, inbound_trunks, outbound_trunks) \
     SELECT account_id, idx % 5, idx % 3, idx % 2 FROM demo_index",
    "INSERT INTO app_stores (account_id) SELECT account_id FROM demo_index",
    "INSERT INTO app_store_apps (account_id, app_id, name, blacklisted, allowed_users, specific_users) \
     SELECT account_id, 'app-voip', 'voip', FALSE, 'all', 0 FROM demo_index",
    "INSERT INTO app_store_apps (account_id, app_id, name, blacklisted, allowed_users, specific_users) \
     SELECT account_id, 'app-callflows', 'callflows', FALSE, 'admins', 0 FROM demo_index",
    "INSERT INTO app_store_apps (account_id, app_id, name, blacklisted, allowed_users, specific_users) \
     SELECT account_id, 'app-fax', 'fax', idx % 9 = 0, 'specific', 2 FROM demo_index",
    "INSERT INTO whitelabels (account_id, domain) SELECT account_id, 'portal' || idx || '.example' \
     FROM demo_index WHERE is_reseller",
    "INSERT INTO services (account_id) SELECT account_id FROM demo_index",
];

const OBJECT_TABLES: &[&str] = &[
    "users",
    "devices",
    "phone_numbers",
    "vmboxes",
    "faxboxes",
    "conferences",
    "dedicated_ips",
    "qubicle_queues",
    "port_requests",
    "trunk_limits",
    "app_store_apps",
    "whitelabels",
];

fn rows_for(halves_per_account: u64, accounts: u64) -> i64 {
    let total = halves_per_account.saturating_mul(accounts) / 2;
    i64::try_from(total).unwrap_or(i64::MAX)
}

impl Store {
    /// Writes the demo data set into an empty database.
    pub async fn seed_demo(&self, spec: DemoSpec, data: &DemoData) -> Result<DemoReport, StoreError> {
        let existing = self.query_count("SELECT COUNT(*) FROM accounts").await?;
        if existing > 0 {
            return Err(StoreError::Refused(format!(
                "the database already holds {existing} accounts; tally demo only fills an empty database"
            )));
        }
        let series = match self.backend() {
            Backend::Sqlite => sqlite::SERIES,
            Backend::Postgres => postgres::SERIES,
        };
        let account_count = u64::try_from(data.accounts.len()).unwrap_or(u64::MAX);
        let accounts_param = i64::try_from(account_count).unwrap_or(i64::MAX);
        let seed_param = i64::try_from(spec.seed % 1_000_003).expect("below a million");
        let mut conn = self.acquire().await?;
        on_conn!(&mut conn, |c| {
            sqlx::query("DROP TABLE IF EXISTS demo_index")
                .execute(&mut **c)
                .await
                .map_err(step("preparing the demo"))?;
            sqlx::query(
                "CREATE TEMP TABLE demo_index (idx BIGINT PRIMARY KEY, account_id TEXT NOT NULL, is_reseller BOOLEAN NOT NULL)",
            )
            .execute(&mut **c)
            .await
            .map_err(step("preparing the demo"))?;
            let mut tx = sqlx::Connection::begin(&mut **c)
                .await
                .map_err(step("starting the demo"))?;

            for chunk in data.accounts.chunks(ROWS_PER_INSERT) {
                let rows: Vec<String> = (0..chunk.len())
                    .map(|row| {
                        let base = row * 9;
                        format!(
                            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                            base + 1,
                            base + 2,
                            base + 3,
                            base + 4,
                            base + 5,
                            base + 6,
                            base + 7,
                            base + 8,
                            base + 9
                        )
                    })
                    .collect();
                let statement = format!(
                    "INSERT INTO accounts (id, parent_id, name, enabled, deleted, is_reseller, reseller_id, tree, billing_id) \
                     VALUES {}",
                    rows.join(", ")
                );
                let mut query = sqlx::query(&statement);
                for account in chunk {
                    query = query
                        .bind(account.id.as_str())
                        .bind(account.parent_id.as_deref())
                        .bind(account.name.as_str())
                        .bind(account.enabled)
                        .bind(account.deleted)
                        .bind(account.is_reseller)
                        .bind(account.reseller_id.as_str())
                        .bind("[]")
                        .bind(Option::<&str>::None);
                }
                query.execute(&mut *tx).await.map_err(step("writing demo accounts"))?;

                let rows: Vec<String> = (0..chunk.len())
                    .map(|row| format!("(${}, ${}, ${})", row * 3 + 1, row * 3 + 2, row * 3 + 3))
                    .collect();
                let statement = format!(
                    "INSERT INTO demo_index (idx, account_id, is_reseller) VALUES {}",
                    rows.join(", ")
                );
                let mut query = sqlx::query(&statement);
                for account in chunk {
                    query = query
                        .bind(i64::try_from(account.index).unwrap_or(i64::MAX))
                        .bind(account.id.as_str())
                        .bind(account.is_reseller);
                }
                query.execute(&mut *tx).await.map_err(step("indexing demo accounts"))?;
            }

            for chunk in data.plans.chunks(ROWS_PER_INSERT) {
                let rows: Vec<String> = (0..chunk.len())
                    .map(|row| {
                        let base = row * 5;
                        format!(
                            "(${}, ${}, ${}, ${}, ${})",
                            base + 1,
                            base + 2,
                            base + 3,
                            base + 4,
                            base + 5
                        )
                    })
                    .collect();
                let statement = format!(
                    "INSERT INTO service_plans (vendor_id, plan_id, name, description, document) VALUES {}",
                    rows.join(", ")
                );
                let mut query = sqlx::query(&statement);
                for plan in chunk {
                    query = query
                        .bind(plan.vendor_id.as_str())
                        .bind(plan.plan_id.as_str())
                        .bind(plan.name.as_str())
                        .bind(plan.description.as_str())
                        .bind(plan.document.as_str());
                }
                query.execute(&mut *tx).await.map_err(step("writing demo plans"))?;
            }

            for chunk in data.assignments.chunks(ROWS_PER_INSERT) {
                let rows: Vec<String> = (0..chunk.len())
                    .map(|row| {
                        let base = row * 4;
                        format!("(${}, ${}, ${}, ${})", base + 1, base + 2, base + 3, base + 4)
                    })
                    .collect();
                let statement = format!(
                    "INSERT INTO service_plan_assignments (account_id, plan_id, vendor_id, position) VALUES {}",
                    rows.join(", ")
                );
                let mut query = sqlx::query(&statement);
                for assignment in chunk {
                    query = query
                        .bind(assignment.account_id.as_str())
                        .bind(assignment.plan_id.as_str())
                        .bind(assignment.vendor_id.as_str())
                        .bind(assignment.position);
                }
                query
                    .execute(&mut *tx)
                    .await
                    .map_err(step("writing demo plan assignments"))?;
            }

            for statement in PER_ACCOUNT {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(step("writing per-account demo objects"))?;
            }
            for (_, per_account, template) in inventory_statements() {
                let statement = template.replace("{series}", series);
                sqlx::query(&statement)
                    .bind(rows_for(per_account, account_count))
                    .bind(accounts_param)
                    .bind(seed_param)
                    .execute(&mut *tx)
                    .await
                    .map_err(step("writing demo inventory"))?;
            }
            for (per_account, template) in dependent_statements() {
                let statement = template.replace("{series}", series);
                sqlx::query(&statement)
                    .bind(rows_for(per_account, account_count))
                    .bind(accounts_param)
                    .bind(seed_param)
                    .execute(&mut *tx)
                    .await
                    .map_err(step("writing demo number features and port transitions"))?;
            }
            tx.commit().await.map_err(step("committing the demo"))?;
            sqlx::query("DROP TABLE IF EXISTS demo_index")
                .execute(&mut **c)
                .await
                .map_err(step("finishing the demo"))?;
        });
        drop(conn);
        if self.backend() == Backend::Postgres {
            self.execute_script("ANALYZE").await?;
        }

        let mut objects = 0u64;
        for table in OBJECT_TABLES {
            let count = self.query_count(&format!("SELECT COUNT(*) FROM {table}")).await?;
            objects = objects.saturating_add(u64::try_from(count).unwrap_or(0));
        }
        Ok(DemoReport {
            accounts: account_count,
            resellers: u64::try_from(data.accounts.iter().filter(|account| account.is_reseller).count()).unwrap_or(0),
            plans: u64::try_from(data.plans.len()).unwrap_or(0),
            objects,
        })
    }
}
