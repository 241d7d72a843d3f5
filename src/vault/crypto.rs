//! The vault's key ring and every cryptographic primitive the vault uses: sealing addresses at
//! rest, the blind index that finds them again, keyed hashes of codes and tokens, signed
//! stateless tokens, and random codes.
//!
//! Owns the key ring's text format and its file. Must not touch storage, the network, or the
//! meaning of what it seals (the caller chooses the associated data and the purposes); the
//! re-encryption loop of a rotation lives in `vault::rotation`.
//!
//! # Invariants
//! - **Sealed values** use XChaCha20-Poly1305 with a fresh random 24-byte nonce from the OS per
//!   value (random nonces are safe at this size: 2^96 values before a collision is likely). Layout:
//!   `version (u32 big-endian) ‖ nonce (24) ‖ ciphertext ‖ tag (16)`. The AEAD's associated data
//!   is the 4-byte version header followed by the caller's AAD (which binds the value to its
//!   owner and row), so a blob moved to another row, or relabelled with another version, fails
//!   to open.
//! - **Keys**: one `index` key and one or more versioned `key`s, each 32 bytes. The highest
//!   version seals; every version opens. The blind index has its own key, never an encryption
//!   key, so it survives rotation (an address keeps its index across versions) and knowing it
//!   decrypts nothing. The keys for secret hashes and signed tokens are derived from the index
//!   key with HKDF-SHA256 under distinct `info` strings, so no two uses share a key.
//! - **Constant time**: every comparison of a MAC or keyed hash goes through `subtle`.
//! - Key material lives in zeroize-on-drop buffers and is never printed: `Debug` shows versions
//!   only, errors name line numbers and paths, never key text.
//!
//! # Key ring text
//! One entry per line (or, in `HERALD_VAULT_KEY`, entries separated by `,` or newlines); `#`
//! starts a comment that runs to the end of the line:
//! ```text
//! index <base64 of 32 bytes>
//! key 1 <base64 of 32 bytes>
//! key 2 <base64 of 32 bytes>
//! ```
//! As a convenience `HERALD_VAULT_KEY` may instead be one bare base64 32-byte key: it becomes
//! key version 1, and the index key is derived from it with HKDF-SHA256 (info
//! `herald vault blind-index v1`). Such a ring cannot be rotated in place: the operator writes
//! the explicit form (printed by [`KeyRing::to_text`], which keeps the derived index key so every
//! blind index stays valid) and adds the new key there.
//!
//! The key file is Unix-only: it is created with mode 0600 and refused if group or others have
//! any permission on it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, general_purpose};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use secrecy::ExposeSecret;
use secrecy::zeroize::Zeroizing;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::settings::VaultSettings;

/// Every key in the ring is 32 bytes: XChaCha20-Poly1305's key size, and HMAC-SHA256's output.
const KEY_LEN: usize = 32;
/// Bytes before the ciphertext: the version.
const VERSION_LEN: usize = 4;
/// XChaCha20's extended nonce, large enough to be drawn at random.
const NONCE_LEN: usize = 24;
/// Poly1305 tag.
const TAG_LEN: usize = 16;
/// The shortest well-formed sealed value (an empty plaintext).
const SEALED_MIN_LEN: usize = VERSION_LEN + NONCE_LEN + TAG_LEN;
/// Longest token `verify_token` looks at. Tokens travel in URLs; anything longer is not ours,
/// and refusing early keeps an attacker from making us MAC megabytes.
const TOKEN_MAX_LEN: usize = 4096;

const INFO_BARE_INDEX: &[u8] = b"herald vault blind-index v1";
const INFO_SECRET_HASH: &[u8] = b"herald vault secret-hash v1";
const INFO_TOKEN: &[u8] = b"herald vault token v1";

type HmacSha256 = Hmac<Sha256>;
type KeyBytes = Zeroizing<[u8; KEY_LEN]>;

