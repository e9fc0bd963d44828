//! Secrets for functions: values sealed in the store, opened only to give a function's
//! runtime the environment it was granted (`env = { DB = { secret = "db" } }`). The version
//! stored, listed and shown never holds a value; only the copy handed to an executor does.

use std::borrow::Cow;
use std::sync::Arc;

use nimbus_core::manifest::is_valid_secret_name;
use nimbus_core::store::SecretInfo;
use nimbus_core::{FunctionVersion, Store, StoreError};
use nimbus_secrets::{MAX_VALUE_BYTES, Sealer, SecretError};

/// Why a secret operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// This node was started without a secrets key.
    #[error("secrets are not available: this node has no secrets key")]
    NotConfigured,
    /// Not a valid name.
    #[error("`{0}` is not a valid secret name: use 1-128 letters, digits, `-`, `_` or `.`")]
    InvalidName(String),
    /// An empty or oversized value.
    #[error("a secret value is 1 to {MAX_VALUE_BYTES} bytes")]
    BadValue,
    /// No such secret.
    #[error("no secret `{0}`")]
    NotFound(String),
    /// Deployed functions use it.
    #[error("secret `{name}` is used by {}: remove it from their env first", .functions.join(", "))]
    InUse {
        /// The secret.
        name: String,
        /// The functions whose env names it.
        functions: Vec<String>,
    },
    /// The sealed value cannot be opened.
    #[error("secret `{name}`: {source}")]
    Sealed {
        /// The secret.
        name: String,
        /// Why.
        #[source]
        source: SecretError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A secret as listed: name, when set, and which deployed functions use it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretListing {
    /// Name and time.
    #[serde(flatten)]
    pub info: SecretInfo,
    /// Deployed functions whose env names it.
    pub used_by: Vec<String>,
}

/// The node's secrets: the store's sealed values and the key that opens them.
#[derive(Clone)]
pub(crate) struct Secrets {
    store: Arc<dyn Store>,
    sealer: Option<Sealer>,
    /// Durable functions' endpoint and credentials' secret.
    durable: Option<crate::invoker::DurableEndpoint>,
}

impl Secrets {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        sealer: Option<Sealer>,
        durable: Option<crate::invoker::DurableEndpoint>,
    ) -> Self {
        Self {
            store,
            sealer,
            durable,
        }
    }

    fn sealer(&self) -> Result<&Sealer, SecretsError> {
        self.sealer.as_ref().ok_or(SecretsError::NotConfigured)
    }

    /// The value of secret `name`. Blocking (the store).
    fn value(&self, name: &str) -> Result<String, SecretsError> {
        let sealer = self.sealer()?;
        let sealed = self
            .store
            .secret(name)?
            .ok_or_else(|| SecretsError::NotFound(name.to_string()))?;
        let bytes = sealer
            .open(self.store.tenant(), name, &sealed)
            .map_err(|source| SecretsError::Sealed {
                name: name.to_string(),
                source,
            })?;
        // Values are set as text (`PUT` takes a JSON string).
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Whether the version a runtime runs differs from `version` (see `runtime_version`).
    pub(crate) fn changes(&self, version: &FunctionVersion) -> bool {
        !version.config.secrets.is_empty()
            || (self.durable.is_some() && version.config.durable.is_some())
    }

    /// The version a runtime runs: `version` with its secrets' values in its environment; a
    /// durable function also gets the durable execution API, `AWS_ENDPOINT_URL_LAMBDA`
    /// (forwarded into its sandbox's loopback) and its own credentials. Blocking (the store).
    pub(crate) fn runtime_version<'a>(
        &self,
        version: &'a FunctionVersion,
    ) -> Result<Cow<'a, FunctionVersion>, SecretsError> {
        if !self.changes(version) {
            return Ok(Cow::Borrowed(version));
        }
        let durable = self
            .durable
            .as_ref()
            .filter(|_| version.config.durable.is_some());
        let mut runtime = version.clone();
        for (var, name) in &version.config.secrets {
            runtime.config.env.insert(var.clone(), self.value(name)?);
        }
        if let Some(endpoint) = durable {
            let at = endpoint.loopback();
            let (id, secret) = nimbus_durable::token::execution_credentials(
                &endpoint.secret,
                self.store.tenant(),
                &version.function,
            );
            let env = &mut runtime.config.env;
            env.insert("AWS_ENDPOINT_URL_LAMBDA".into(), format!("http://{at}"));
            env.insert("AWS_ACCESS_KEY_ID".into(), id);
            env.insert("AWS_SECRET_ACCESS_KEY".into(), secret);
            env.remove("AWS_SESSION_TOKEN");
            runtime.config.allowed_hosts.push(at.to_string());
        }
        Ok(Cow::Owned(runtime))
    }

    /// Sets secret `name`; true when it is new. Blocking.
    pub(crate) fn put(&self, name: &str, value: &str) -> Result<bool, SecretsError> {
        if !is_valid_secret_name(name) {
            return Err(SecretsError::InvalidName(name.to_string()));
        }
        if value.is_empty() || value.len() > MAX_VALUE_BYTES {
            return Err(SecretsError::BadValue);
        }
        let sealed = self
            .sealer()?
            .seal(self.store.tenant(), name, value.as_bytes());
        Ok(self.store.put_secret(name, &sealed)?)
    }

    /// Every secret. Blocking.
    pub(crate) fn list(&self) -> Result<Vec<SecretInfo>, SecretsError> {
        Ok(self.store.secrets()?)
    }

    /// Deletes secret `name`. Blocking.
    pub(crate) fn delete(&self, name: &str) -> Result<(), SecretsError> {
        if self.store.delete_secret(name)? {
            Ok(())
        } else {
            Err(SecretsError::NotFound(name.to_string()))
        }
    }

    /// Seals again, with the current key, every secret sealed with the previous one (after a
    /// key rotation); returns how many. Blocking.
    pub(crate) fn reseal(&self) -> Result<usize, SecretsError> {
        let Some(sealer) = &self.sealer else {
            return Ok(0);
        };
        let mut resealed = 0;
        for info in self.store.secrets()? {
            let Some(sealed) = self.store.secret(&info.name)? else {
                continue;
            };
            if !sealer.is_stale(&sealed) {
                continue;
            }
            let value = sealer
                .open(self.store.tenant(), &info.name, &sealed)
                .map_err(|source| SecretsError::Sealed {
                    name: info.name.clone(),
                    source,
                })?;
            let fresh = sealer.seal(self.store.tenant(), &info.name, &value);
            self.store.put_secret(&info.name, &fresh)?;
            resealed += 1;
        }
        Ok(resealed)
    }
}
