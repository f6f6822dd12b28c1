//! Phone-number classification (`quantities.md` §2): an ordered list of classifiers,
//! each a name and a regular expression; the first that matches the number's E.164 id
//! names its `phone_numbers` item. A number matching none is not counted there.
//!
//! Numbers are classified when they are ingested; the list's [`fingerprint`] is kept
//! with the inventory so that a changed list reclassifies stored numbers on the next
//! run instead of leaving old classifications behind.
//!
//! [`fingerprint`]: NumberClassifiers::fingerprint

use regex::Regex;

/// Kazoo number_manager's default classifiers, in order (`quantities.md` §2).
pub const DEFAULT_CLASSIFIERS: &[(&str, &str)] = &[
    ("tollfree_us", r"^\+1((?:800|88\d|877|866|855|844|833|822)\d{7})$"),
    ("toll_us", r"^\+1(900\d{7})$"),
    ("emergency", r"^(911|922|933|833|811|711|999)$"),
    (
        "caribbean",
        r"^\+?1((?:684|264|268|242|246|441|284|345|767|809|829|849|473|671|876|664|670|787|939|869|758|784|721|868|649|340)\d{7})$",
    ),
    ("did_us", r"^(\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$"),
    ("international", r"^\+([2-9]\d{7,})$"),
    ("unknown", r"^(.*)$"),
];

/// A classifier that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifierError {
    #[error("number classifier {position}: the name is empty")]
    EmptyName { position: usize },
    #[error("number classifier {name:?}: invalid regex: {problem}")]
    BadRegex { name: String, problem: String },
    #[error("number classifier {name:?} is listed twice")]
    Duplicate { name: String },
}

/// The ordered classifier list.
#[derive(Debug, Clone)]
pub struct NumberClassifiers {
    classifiers: Vec<(String, Regex)>,
}

impl NumberClassifiers {
    /// Compiles `(name, regex)` pairs, in order.
    pub fn new<N: AsRef<str>, R: AsRef<str>>(pairs: &[(N, R)]) -> Result<NumberClassifiers, ClassifierError> {
        let mut classifiers: Vec<(String, Regex)> = Vec::with_capacity(pairs.len());
        for (position, (name, pattern)) in pairs.iter().enumerate() {
            let name = name.as_ref();
            if name.is_empty() {
                return Err(ClassifierError::EmptyName { position: position + 1 });
            }
            if classifiers.iter().any(|(known, _)| known == name) {
                return Err(ClassifierError::Duplicate { name: name.to_owned() });
            }
            let regex = Regex::new(pattern.as_ref()).map_err(|error| ClassifierError::BadRegex {
                name: name.to_owned(),
                problem: error.to_string(),
            })?;
            classifiers.push((name.to_owned(), regex));
        }
        Ok(NumberClassifiers { classifiers })
    }

    /// Kazoo's defaults.
    pub fn kazoo_defaults() -> NumberClassifiers {
        NumberClassifiers::new(DEFAULT_CLASSIFIERS).expect("the default classifiers compile")
    }

    /// The name of the first classifier matching `number`.
    pub fn classify(&self, number: &str) -> Option<&str> {
        self.classifiers
            .iter()
            .find(|(_, regex)| regex.is_match(number))
            .map(|(name, _)| name.as_str())
    }

    /// A stable text that changes whenever the list changes (names, patterns, order).
    pub fn fingerprint(&self) -> String {
        let mut text = String::new();
        for (name, regex) in &self.classifiers {
            text.push_str(name);
            text.push('\u{1f}');
            text.push_str(regex.as_str());
            text.push('\u{1e}');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(number: &str, expected: Option<&str>) {
        assert_eq!(
            NumberClassifiers::kazoo_defaults().classify(number),
            expected,
            "{number}"
        );
    }

    #[test]
    fn kazoo_defaults_classify_in_order() {
        check("+18005551234", Some("tollfree_us"));
        check("+18885551234", Some("tollfree_us"));
        check("+19005551234", Some("toll_us"));
        check("911", Some("emergency"));
        check("+18765551234", Some("caribbean"));
        check("+14155552671", Some("did_us"));
        check("4155552671", Some("did_us"));
        check("+442071234567", Some("international"));
        check("+1415", Some("unknown"));
    }

    #[test]
    fn a_number_matching_nothing_has_no_classification() {
        let classifiers = NumberClassifiers::new(&[("did_us", r"^\+1\d{10}$")]).expect("compiles");
        assert_eq!(classifiers.classify("+442071234567"), None);
    }

    #[test]
    fn bad_lists_are_refused_by_name() {
        assert!(matches!(
            NumberClassifiers::new(&[("x", "(")]),
            Err(ClassifierError::BadRegex { name, .. }) if name == "x"
        ));
        assert!(matches!(
            NumberClassifiers::new(&[("x", "a"), ("x", "b")]),
            Err(ClassifierError::Duplicate { .. })
        ));
        assert!(matches!(
            NumberClassifiers::new(&[("", "a")]),
            Err(ClassifierError::EmptyName { position: 1 })
        ));
    }

    #[test]
    fn the_fingerprint_follows_order_and_patterns() {
        let one = NumberClassifiers::new(&[("a", "1"), ("b", "2")]).expect("compiles");
        let swapped = NumberClassifiers::new(&[("b", "2"), ("a", "1")]).expect("compiles");
        let changed = NumberClassifiers::new(&[("a", "1"), ("b", "3")]).expect("compiles");
        assert_ne!(one.fingerprint(), swapped.fingerprint());
        assert_ne!(one.fingerprint(), changed.fingerprint());
        assert_eq!(
            one.fingerprint(),
            NumberClassifiers::new(&[("a", "1"), ("b", "2")])
                .expect("compiles")
                .fingerprint()
        );
    }
}