/// Why the key ring could not be read, written or used. `Display` never contains key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key ring is empty")]
    Empty,
    #[error("key ring entry {entry}: {reason}")]
    Syntax { entry: usize, reason: &'static str },
    #[error("key ring entry {entry}: the key is not valid base64")]
    Base64 { entry: usize },
    #[error("key ring entry {entry}: a key must be 32 bytes, this one is {len}")]
    KeyLength { entry: usize, len: usize },
    #[error("key ring entry {entry}: key version {version} appears twice")]
    DuplicateVersion { entry: usize, version: u32 },
    #[error("key ring entry {entry}: a second `index` key")]
    DuplicateIndex { entry: usize },
    #[error("the key ring has no `index` key (the blind-index key)")]
    MissingIndex,
    #[error("the key ring has no `key <version>` entry")]
    NoKeys,
    #[error("key file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "key file {} is accessible to group or others (mode {mode:03o}): run `chmod 600` on it",
        path.display()
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("the value is sealed with key version {0}, which this key ring does not have")]
    UnknownVersion(u32),
    #[error("the sealed value is too short to be one")]
    Truncated,
    #[error("the sealed value failed authentication (wrong key, wrong row, or altered)")]
    Decrypt,
}

/// The vault's keys: one blind-index key and the versioned sealing keys. Cheap to clone;
/// share it behind an `Arc`.
#[derive(Clone)]
pub struct KeyRing {
    /// Keys the blind index; also the root of the derived keys below.
    index: KeyBytes,
    /// Sealing keys by version; the last (highest) one seals.
    keys: BTreeMap<u32, KeyBytes>,
    /// Derived once: the key of [`KeyRing::secret_hash`].
    secret_key: KeyBytes,
    /// Derived once: the key of [`KeyRing::sign_token`].
    token_key: KeyBytes,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("versions", &self.versions())
            .field("current", &self.current_version())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    fn from_parts(index: KeyBytes, keys: BTreeMap<u32, KeyBytes>) -> Self {
        let secret_key = derive(&index, INFO_SECRET_HASH);
        let token_key = derive(&index, INFO_TOKEN);
        Self {
            index,
            keys,
            secret_key,
            token_key,
        }
    }

