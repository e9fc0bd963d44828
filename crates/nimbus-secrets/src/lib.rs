//! Secrets at rest: each value sealed with XChaCha20-Poly1305 under the node's secrets key,
//! bound to its tenant and name (a sealed value moved to another name does not open), with the
//! key's id in front so a key rotation knows what to re-seal. The key is never in the database:
//! a file (created 0600 at first start) or an environment variable.
//!
//! Sealed format: `b"nsec1"`, the key id (8 bytes: the start of SHA-256 of the key), a
//! 24-byte random nonce, the ciphertext with its 16-byte tag.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::Digest;

const MAGIC: &[u8] = b"nsec1";
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
/// The largest secret value (as for a Lambda environment: 4 KiB in all there; one value here).
pub const MAX_VALUE_BYTES: usize = 32 * 1024;

/// Why a key or a sealed value cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file could not be read or made.
    #[error("secrets key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key file is readable by others.
    #[error("secrets key file {0} is readable by other users: chmod 600 it")]
    KeyFileOpen(String),
    /// The key text is not 32 bytes of base64.
    #[error("a secrets key is 32 random bytes in base64 (e.g. `head -c32 /dev/urandom | base64`)")]
    BadKey,
    /// Sealed by a key this node does not have.
    #[error(
        "the secret was sealed with another key (id {0}); start Nimbus with that key as the previous one"
    )]
    UnknownKey(String),
    /// Not a sealed value, or altered.
    #[error("the sealed secret is damaged or belongs to another name")]
    Damaged,
}

/// A 32-byte secrets key.
#[derive(Clone)]
pub struct SecretKey {
    cipher: XChaCha20Poly1305,
    id: [u8; KEY_ID_LEN],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", hex::encode(self.id))
    }
}

impl SecretKey {
    fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        if bytes.len() != 32 {
            return Err(SecretError::BadKey);
        }
        let digest = sha2::Sha256::digest(bytes);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Ok(Self {
            cipher: XChaCha20Poly1305::new_from_slice(bytes).map_err(|_| SecretError::BadKey)?,
            id,
        })
    }

    /// A key from its base64 text (an environment variable's value).
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| SecretError::BadKey)?;
        Self::from_bytes(&bytes)
    }

    /// The key in `path` (base64 text), made with a new random key (mode 0600) when absent.
    /// A file others can read is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let io = |source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(SecretError::KeyFileOpen(path.display().to_string()));
                }
                Self::from_base64(&text)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                let text = base64::engine::general_purpose::STANDARD.encode(bytes);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                f.write_all(format!("{text}\n").as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
                Self::from_bytes(&bytes)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The key's id (hex), safe to show.
    pub fn id(&self) -> String {
        hex::encode(self.id)
    }
}

/// Seals with the current key and opens with it or the previous one (during a rotation).
#[derive(Debug, Clone)]
pub struct Sealer {
    current: SecretKey,
    previous: Option<SecretKey>,
}

fn aad(tenant: &str, name: &str) -> Vec<u8> {
    format!("nimbus-secret\0{tenant}\0{name}").into_bytes()
}

impl Sealer {
    /// A sealer with `current`, also opening values sealed with `previous`.
    pub fn new(current: SecretKey, previous: Option<SecretKey>) -> Self {
        Self { current, previous }
    }

    /// `value` of secret `name` of `tenant`, sealed.
    pub fn seal(&self, tenant: &str, name: &str, value: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: &aad(tenant, name),
                },
            )
            // Encryption fails only for messages past 256 GiB.
            .unwrap_or_default();
        [MAGIC, &self.current.id, &nonce, &ciphertext].concat()
    }

    /// The value of a sealed secret.
    pub fn open(&self, tenant: &str, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        let rest = sealed.strip_prefix(MAGIC).ok_or(SecretError::Damaged)?;
        if rest.len() < KEY_ID_LEN + NONCE_LEN {
            return Err(SecretError::Damaged);
        }
        let (id, rest) = rest.split_at(KEY_ID_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id == id)
            .ok_or_else(|| SecretError::UnknownKey(hex::encode(id)))?;
        key.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad(tenant, name),
                },
            )
            .map_err(|_| SecretError::Damaged)
    }

    /// Whether `sealed` was sealed with another key than the current one (to re-seal).
    pub fn is_stale(&self, sealed: &[u8]) -> bool {
        sealed
            .strip_prefix(MAGIC)
            .and_then(|r| r.get(..KEY_ID_LEN))
            .is_none_or(|id| id != self.current.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn sealed_values_open_only_for_their_name_and_key() {
        let s = Sealer::new(key(1), None);
        let sealed = s.seal("default", "db", b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(s.open("default", "db", &sealed).unwrap(), b"hunter2");
        assert!(matches!(
            s.open("default", "db2", &sealed),
            Err(SecretError::Damaged)
        ));
        assert!(matches!(
            s.open("other", "db", &sealed),
            Err(SecretError::Damaged)
        ));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            s.open("default", "db", &flipped),
            Err(SecretError::Damaged)
        ));
        assert!(matches!(
            Sealer::new(key(2), None).open("default", "db", &sealed),
            Err(SecretError::UnknownKey(_))
        ));
        // Two seals of one value differ (random nonces).
        assert_ne!(sealed, s.seal("default", "db", b"hunter2"));
    }

    #[test]
    fn a_rotation_opens_old_values_and_marks_them_stale() {
        let old = Sealer::new(key(1), None);
        let sealed = old.seal("t", "n", b"v");
        let rotated = Sealer::new(key(2), Some(key(1)));
        assert_eq!(rotated.open("t", "n", &sealed).unwrap(), b"v");
        assert!(rotated.is_stale(&sealed));
        assert!(!rotated.is_stale(&rotated.seal("t", "n", b"v")));
    }

    #[test]
    fn key_files_are_made_private_and_refused_when_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let made = SecretKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(SecretKey::load_or_create(&path).unwrap().id(), made.id());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            SecretKey::load_or_create(&path),
            Err(SecretError::KeyFileOpen(_))
        ));
        assert!(matches!(
            SecretKey::from_base64("c2hvcnQ="),
            Err(SecretError::BadKey)
        ));
    }
}
