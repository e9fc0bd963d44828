//! Who may call: the admin API keys (stored as sha256 hashes) and the AWS-style credentials
//! Nimbus issued (SigV4 needs the secret itself).

use std::collections::{HashMap, HashSet};

use arc_swap::ArcSwap;
use nimbus_core::{Store, StoreError};

/// The node's credentials.
pub struct Access {
    api_keys: ArcSwap<HashSet<String>>,
    aws_credentials: HashMap<String, String>,
}

impl Access {
    /// Reads the API key hashes from `store`; `aws_credentials` maps access key ids to secrets.
    pub fn load(
        store: &dyn Store,
        aws_credentials: HashMap<String, String>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            api_keys: ArcSwap::from_pointee(store.api_key_hashes()?.into_iter().collect()),
            aws_credentials,
        })
    }

    /// Whether `key` is a valid API key.
    pub fn is_valid_key(&self, key: &str) -> bool {
        self.api_keys
            .load()
            .contains(&nimbus_core::sha256_hex(key.as_bytes()))
    }

    /// The secret of an access key id Nimbus issued.
    pub fn aws_secret(&self, access_key_id: &str) -> Option<String> {
        self.aws_credentials.get(access_key_id).cloned()
    }
}