    /// Parse the key ring text described in the module doc, or a single bare key.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        // Comments first (a comment may contain commas), then entries. Numbering counts every
        // piece, empty ones too, so in a file without commas an entry number is a line number.
        let entries: Vec<(usize, &str)> = text
            .lines()
            .flat_map(|line| {
                line.split_once('#')
                    .map_or(line, |(kept, _)| kept)
                    .split(',')
            })
            .map(str::trim)
            .enumerate()
            .map(|(i, entry)| (i + 1, entry))
            .filter(|(_, entry)| !entry.is_empty())
            .collect();
        match entries.as_slice() {
            [] => return Err(KeyError::Empty),
            [(entry, bare)] if !bare.contains(char::is_whitespace) => {
                let key = decode_key(*entry, bare)?;
                let index = derive(&key, INFO_BARE_INDEX);
                return Ok(Self::from_parts(index, BTreeMap::from([(1, key)])));
            }
            _ => {}
        }
        let mut index = None;
        let mut keys = BTreeMap::new();
        for (entry, line) in entries {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["index", b64] => {
                    if index.is_some() {
                        return Err(KeyError::DuplicateIndex { entry });
                    }
                    index = Some(decode_key(entry, b64)?);
                }
                ["key", version, b64] => {
                    let version =
                        version
                            .parse::<u32>()
                            .ok()
                            .filter(|v| *v > 0)
                            .ok_or(KeyError::Syntax {
                                entry,
                                reason: "a key version must be a whole number from 1 to 4294967295",
                            })?;
                    let key = decode_key(entry, b64)?;
                    if keys.insert(version, key).is_some() {
                        return Err(KeyError::DuplicateVersion { entry, version });
                    }
                }
                ["index", ..] => {
                    return Err(KeyError::Syntax {
                        entry,
                        reason: "expected `index <base64 key>`",
                    });
                }
                ["key", ..] => {
                    return Err(KeyError::Syntax {
                        entry,
                        reason: "expected `key <version> <base64 key>`",
                    });
                }
                _ => {
                    return Err(KeyError::Syntax {
                        entry,
                        reason: "expected `index <base64 key>` or `key <version> <base64 key>`",
                    });
                }
            }
        }
        let index = index.ok_or(KeyError::MissingIndex)?;
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        Ok(Self::from_parts(index, keys))
    }

    /// A fresh ring: a random index key and key version 1, from the OS.
    pub fn generate() -> Self {
        Self::from_parts(random_key(), BTreeMap::from([(1, random_key())]))
    }

    /// The explicit text form, with a header comment; [`parse`](Self::parse) reads it back to
    /// the same ring. This is key material: write it only to the key file or show it to the
    /// operator who asked.
    pub fn to_text(&self) -> String {
        let b64 = &general_purpose::STANDARD;
        let mut text = String::from(
            "# Herald vault key ring. Secret: keep it mode 0600 and backed up; without it no stored\n\
             # contact can be read. `index` keys the blind index and never changes; the highest\n\
             # `key` version seals new values, older versions still open what they sealed.\n",
        );
        text.push_str(&format!("index {}\n", b64.encode(*self.index)));
        for (version, key) in &self.keys {
            text.push_str(&format!("key {version} {}\n", b64.encode(**key)));
        }
        text
    }

    /// This ring plus a new random key whose version is one above the current; the index key
    /// is kept, so blind indexes stay valid. A ring whose current version is already
    /// `u32::MAX` (only possible if an operator wrote it so) comes back unchanged rather than
    /// losing that key.
    pub fn with_new_key(&self) -> Self {
        let mut next = self.clone();
        match self.current_version().checked_add(1) {
            Some(version) => {
                next.keys.insert(version, random_key());
            }
            None => tracing::error!("vault key version {} is the last possible one", u32::MAX),
        }
        next
    }

    /// The version that [`seal`](Self::seal) uses.
    pub fn current_version(&self) -> u32 {
        // A ring always holds at least one key: `parse` and `generate` guarantee it.
        self.keys.keys().next_back().copied().unwrap_or(0)
    }

    /// Every version this ring can open, ascending.
    pub fn versions(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// The ring Herald runs with: the inline `HERALD_VAULT_KEY` if set; otherwise the key
    /// file, created (with its directories) on first run. An existing file that group or
    /// others may access is refused rather than used.
    pub fn load(settings: &VaultSettings) -> Result<Self, KeyError> {
        if let Some(inline) = &settings.key {
            return Self::parse(inline.expose_secret());
        }
        let path = settings.key_file.as_path();
        match read_key_file(path) {
            Err(KeyError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
            other => return other,
        }
        let ring = Self::generate();
        match ring.create_file(path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "created a new vault key ring");
                Ok(ring)
            }
            // Another process created it first: use theirs.
            Err(KeyError::Io { source, .. }) if source.kind() == ErrorKind::AlreadyExists => {
                read_key_file(path)
            }
            Err(e) => Err(e),
        }
    }

    /// Write the ring to a new file at `path`, failing if one exists. Created with mode 0600
    /// and `O_EXCL`, so it is never readable by others, not even for a moment.
    fn create_file(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = parent_dir(path) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let written = file
            .write_all(self.to_text().as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            // Leave no empty or partial file that the next start would refuse to parse.
            let _ = std::fs::remove_file(path);
            return Err(io(e));
        }
        sync_dir(path);
        Ok(())
    }

    /// Replace the key file at `path` atomically: write a 0600 temporary file in the same
    /// directory, fsync it, rename it over `path`. A crash leaves the old ring or the new one,
    /// never a mix.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = parent_dir(path).unwrap_or(Path::new("."));
        let mut temp = tempfile::Builder::new()
            .prefix(".herald-keys-")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(io)?;
        temp.write_all(self.to_text().as_bytes()).map_err(io)?;
        temp.as_file().sync_all().map_err(io)?;
        temp.persist(path).map_err(|e| io(e.error))?;
        sync_dir(path);
        Ok(())
    }

    /// Seal `plaintext` with the current key, binding it to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let version = self.current_version();
        let header = version.to_be_bytes();
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher(version)
            .map(|cipher| {
                cipher.encrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: plaintext,
                        aad: &associated_data(header, aad),
                    },
                )
            })
            // The current version is in the ring by construction, and XChaCha20-Poly1305
            // only refuses messages above 256 GiB.
            .and_then(Result::ok)
            .expect("sealing with the current key cannot fail");
        let mut sealed = Vec::with_capacity(SEALED_MIN_LEN + plaintext.len());
        sealed.extend_from_slice(&header);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Open a value sealed by any version in the ring, checking it against `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        let version = sealed_version(sealed).ok_or(KeyError::Truncated)?;
        let cipher = self
            .cipher(version)
            .ok_or(KeyError::UnknownVersion(version))?;
        let (header, rest) = sealed.split_at(VERSION_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let header: [u8; VERSION_LEN] = header.try_into().map_err(|_| KeyError::Truncated)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KeyError::Truncated)?;
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &associated_data(header, aad),
                },
            )
            .map_err(|_| KeyError::Decrypt)
    }

    fn cipher(&self, version: u32) -> Option<XChaCha20Poly1305> {
        self.keys
            .get(&version)
            .and_then(|key| XChaCha20Poly1305::new_from_slice(&key[..]).ok())
    }

    /// The blind index of a normalised value: HMAC-SHA256 under the index key of
    /// `domain ‖ 0x00 ‖ value`, 32 bytes. The domain (e.g. a channel name) keeps equal
    /// strings on different channels apart; it must not contain a NUL.
    pub fn blind_index(&self, domain: &str, normalized: &str) -> Vec<u8> {
        mac(&self.index, domain, normalized.as_bytes())
    }

    /// The keyed hash under which a verification code or token is stored. `purpose` separates
    /// uses (a code's hash never matches a token's).
    pub fn secret_hash(&self, purpose: &str, secret: &str) -> Vec<u8> {
        mac(&self.secret_key, purpose, secret.as_bytes())
    }

    /// Whether `secret` hashes to `stored`, compared in constant time.
    pub fn secret_matches(&self, purpose: &str, secret: &str, stored: &[u8]) -> bool {
        bool::from(self.secret_hash(purpose, secret).ct_eq(stored))
    }

    /// A stateless token `payload.mac` for `purpose`, the MAC being base64url (no padding)
    /// HMAC-SHA256 under a key derived from the index key, so tokens outlive rotations.
    /// The payload is not encrypted (do not put secrets in it) and may contain any text,
    /// dots included: the MAC is split off at the last dot. It is not escaped either: percent-
    /// encode the token when it goes into a URL.
    pub fn sign_token(&self, purpose: &str, payload: &str) -> String {
        let tag = mac(&self.token_key, purpose, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The payload of a token signed by [`sign_token`](Self::sign_token) for this `purpose`,
    /// or `None` for anything else (malformed, altered, signed for another purpose).
    pub fn verify_token(&self, purpose: &str, token: &str) -> Option<String> {
        if token.len() > TOKEN_MAX_LEN {
            return None;
        }
        let (payload, tag) = token.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let expected = mac(&self.token_key, purpose, payload.as_bytes());
        bool::from(expected.ct_eq(&tag)).then(|| payload.to_owned())
    }
}

/// The version a sealed value names, if it is long enough to be one.
pub fn sealed_version(sealed: &[u8]) -> Option<u32> {
    if sealed.len() < SEALED_MIN_LEN {
        return None;
    }
    let header: [u8; VERSION_LEN] = sealed.get(..VERSION_LEN)?.try_into().ok()?;
    Some(u32::from_be_bytes(header))
}

/// A random secret for links and pairing: 32 bytes from the OS, base64url without padding.
pub fn random_token() -> String {
    let mut bytes = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut bytes[..]);
    URL_SAFE_NO_PAD.encode(*bytes)
}

/// A random numeric code of `digits` digits, leading zeros kept. Each digit is drawn
/// uniformly and independently, so every code of that length is equally likely.
pub fn random_code(digits: u32) -> String {
    (0..digits)
        .map(|_| char::from(b'0' + OsRng.gen_range(0..10u8)))
        .collect()
}

fn random_key() -> KeyBytes {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(&mut key[..]);
    key
}

/// HKDF-SHA256 of `ikm` for `info`, no salt: the input is already a uniform random key.
fn derive(ikm: &[u8; KEY_LEN], info: &[u8]) -> KeyBytes {
    let mut okm = Zeroizing::new([0u8; KEY_LEN]);
    Hkdf::<Sha256>::new(None, ikm)
        .expand(info, &mut okm[..])
        // HKDF-SHA256 refuses only outputs longer than 255 × 32 bytes.
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    okm
}

/// HMAC-SHA256 of `domain ‖ 0x00 ‖ value`. The NUL keeps ("ab", "c") and ("a", "bc") apart.
fn mac(key: &[u8; KEY_LEN], domain: &str, value: &[u8]) -> Vec<u8> {
    debug_assert!(!domain.contains('\0'), "a MAC domain must not contain NUL");
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key)
        // HMAC takes keys of any length.
        .expect("HMAC accepts a 32-byte key");
    mac.update(domain.as_bytes());
    mac.update(&[0]);
    mac.update(value);
    mac.finalize().into_bytes().to_vec()
}

/// The AEAD's associated data: the version header, then the caller's AAD.
fn associated_data(header: [u8; VERSION_LEN], aad: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(VERSION_LEN + aad.len());
    data.extend_from_slice(&header);
    data.extend_from_slice(aad);
    data
}

/// A 32-byte key in standard or URL-safe base64, padded or not (operators paste keys from
/// `openssl rand -base64 32` as often as from Herald itself).
fn decode_key(entry: usize, text: &str) -> Result<KeyBytes, KeyError> {
    const LENIENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);
    let bytes = Zeroizing::new(
        STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE.decode(text))
            .map_err(|_| KeyError::Base64 { entry })?,
    );
    let key: [u8; KEY_LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::KeyLength {
            entry,
            len: bytes.len(),
        })?;
    Ok(Zeroizing::new(key))
}

/// Read and parse an existing key file, refusing one that group or others may access. The
/// mode is checked on the opened file, so it is the file we read.
fn read_key_file(path: &Path) -> Result<KeyRing, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text).map_err(io)?;
    KeyRing::parse(&text)
}

fn parent_dir(path: &Path) -> Option<&Path> {
    path.parent().filter(|dir| !dir.as_os_str().is_empty())
}

/// Make a create or rename in `path`'s directory durable. Best effort: the file itself is
/// already synced, and some filesystems refuse to fsync a directory.
fn sync_dir(path: &Path) {
    let dir = parent_dir(path).unwrap_or(Path::new("."));
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which error a refused input must give.
    type Expect = fn(&KeyError) -> bool;
    use secrecy::SecretString;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    const KEY_C: &str = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=";

    fn two_version_ring() -> KeyRing {
        KeyRing::parse(&format!("index {KEY_A}\nkey 1 {KEY_B}\nkey 2 {KEY_C}\n")).unwrap()
    }

    fn settings_with_file(path: &Path) -> VaultSettings {
        VaultSettings {
            url: SecretString::from("sqlite::memory:"),
            key: None,
            key_file: path.to_owned(),
        }
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_sealed_value_opens_with_the_same_aad() {
        let ring = KeyRing::generate();
        let sealed = ring.seal(b"contact|1|did:plc:a|email", b"alice@example.org");
        assert_eq!(
            ring.open(b"contact|1|did:plc:a|email", &sealed).unwrap(),
            b"alice@example.org"
        );
        assert_eq!(sealed.len(), SEALED_MIN_LEN + "alice@example.org".len());
        assert_eq!(sealed_version(&sealed), Some(1));
    }

    #[test]
    fn sealed_bytes_hold_no_plaintext_and_nonces_differ() {
        let ring = KeyRing::generate();
        let a = ring.seal(b"aad", b"alice@example.org");
        let b = ring.seal(b"aad", b"alice@example.org");
        assert_ne!(a, b);
        assert!(!a.windows(5).any(|w| w == b"alice"));
    }

    #[test]
    fn a_sealed_value_does_not_open_with_another_aad() {
        let ring = KeyRing::generate();
        let sealed = ring.seal(b"contact|1|did:plc:a|email", b"alice@example.org");
        assert!(matches!(
            ring.open(b"contact|1|did:plc:b|email", &sealed),
            Err(KeyError::Decrypt)
        ));
    }

    #[test]
    fn a_tampered_value_does_not_open() {
        let ring = KeyRing::generate();
        let sealed = ring.seal(b"aad", b"secret");
        for i in VERSION_LEN..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(matches!(ring.open(b"aad", &bad), Err(KeyError::Decrypt)));
        }
        assert!(matches!(
            ring.open(b"aad", &sealed[..sealed.len() - 1]),
            Err(KeyError::Decrypt)
        ));
        assert!(matches!(
            ring.open(b"aad", &sealed[..SEALED_MIN_LEN - 1]),
            Err(KeyError::Truncated)
        ));
        assert_eq!(sealed_version(&sealed[..3]), None);
    }

    #[test]
    fn a_ring_with_two_versions_opens_both_and_seals_with_the_newest() {
        let old = KeyRing::parse(&format!("index {KEY_A}\nkey 1 {KEY_B}")).unwrap();
        let sealed_by_1 = old.seal(b"aad", b"one");
        let ring = two_version_ring();
        let sealed_by_2 = ring.seal(b"aad", b"two");
        assert_eq!(ring.current_version(), 2);
        assert_eq!(ring.versions(), vec![1, 2]);
        assert_eq!(sealed_version(&sealed_by_1), Some(1));
        assert_eq!(sealed_version(&sealed_by_2), Some(2));
        assert_eq!(ring.open(b"aad", &sealed_by_1).unwrap(), b"one");
        assert_eq!(ring.open(b"aad", &sealed_by_2).unwrap(), b"two");
    }

    #[test]
    fn a_version_the_ring_lacks_is_reported_as_unknown() {
        let sealed = two_version_ring().seal(b"aad", b"x");
        let old = KeyRing::parse(&format!("index {KEY_A}\nkey 1 {KEY_B}")).unwrap();
        assert!(matches!(
            old.open(b"aad", &sealed),
            Err(KeyError::UnknownVersion(2))
        ));
    }

    #[test]
    fn relabelling_the_version_does_not_open() {
        // Same key under two versions: only the authenticated header tells them apart.
        let ring = KeyRing::parse(&format!("index {KEY_A}\nkey 1 {KEY_B}\nkey 2 {KEY_B}")).unwrap();
        let mut sealed = ring.seal(b"aad", b"x");
        sealed[..4].copy_from_slice(&1u32.to_be_bytes());
        assert!(matches!(ring.open(b"aad", &sealed), Err(KeyError::Decrypt)));
    }

    #[test]
    fn the_text_form_round_trips_with_comments_and_commas() {
        let ring = two_version_ring();
        let text = ring.to_text();
        assert!(text.starts_with('#'));
        let again = KeyRing::parse(&text).unwrap();
        assert_eq!(again.versions(), vec![1, 2]);
        assert_eq!(again.to_text(), text);
        let env = format!("index {KEY_A},key 1 {KEY_B} , key 2 {KEY_C} # rotated, in June");
        assert_eq!(KeyRing::parse(&env).unwrap().to_text(), text);
    }

    #[test]
    fn parse_errors_say_what_is_wrong_without_the_key() {
        let cases: Vec<(String, Expect)> = vec![
            ("".into(), |e| matches!(e, KeyError::Empty)),
            ("# only a comment\n".into(), |e| {
                matches!(e, KeyError::Empty)
            }),
            (format!("index {KEY_A}\nkey 1 not*base64"), |e| {
                matches!(e, KeyError::Base64 { entry: 2 })
            }),
            (format!("index {KEY_A}\nkey 1 AAECAwQ="), |e| {
                matches!(e, KeyError::KeyLength { entry: 2, len: 5 })
            }),
            (
                format!("index {KEY_A}\nkey 1 {KEY_B}\nkey 1 {KEY_C}"),
                |e| {
                    matches!(
                        e,
                        KeyError::DuplicateVersion {
                            entry: 3,
                            version: 1
                        }
                    )
                },
            ),
            (
                format!("index {KEY_A}\nindex {KEY_B}\nkey 1 {KEY_C}"),
                |e| matches!(e, KeyError::DuplicateIndex { entry: 2 }),
            ),
            (format!("key 1 {KEY_B}\nkey 2 {KEY_C}"), |e| {
                matches!(e, KeyError::MissingIndex)
            }),
            (format!("index {KEY_A}\n"), |e| {
                matches!(e, KeyError::NoKeys)
            }),
            (format!("index {KEY_A}\nkey one {KEY_B}"), |e| {
                matches!(e, KeyError::Syntax { entry: 2, .. })
            }),
            (format!("index {KEY_A}\nkey 0 {KEY_B}"), |e| {
                matches!(e, KeyError::Syntax { entry: 2, .. })
            }),
            (format!("index {KEY_A}\nkey 1"), |e| {
                matches!(e, KeyError::Syntax { entry: 2, .. })
            }),
            (format!("index {KEY_A}\nsecret {KEY_B}"), |e| {
                matches!(e, KeyError::Syntax { entry: 2, .. })
            }),
            ("AAECAwQ=".into(), |e| {
                matches!(e, KeyError::KeyLength { entry: 1, len: 5 })
            }),
        ];
        for (text, expected) in cases {
            let err = KeyRing::parse(&text).unwrap_err();
            assert!(expected(&err), "{text:?} gave {err:?}");
            let message = err.to_string();
            for key in [KEY_A, KEY_B, KEY_C] {
                assert!(!message.contains(key), "{message}");
            }
        }
    }

    #[test]
    fn a_bare_key_is_version_one_with_a_derived_index_key() {
        let ring = KeyRing::parse(&format!("  {KEY_B}\n")).unwrap();
        assert_eq!(ring.versions(), vec![1]);
        // The explicit form carries the derived index key, so it is the same ring.
        let explicit = KeyRing::parse(&ring.to_text()).unwrap();
        assert_eq!(
            explicit.blind_index("email", "a@example.org"),
            ring.blind_index("email", "a@example.org")
        );
        let sealed = ring.seal(b"aad", b"x");
        assert_eq!(explicit.open(b"aad", &sealed).unwrap(), b"x");
        // The derived index key is not the sealing key.
        let naive = KeyRing::parse(&format!("index {KEY_B}\nkey 1 {KEY_B}")).unwrap();
        assert_ne!(
            naive.blind_index("email", "a@example.org"),
            ring.blind_index("email", "a@example.org")
        );
        // Unpadded and URL-safe spellings of the same key are the same key.
        let unpadded = KeyRing::parse(KEY_B.trim_end_matches('=')).unwrap();
        assert_eq!(unpadded.to_text(), ring.to_text());
    }

    #[test]
    fn the_blind_index_survives_rotation_and_separates_domains() {
        let ring = KeyRing::generate();
        let rotated = ring.with_new_key();
        assert_eq!(rotated.current_version(), 2);
        assert_eq!(ring.current_version(), 1);
        let index = ring.blind_index("email", "a@example.org");
        assert_eq!(index.len(), 32);
        assert_eq!(rotated.blind_index("email", "a@example.org"), index);
        assert_ne!(ring.blind_index("sms", "a@example.org"), index);
        assert_ne!(ring.blind_index("email", "b@example.org"), index);
        assert_ne!(
            ring.blind_index("ab", "c"),
            ring.blind_index("a", "bc"),
            "the separator keeps domain and value apart"
        );
        assert_ne!(
            KeyRing::generate().blind_index("email", "a@example.org"),
            index
        );
        // Rotated rings still open the old version.
        let sealed = ring.seal(b"aad", b"x");
        assert_eq!(rotated.open(b"aad", &sealed).unwrap(), b"x");
    }

    #[test]
    fn a_new_key_never_replaces_an_existing_one() {
        let ring = KeyRing::parse(&format!("index {KEY_A}\nkey 4294967295 {KEY_B}")).unwrap();
        let sealed = ring.seal(b"aad", b"x");
        let next = ring.with_new_key();
        assert_eq!(next.versions(), vec![u32::MAX]);
        assert_eq!(next.open(b"aad", &sealed).unwrap(), b"x");
    }

    #[test]
    fn secret_hashes_match_only_the_same_secret_and_purpose() {
        let ring = KeyRing::generate();
        let stored = ring.secret_hash("code", "123456");
        assert_eq!(stored.len(), 32);
        assert!(ring.secret_matches("code", "123456", &stored));
        assert!(!ring.secret_matches("code", "123457", &stored));
        assert!(!ring.secret_matches("pairing", "123456", &stored));
        assert!(!ring.secret_matches("code", "123456", &stored[..31]));
        assert!(!ring.secret_matches("code", "123456", &[]));
        assert_ne!(stored, ring.blind_index("code", "123456"));
        assert!(
            ring.with_new_key()
                .secret_matches("code", "123456", &stored)
        );
    }

    #[test]
    fn random_codes_have_the_asked_digits_and_can_start_with_zero() {
        for _ in 0..200 {
            let code = random_code(6);
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
        // One in ten codes starts with 0: 2000 tries all missing it has odds of 10^-91.
        assert!((0..2000).any(|_| random_code(6).starts_with('0')));
        assert_eq!(random_code(0), "");
        assert_eq!(random_code(30).len(), 30);
    }

    #[test]
    fn random_tokens_are_32_bytes_of_base64url() {
        let token = random_token();
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
        assert_ne!(token, random_token());
    }

    #[test]
    fn signed_tokens_verify_and_altered_ones_do_not() {
        let ring = KeyRing::generate();
        let token = ring.sign_token("manage", "0190a1b2-address");
        assert_eq!(
            ring.verify_token("manage", &token).as_deref(),
            Some("0190a1b2-address")
        );
        assert_eq!(
            ring.with_new_key()
                .verify_token("manage", &token)
                .as_deref(),
            Some("0190a1b2-address")
        );
        assert_eq!(ring.verify_token("confirm", &token), None);
        assert_eq!(KeyRing::generate().verify_token("manage", &token), None);
        let (payload, tag) = token.rsplit_once('.').unwrap();
        assert_eq!(
            ring.verify_token("manage", &format!("{payload}x.{tag}")),
            None
        );
        let mut bad_tag = tag.to_owned().into_bytes();
        bad_tag[0] = if bad_tag[0] == b'A' { b'B' } else { b'A' };
        let bad = format!("{payload}.{}", String::from_utf8(bad_tag).unwrap());
        assert_eq!(ring.verify_token("manage", &bad), None);
        for junk in ["", ".", "no-dot", "a.", ".abc", "a.!!!", "a.b.c", "é.é"] {
            assert_eq!(ring.verify_token("manage", junk), None, "{junk:?}");
        }
        assert_eq!(
            ring.verify_token("manage", &format!("{payload}.{tag}=")),
            None
        );
        assert_eq!(ring.verify_token("manage", &"a".repeat(10_000)), None);
    }

    #[test]
    fn token_payloads_may_contain_dots() {
        let ring = KeyRing::generate();
        let token = ring.sign_token("confirm", "id~did:web:community.example.org");
        assert_eq!(
            ring.verify_token("confirm", &token).as_deref(),
            Some("id~did:web:community.example.org")
        );
    }

    #[test]
    fn debug_shows_versions_and_never_keys() {
        let ring = two_version_ring();
        let shown = format!("{ring:?}");
        assert!(shown.contains("versions: [1, 2]"), "{shown}");
        for key in [KEY_A, KEY_B, KEY_C] {
            assert!(!shown.contains(key));
        }
        assert!(!shown.contains("0, 1, 2, 3"));
    }

    #[test]
    fn load_creates_a_0600_key_file_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/vault.keys");
        let settings = settings_with_file(&path);
        let first = KeyRing::load(&settings).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let second = KeyRing::load(&settings).unwrap();
        assert_eq!(first.to_text(), second.to_text());
    }

    #[test]
    fn load_prefers_the_inline_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.keys");
        let mut settings = settings_with_file(&path);
        settings.key = Some(SecretString::from(KEY_B));
        let ring = KeyRing::load(&settings).unwrap();
        assert_eq!(ring.versions(), vec![1]);
        assert!(!path.exists());
    }

    #[test]
    fn load_refuses_a_key_file_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.keys");
        std::fs::write(&path, KeyRing::generate().to_text()).unwrap();
        for mode in [0o640, 0o604, 0o660, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = KeyRing::load(&settings_with_file(&path)).unwrap_err();
            assert!(
                matches!(&err, KeyError::InsecurePermissions { mode: m, .. } if *m == mode),
                "{err:?}"
            );
            assert!(err.to_string().contains("chmod 600"));
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        KeyRing::load(&settings_with_file(&path)).unwrap();
    }

    #[test]
    fn load_reports_a_corrupt_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.keys");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap()
            .write_all(b"index no*pe\n")
            .unwrap();
        assert!(matches!(
            KeyRing::load(&settings_with_file(&path)),
            Err(KeyError::Base64 { entry: 1 })
        ));
    }

    #[test]
    fn save_replaces_the_file_atomically_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.keys");
        let settings = settings_with_file(&path);
        let ring = KeyRing::load(&settings).unwrap();
        let rotated = ring.with_new_key();
        rotated.save(&path).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let loaded = KeyRing::load(&settings).unwrap();
        assert_eq!(loaded.versions(), vec![1, 2]);
        assert_eq!(loaded.to_text(), rotated.to_text());
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("vault.keys")]);
        // A reader holding the old file keeps the old contents: the file was replaced, not
        // rewritten in place.
        let mut old = std::fs::File::open(&path).unwrap();
        rotated.with_new_key().save(&path).unwrap();
        let mut text = String::new();
        old.read_to_string(&mut text).unwrap();
        assert_eq!(KeyRing::parse(&text).unwrap().versions(), vec![1, 2]);
        assert_eq!(KeyRing::load(&settings).unwrap().versions(), vec![1, 2, 3]);
    }

    #[test]
    fn save_creates_a_new_file_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.keys");
        KeyRing::generate().save(&path).unwrap();
        assert_eq!(mode_of(&path), 0o600);
    }
}
