//! Names of billable things and of the parties around them.
//!
//! Each is a newtype so that a category can never be passed where an item name is
//! expected. Constructors reject the empty string: an empty name is always a data error.
//! The text is shared (`Arc<str>`): a run clones the same few names into every
//! account's quantities, invoice items and report rows, and a clone is then a count,
//! not an allocation.

use std::fmt;
use std::sync::Arc;

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Accepts any non-empty string.
            pub fn parse(text: impl Into<String>) -> Result<Self, EmptyName> {
                let text = text.into();
                if text.is_empty() {
                    return Err(EmptyName { what: $what });
                }
                Ok(Self(Arc::from(text)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// The error of every name constructor: the name was empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must not be empty")]
pub struct EmptyName {
    pub what: &'static str,
}

name_type!(
    /// A billing category such as `devices` or `phone_numbers`.
    Category,
    "category"
);
name_type!(
    /// An item inside a category, such as `sip_device`; `_all` names the whole category.
    ItemName,
    "item name"
);
name_type!(
    /// An account id (32 lowercase hex characters in Kazoo; any non-empty text here).
    AccountId,
    "account id"
);
name_type!(
    /// A service plan id, unique within its vendor.
    PlanId,
    "plan id"
);

impl ItemName {
    /// The reserved item key that prices the sum of a whole category.
    pub const ALL: &'static str = "_all";

    pub fn is_all(&self) -> bool {
        &*self.0 == Self::ALL
    }
}
