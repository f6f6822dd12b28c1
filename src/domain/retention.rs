//! Retention: which finished records `tally run prune` deletes, and from what age.
//!
//! Pure: the policy is days per kind of record (0 keeps forever), `now` is passed in,
//! and the cutoff is a time. What "finished" means for each kind (a run that ended, a
//! delivery the bookkeeper acknowledged, an audit row no delivery waits for) is the
//! store's `WHERE`; this module only says which kinds and how old.

use super::summary::GregorianSeconds;

const SECONDS_PER_DAY: i64 = 86_400;

/// A kind of record retention applies to. A closed set: the store has one predicate
/// per variant, and reports count per variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prunable {
    /// Finished runs of the run ledger (`tally runs`); the newest of each job stays.
    Runs,
    /// Deliveries their bookkeeper acknowledged.
    Deliveries,
    /// Quantity-change records, with their entries.
    ChangeRecords,
    /// Answered audit logs; kept unless configured.
    AuditLogs,
}

impl Prunable {
    pub const ALL: [Prunable; 4] = [
        Prunable::Runs,
        Prunable::Deliveries,
        Prunable::ChangeRecords,
        Prunable::AuditLogs,
    ];

    /// The name in reports and in the `[retention]` keys (`<name>_days`).
    pub fn as_str(self) -> &'static str {
        match self {
            Prunable::Runs => "runs",
            Prunable::Deliveries => "deliveries",
            Prunable::ChangeRecords => "change_records",
            Prunable::AuditLogs => "audit_logs",
        }
    }
}

/// Days to keep each kind of record; 0 keeps it forever (the default for all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub runs_days: u32,
    pub deliveries_days: u32,
    pub change_records_days: u32,
    pub audit_logs_days: u32,
}

impl Retention {
    pub fn days(&self, kind: Prunable) -> u32 {
        match kind {
            Prunable::Runs => self.runs_days,
            Prunable::Deliveries => self.deliveries_days,
            Prunable::ChangeRecords => self.change_records_days,
            Prunable::AuditLogs => self.audit_logs_days,
        }
    }

    /// Records of `kind` finished before this time are deleted; `None`: kept forever.
    pub fn cutoff(&self, kind: Prunable, now: GregorianSeconds) -> Option<GregorianSeconds> {
        match self.days(kind) {
            0 => None,
            days => Some(GregorianSeconds(
                now.0.saturating_sub(i64::from(days) * SECONDS_PER_DAY),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_days_keeps_forever_and_other_days_cut_whole_days_before_now() {
        let retention = Retention {
            runs_days: 30,
            deliveries_days: 1,
            change_records_days: 0,
            audit_logs_days: 400,
        };
        let now = GregorianSeconds(64_000_000_000);
        let table = [
            (Prunable::Runs, Some(now.0 - 30 * 86_400)),
            (Prunable::Deliveries, Some(now.0 - 86_400)),
            (Prunable::ChangeRecords, None),
            (Prunable::AuditLogs, Some(now.0 - 400 * 86_400)),
        ];
        for (kind, expected) in table {
            assert_eq!(retention.cutoff(kind, now).map(|cutoff| cutoff.0), expected, "{kind:?}");
        }
    }

    #[test]
    fn the_default_keeps_everything() {
        let now = GregorianSeconds(64_000_000_000);
        for kind in Prunable::ALL {
            assert_eq!(Retention::default().cutoff(kind, now), None, "{kind:?}");
        }
    }
}
