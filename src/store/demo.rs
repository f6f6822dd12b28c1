//! Writes what the demo data set has besides inventory: the plan catalog, the plan
//! assignments and a services row per account, in batched multi-row inserts. The
//! accounts and their inventory are Kazoo documents loaded through the ingestion core
//! (`jobs::demo`), so the accounts exist before the assignments naming them are written.

use super::{on_conn, step, Store, StoreError};
use crate::demo::DemoData;

/// What the demo's catalog step wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoCatalogReport {
    pub plans: u64,
    pub assignments: u64,
}

/// Rows per multi-row INSERT: well under both backends' parameter limits.
const ROWS_PER_INSERT: usize = 400;

/// The inventory tables `tally demo` reports the rows of.
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

/// `($1, $2, …), (…)`: `rows` groups of `columns` numbered parameters.
fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let group: Vec<String> = (1..=columns)
                .map(|column| format!("${}", row * columns + column))
                .collect();
            format!("({})", group.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Refuses a database that already holds accounts: `tally demo` only fills an
    /// empty one.
    pub async fn ensure_empty_for_demo(&self) -> Result<(), StoreError> {
        let existing = self.query_count("SELECT COUNT(*) FROM accounts").await?;
        if existing > 0 {
            return Err(StoreError::Refused(format!(
                "the database already holds {existing} accounts; tally demo only fills an empty database: give it a new one (e.g. TALLY_DATABASE_URL=sqlite://demo.db tally demo), or use this one as it is"
            )));
        }
        Ok(())
    }

    /// Writes the demo's plan catalog, plan assignments and services rows, in one
    /// transaction. The accounts must already be stored (ingested); a catalog already
    /// present is refused.
    pub async fn seed_demo(&self, data: &DemoData) -> Result<DemoCatalogReport, StoreError> {
        let existing = self.query_count("SELECT COUNT(*) FROM service_plans").await?;
        if existing > 0 {
            return Err(StoreError::Refused(format!(
                "the database already holds {existing} service plans; tally demo only fills an empty database: give it a new one (e.g. TALLY_DATABASE_URL=sqlite://demo.db tally demo), or use this one as it is"
            )));
        }
        let mut conn = self.acquire().await?;
        on_conn!(&mut conn, |c| {
            let mut tx = sqlx::Connection::begin(&mut **c)
                .await
                .map_err(step("starting the demo catalog"))?;
            for chunk in data.plans.chunks(ROWS_PER_INSERT) {
                let statement = format!(
                    "INSERT INTO service_plans (vendor_id, plan_id, name, description, document) VALUES {}",
                    placeholders(chunk.len(), 5)
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
                let statement = format!(
                    "INSERT INTO service_plan_assignments (account_id, plan_id, vendor_id, position) VALUES {}",
                    placeholders(chunk.len(), 4)
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
            for chunk in data.accounts.chunks(ROWS_PER_INSERT) {
                // Ingestion may already have made some: the demo only adds what is missing.
                let statement = format!(
                    "INSERT INTO services (account_id) VALUES {} ON CONFLICT (account_id) DO NOTHING",
                    placeholders(chunk.len(), 1)
                );
                let mut query = sqlx::query(&statement);
                for account in chunk {
                    query = query.bind(account.id.as_str());
                }
                query
                    .execute(&mut *tx)
                    .await
                    .map_err(step("writing demo services rows"))?;
            }
            tx.commit().await.map_err(step("committing the demo catalog"))?;
        });
        Ok(DemoCatalogReport {
            plans: u64::try_from(data.plans.len()).unwrap_or(u64::MAX),
            assignments: u64::try_from(data.assignments.len()).unwrap_or(u64::MAX),
        })
    }

    /// Rows of the inventory tables (users, devices, numbers, boxes, apps, limits, …),
    /// what `tally demo` reports as objects.
    pub async fn inventory_object_count(&self) -> Result<u64, StoreError> {
        let mut objects = 0u64;
        for table in OBJECT_TABLES {
            let count = self.query_count(&format!("SELECT COUNT(*) FROM {table}")).await?;
            objects = objects.saturating_add(u64::try_from(count).unwrap_or(0));
        }
        Ok(objects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_every_parameter_once() {
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }
}
