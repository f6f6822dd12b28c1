//! Top-up rules (`sync-and-bookkeepers.md` §10): dollars to Kazoo units, and whether an
//! account is due for an automatic top-up. Pure: the job reads the balance and the
//! settings, this decides, the job sells and records.

use rust_decimal::{Decimal, RoundingStrategy};
use std::fmt;
use std::str::FromStr;

use super::Money;

/// What started a top-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `POST …/services/topup` or `tally services topup`.
    Manual,
    /// The daily `topup` job, for a balance under its threshold.
    Automatic,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Automatic => "automatic",
        }
    }

    /// Kazoo's transaction description for this trigger.
    pub fn description(self) -> &'static str {
        match self {
            Trigger::Manual => "Manual top-up",
            Trigger::Automatic => "Automatic top-up",
        }
    }
}

/// Dollars in whole Kazoo units (× 10 000, rounded half away from zero); `None` when
/// the result does not fit an `i64`.
pub fn dollars_to_units(dollars: Decimal) -> Option<i64> {
    let rounded = dollars.round_dp_with_strategy(Money::LINE_TOTAL_PLACES, RoundingStrategy::MidpointAwayFromZero);
    Money::new(rounded).to_units()
}

/// Units back to dollars, exact.
pub fn units_to_dollars(units: i64) -> Money {
    Money::from_units(units)
}

/// A stored dollar amount that is not a decimal number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an amount in dollars")]
pub struct InvalidDollars {
    pub text: String,
}

/// Reads a dollar amount as written in settings or requests (`10`, `10.5`, `1e2`).
pub fn parse_dollars(text: &str) -> Result<Decimal, InvalidDollars> {
    let trimmed = text.trim();
    Decimal::from_str(trimmed)
        .or_else(|_| Decimal::from_scientific(trimmed))
        .map_err(|_| InvalidDollars { text: text.to_owned() })
}

/// An account's automatic top-up settings, in dollars (`topup.amount`, `topup.threshold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopupSettings {
    pub amount: Option<Decimal>,
    pub threshold: Option<Decimal>,
}

/// Why an account is not topped up automatically: the error names of §10 step 1-3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    TopupDisabled,
    AmountUndefined,
    ThresholdUndefined,
    AmountAndThresholdUndefined,
    BalanceAboveThreshold,
    DailyLimit,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::TopupDisabled => "topup_disabled",
            SkipReason::AmountUndefined => "amount_undefined",
            SkipReason::ThresholdUndefined => "threshold_undefined",
            SkipReason::AmountAndThresholdUndefined => "amount_and_threshold_undefined",
            SkipReason::BalanceAboveThreshold => "balance_above_threshold",
            SkipReason::DailyLimit => "topup_daily_limit",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision for one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Sell this many units.
    TopUp {
        units: i64,
    },
    Skip(SkipReason),
}

/// What the decision reads about one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutomaticTopup {
    /// The `topup.enable` setting.
    pub enabled: bool,
    pub settings: TopupSettings,
    /// The available balance, in units.
    pub balance_units: i64,
    /// Whether an automatic top-up (transaction or ledger) happened in the last 24 hours.
    pub topped_up_in_last_day: bool,
}

/// §10 steps 1-3, in order, first answer wins. An amount or threshold that rounds to
/// no unit (or does not fit) counts as not above zero.
pub fn decide(input: &AutomaticTopup) -> Decision {
    if !input.enabled {
        return Decision::Skip(SkipReason::TopupDisabled);
    }
    let Some(amount) = input.settings.amount else {
        return Decision::Skip(SkipReason::AmountUndefined);
    };
    let Some(threshold) = input.settings.threshold else {
        return Decision::Skip(SkipReason::ThresholdUndefined);
    };
    let positive = |dollars: Decimal| dollars_to_units(dollars).filter(|units| *units > 0);
    let (Some(amount_units), Some(threshold_units)) = (positive(amount), positive(threshold)) else {
        return Decision::Skip(SkipReason::AmountAndThresholdUndefined);
    };
    if input.balance_units >= threshold_units {
        return Decision::Skip(SkipReason::BalanceAboveThreshold);
    }
    if input.topped_up_in_last_day {
        return Decision::Skip(SkipReason::DailyLimit);
    }
    Decision::TopUp { units: amount_units }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dollars(text: &str) -> Decimal {
        parse_dollars(text).expect("a decimal")
    }

    fn input(amount: Option<&str>, threshold: Option<&str>, balance_units: i64, recent: bool) -> AutomaticTopup {
        AutomaticTopup {
            enabled: true,
            settings: TopupSettings {
                amount: amount.map(dollars),
                threshold: threshold.map(dollars),
            },
            balance_units,
            topped_up_in_last_day: recent,
        }
    }

    #[test]
    fn dollars_become_units_half_away_from_zero() {
        let table = [
            ("10", Some(100_000)),
            ("10.00005", Some(100_001)),
            ("10.00004", Some(100_000)),
            ("-10.00005", Some(-100_001)),
            ("0.00005", Some(1)),
            ("0.00004999", Some(0)),
            ("1e2", Some(1_000_000)),
            ("922337203685477.5807", Some(i64::MAX)),
            ("922337203685477.5808", None),
        ];
        for (text, expected) in table {
            assert_eq!(dollars_to_units(dollars(text)), expected, "{text}");
        }
        assert_eq!(units_to_dollars(100_001).to_string(), "10.0001");
        assert!(parse_dollars("abc").is_err());
        assert!(parse_dollars("").is_err());
    }

    #[test]
    fn the_reasons_come_in_the_order_of_the_spec() {
        let mut disabled = input(Some("10"), Some("5"), 0, false);
        disabled.enabled = false;
        assert_eq!(decide(&disabled), Decision::Skip(SkipReason::TopupDisabled));
        let table = [
            (input(None, None, 0, false), SkipReason::AmountUndefined),
            (input(None, Some("5"), 0, false), SkipReason::AmountUndefined),
            (input(Some("10"), None, 0, false), SkipReason::ThresholdUndefined),
            (
                input(Some("0"), Some("5"), 0, false),
                SkipReason::AmountAndThresholdUndefined,
            ),
            (
                input(Some("10"), Some("-1"), 0, false),
                SkipReason::AmountAndThresholdUndefined,
            ),
            (
                input(Some("0.00001"), Some("5"), 0, false),
                SkipReason::AmountAndThresholdUndefined,
            ),
            (
                input(Some("10"), Some("5"), 50_000, true),
                SkipReason::BalanceAboveThreshold,
            ),
            (
                input(Some("10"), Some("5"), 60_000, false),
                SkipReason::BalanceAboveThreshold,
            ),
            (input(Some("10"), Some("5"), 49_999, true), SkipReason::DailyLimit),
        ];
        for (input, reason) in table {
            assert_eq!(decide(&input), Decision::Skip(reason), "{input:?}");
            assert!(!reason.as_str().is_empty());
        }
    }

    #[test]
    fn a_balance_under_the_threshold_tops_up_the_amount_in_units() {
        assert_eq!(
            decide(&input(Some("10.00005"), Some("5"), 49_999, false)),
            Decision::TopUp { units: 100_001 }
        );
        assert_eq!(
            decide(&input(Some("25"), Some("0.00005"), -3, false)),
            Decision::TopUp { units: 250_000 }
        );
    }

    #[test]
    fn triggers_carry_kazoo_descriptions() {
        assert_eq!(Trigger::Manual.as_str(), "manual");
        assert_eq!(Trigger::Automatic.description(), "Automatic top-up");
        assert_eq!(SkipReason::DailyLimit.to_string(), "topup_daily_limit");
    }
}
