//! A hold's or usage charge's reference: the terms it was made under (model, price version,
//! request, proxy node, key), kept as `m=…;p=…;r=…;n=…;k=…` in the ledger's free-text
//! reference. This module is its one codec; the store matches on its fields through
//! [`HoldTerms::key_suffix`] and [`HoldTerms::node_marker`] only.

/// What a hold's reference records: the model, price version and key it was placed for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HoldTerms {
    /// The model, if placed by model.
    pub model: Option<String>,
    /// The price version in force when placed.
    pub price_id: Option<String>,
    /// The key it was placed with.
    pub key_id: Option<String>,
    /// The request that placed it (`req_…`).
    pub request_id: Option<String>,
    /// The proxy node whose call it is (its open holds are settled at that node's next
    /// start).
    pub node_id: Option<String>,
}

impl HoldTerms {
    /// The field naming a proxy node, as it appears in a reference (`n=<node id>`).
    pub const NODE_FIELD: &'static str = "n=";

    /// The field naming the key, as it appears in a reference (`k=<key id>`): always the
    /// last, so that the store reads spend by key with a suffix match.
    pub const KEY_FIELD: &'static str = "k=";

    /// `m=…;p=…;r=…;n=…;k=…` (fields absent when unknown).
    pub fn encode(&self) -> String {
        let mut parts = Vec::new();
        if let Some(model) = &self.model {
            parts.push(format!("m={model}"));
        }
        if let Some(price) = &self.price_id {
            parts.push(format!("p={price}"));
        }
        // The key stays last: spend by key is read with `LIKE '%k=<key>'`.
        if let Some(request) = &self.request_id {
            parts.push(format!("r={request}"));
        }
        if let Some(node) = &self.node_id {
            parts.push(format!("{}{node}", HoldTerms::NODE_FIELD));
        }
        if let Some(key) = &self.key_id {
            parts.push(format!("{}{key}", HoldTerms::KEY_FIELD));
        }
        parts.join(";")
    }

    /// The reverse of [`HoldTerms::encode`].
    pub fn decode(reference: &str) -> HoldTerms {
        let mut terms = HoldTerms::default();
        for part in reference.split(';') {
            match part.split_once('=') {
                Some(("m", v)) => terms.model = Some(v.to_owned()),
                Some(("p", v)) => terms.price_id = Some(v.to_owned()),
                Some(("k", v)) => terms.key_id = Some(v.to_owned()),
                Some(("r", v)) => terms.request_id = Some(v.to_owned()),
                Some(("n", v)) => terms.node_id = Some(v.to_owned()),
                _ => {}
            }
        }
        terms
    }
}

impl HoldTerms {
    /// What a reference made with key `key_id` ends with.
    pub fn key_suffix(key_id: &str) -> String {
        format!("{}{key_id}", HoldTerms::KEY_FIELD)
    }

    /// What a reference of a call of proxy node `node_id` contains.
    pub fn node_marker(node_id: &str) -> String {
        format!("{}{node_id}", HoldTerms::NODE_FIELD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes_with_the_key_last() {
        let terms = HoldTerms {
            model: Some("claude-sonnet-4-5".into()),
            price_id: Some("price_1".into()),
            key_id: Some("key_2".into()),
            request_id: Some("req_3".into()),
            node_id: Some("node4".into()),
        };
        let reference = terms.encode();
        assert_eq!(
            reference,
            "m=claude-sonnet-4-5;p=price_1;r=req_3;n=node4;k=key_2"
        );
        assert!(reference.ends_with(&HoldTerms::key_suffix("key_2")));
        assert!(reference.contains(&HoldTerms::node_marker("node4")));
        assert_eq!(HoldTerms::decode(&reference), terms);
        assert_eq!(HoldTerms::decode(""), HoldTerms::default());
        assert_eq!(HoldTerms::default().encode(), "");
    }
}
