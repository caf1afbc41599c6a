//! Query-time translation: names to ids for predicates, ids back to names for results.

use crate::dict::{Dictionary, TagKeyId, TagValueId};

/// A predicate on a tag, translated to ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdPredicate {
    /// The tag's value id is one of these (sorted).
    In(TagKeyId, Vec<TagValueId>),
    /// No stored row can match (unknown key or value): the query can skip the scan.
    Never,
}

impl IdPredicate {
    /// Whether a row whose tag `key` has value `id` matches.
    pub fn matches(&self, key: TagKeyId, id: TagValueId) -> bool {
        match self {
            IdPredicate::In(k, ids) => *k == key && ids.binary_search(&id).is_ok(),
            IdPredicate::Never => false,
        }
    }
}

/// Translates between names and ids against one dictionary (the server's global one, or an agent's).
#[derive(Debug, Clone, Copy)]
pub struct QueryTranslator<'d> {
    dict: &'d Dictionary,
}

impl<'d> QueryTranslator<'d> {
    /// A translator over `dict`.
    pub fn new(dict: &'d Dictionary) -> Self {
        QueryTranslator { dict }
    }

    /// `key = value` as an id predicate.
    pub fn eq(&self, key: &str, value: &str) -> IdPredicate {
        match self.dict.lookup_key(key) {
            Some(k) => match self.dict.lookup(k, value) {
                Some(v) => IdPredicate::In(k, vec![v]),
                None => IdPredicate::Never,
            },
            None => IdPredicate::Never,
        }
    }

    /// `key IN (values)` as an id predicate.
    pub fn any_of<'a>(&self, key: &str, values: impl IntoIterator<Item = &'a str>) -> IdPredicate {
        let Some(k) = self.dict.lookup_key(key) else {
            return IdPredicate::Never;
        };
        let mut ids: Vec<TagValueId> = values
            .into_iter()
            .filter_map(|v| self.dict.lookup(k, v))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            IdPredicate::Never
        } else {
            IdPredicate::In(k, ids)
        }
    }

    /// `key` values matching `pred` (e.g. a prefix or a regex evaluated by the caller), scanning the key's
    /// dictionary once, not the rows.
    pub fn matching(&self, key: &str, pred: impl Fn(&str) -> bool) -> IdPredicate {
        let Some(k) = self.dict.lookup_key(key) else {
            return IdPredicate::Never;
        };
        let ids: Vec<TagValueId> = (1..=self.dict.len(k))
            .map(TagValueId)
            .filter(|&id| self.dict.value(k, id).is_some_and(&pred))
            .collect();
        if ids.is_empty() {
            IdPredicate::Never
        } else {
            IdPredicate::In(k, ids)
        }
    }

    /// The name of a result id.
    pub fn name(&self, key: TagKeyId, id: TagValueId) -> Option<&'d str> {
        self.dict.value(key, id)
    }

    /// The id of a key name.
    pub fn key(&self, key: &str) -> Option<TagKeyId> {
        self.dict.lookup_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_both_ways() {
        let mut d = Dictionary::default();
        let ns = d.key_id("k8s.namespace");
        let prod = d.value_id(ns, "prod");
        let staging = d.value_id(ns, "staging");
        d.value_id(ns, "prod-eu");
        let q = QueryTranslator::new(&d);
        assert!(q.eq("k8s.namespace", "prod").matches(ns, prod));
        assert!(!q.eq("k8s.namespace", "prod").matches(ns, staging));
        assert_eq!(q.eq("k8s.namespace", "nope"), IdPredicate::Never);
        assert_eq!(q.eq("nope", "prod"), IdPredicate::Never);
        let p = q.matching("k8s.namespace", |v| v.starts_with("prod"));
        assert!(p.matches(ns, prod) && !p.matches(ns, staging));
        assert_eq!(
            q.any_of("k8s.namespace", ["staging", "x"]),
            IdPredicate::In(ns, vec![staging])
        );
        assert_eq!(q.name(ns, staging), Some("staging"));
    }
}
