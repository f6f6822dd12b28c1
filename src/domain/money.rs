//! Exact money.
//!
//! Every amount is a `rust_decimal::Decimal`; nothing here ever touches a float.
//! Rounding happens in exactly one place, [`Money::round_line_total`], the rule of
//! `pricing.md` §12: line totals to four places (one Kazoo unit), half away from zero.

use rust_decimal::{Decimal, RoundingStrategy};
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, Neg};

/// An exact amount of money (or a per-unit rate, which is money per unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

/// An amount that does not fit the 96-bit decimal range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("amount out of range")]
pub struct MoneyOverflow;

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Places kept on every line total: 1/10 000 of the currency, one Kazoo unit.
    pub const LINE_TOTAL_PLACES: u32 = 4;

    /// The largest amount tally stores: amounts are kept as whole Kazoo units in 64-bit
    /// columns, so `i64::MAX` units, 922 337 203 685 477.5807. A line total or a sum
    /// beyond it (in either sign) cannot be billed; a rate beyond it cannot bill a unit.
    pub const LARGEST_STORED: Money = Money(Decimal::from_parts(u32::MAX, i32::MAX as u32, 0, false, 4));

    pub fn new(amount: Decimal) -> Self {
        Money(amount.normalize())
    }

    pub fn amount(self) -> Decimal {
        self.0
    }

    pub fn is_positive(self) -> bool {
        self.0 > Decimal::ZERO
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// `units × self`, exactly, or an error where the product leaves the decimal range.
    pub fn times(self, units: i64) -> Result<Money, MoneyOverflow> {
        self.0
            .checked_mul(Decimal::from(units))
            .map(Money::new)
            .ok_or(MoneyOverflow)
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyOverflow> {
        self.0.checked_add(other.0).map(Money::new).ok_or(MoneyOverflow)
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyOverflow> {
        self.0.checked_sub(other.0).map(Money::new).ok_or(MoneyOverflow)
    }

    /// The one rounding rule of the pricing core (`pricing.md` §12.3).
    pub fn round_line_total(self) -> Money {
        Money::new(
            self.0
                .round_dp_with_strategy(Self::LINE_TOTAL_PLACES, RoundingStrategy::MidpointAwayFromZero),
        )
    }

    /// The amount in Kazoo units (1 unit = 0.0001), exact: `None` when the amount has
    /// more than four places or does not fit. Line totals always fit (they are rounded
    /// to four places), and so do their sums.
    pub fn to_units(self) -> Option<i64> {
        let units = self.0.checked_mul(Decimal::from(10_000))?;
        if !units.fract().is_zero() {
            return None;
        }
        i64::try_from(units.trunc()).ok()
    }

    /// Whether the amount lies within ±[`Money::LARGEST_STORED`] (whatever its places).
    pub fn within_stored_range(self) -> bool {
        self.0.abs() <= Self::LARGEST_STORED.0
    }

    /// The amount of a number of Kazoo units (1 unit = 0.0001).
    pub fn from_units(units: i64) -> Money {
        Money::new(Decimal::new(units, Self::LINE_TOTAL_PLACES))
    }

    /// Sums exactly; an error when the sum leaves the decimal range.
    pub fn checked_sum<'a>(amounts: impl IntoIterator<Item = &'a Money>) -> Result<Money, MoneyOverflow> {
        amounts
            .into_iter()
            .try_fold(Money::ZERO, |sum, amount| sum.checked_add(*amount))
    }
}

impl fmt::Display for Money {
    /// Shortest exact form without exponent or trailing zeros: `24.95`, `15`, `0.0035`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.normalize())
    }
}

impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money::new(-self.0)
    }
}

impl Add for Money {
    type Output = Money;
    /// Only for sums known to be small (tests, generated data); pricing uses `checked_add`.
    fn add(self, other: Money) -> Money {
        Money::new(self.0 + other.0)
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Add::add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn money(text: &str) -> Money {
        Money::new(Decimal::from_str(text).expect("test literal"))
    }

    #[test]
    fn line_totals_round_half_away_from_zero_to_four_places() {
        assert_eq!(money("0.02175").round_line_total(), money("0.0218"));
        assert_eq!(money("-0.02175").round_line_total(), money("-0.0218"));
        assert_eq!(money("0.02174").round_line_total(), money("0.0217"));
        assert_eq!(money("7.7").round_line_total(), money("7.7"));
    }

    #[test]
    fn units_are_ten_thousandths_and_only_exact_amounts_convert() {
        assert_eq!(money("24.95").to_units(), Some(249_500));
        assert_eq!(money("-0.0218").to_units(), Some(-218));
        assert_eq!(money("0.00001").to_units(), None);
        assert_eq!(Money::from_units(249_500), money("24.95"));
    }

    #[test]
    fn the_largest_stored_amount_is_the_largest_whole_number_of_units() {
        assert_eq!(Money::LARGEST_STORED, Money::from_units(i64::MAX));
        assert_eq!(Money::LARGEST_STORED.to_string(), "922337203685477.5807");
        assert_eq!(Money::LARGEST_STORED.to_units(), Some(i64::MAX));
        assert!(Money::LARGEST_STORED.within_stored_range());
        assert!((-Money::LARGEST_STORED).within_stored_range());
        assert!(money("0.00000001").within_stored_range());
        assert!(!money("922337203685477.5808").within_stored_range());
        assert!(!money("-922337203685477.58071").within_stored_range());
        assert_eq!(money("922337203685477.5808").to_units(), None);
    }

    #[test]
    fn display_is_shortest_exact_form() {
        assert_eq!(money("24.950").to_string(), "24.95");
        assert_eq!(money("15.0000").to_string(), "15");
        assert_eq!(money("0.0035").to_string(), "0.0035");
        assert_eq!(money("-3").to_string(), "-3");
    }
}
