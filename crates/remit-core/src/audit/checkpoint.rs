//! Ed25519-signed checkpoints in the C2SP signed-note format.
//!
//! A checkpoint (c2sp.org/tlog-checkpoint) commits to the first `size` events of the log:
//!
//! ```text
//! <origin>
//! <tree size in decimal>
//! <root hash, base64>
//!
//! — <key name> <base64(key id || ed25519 signature)>
//! ```
//!
//! The signature covers the three body lines, newlines included (c2sp.org/signed-note).
//! Keys are written as text in the formats of `golang.org/x/mod/sumdb/note`, so the
//! Go tooling can read remit's checkpoints: a verifier key is
//! `<name>+<key id hex>+<base64(0x01 || public key)>` and a private key is
//! `PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;

use super::tree::Hash;

/// The signature algorithm byte for Ed25519 in the note formats.
const ALG_ED25519: u8 = 0x01;
/// The prefix of every signature line: an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// The prefix of private key text.
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";
/// The largest note accepted, as in the Go implementation.
const MAX_NOTE_LEN: usize = 1 << 20;
/// The most signature lines accepted on one note, as in the Go implementation.
const MAX_SIGNATURES: usize = 100;

/// Why a key or a signed checkpoint could not be made, read or trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The key name is empty or holds a space or a `+`.
    #[error("invalid key name `{0}`: it must be non-empty, without spaces or `+`")]
    KeyName(String),
    /// The private key text does not parse; the message never repeats the key.
    #[error("malformed private key: {0}")]
    PrivateKey(&'static str),
    /// The verifier key text does not parse.
    #[error("malformed verifier key: {0}")]
    VerifierKey(&'static str),
    /// The operating system gave no randomness for a new key.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    /// The text is not a signed note.
    #[error("malformed signed note: {0}")]
    Note(&'static str),
    /// No signature line comes from the expected key.
    #[error("checkpoint is not signed by key `{0}`")]
    NotSigned(String),
    /// A signature line names the expected key but its signature is wrong.
    #[error("signature by key `{0}` does not verify")]
    BadSignature(String),
    /// The signed text is not a checkpoint body.
    #[error("malformed checkpoint: {0}")]
    Body(&'static str),
}

/// The state of the log a signature commits to: its origin, size and root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name, the first line of the note; one non-empty line.
    pub origin: String,
    /// How many events the tree covers.
    pub size: u64,
    /// The Merkle tree hash over those events.
    pub root: Hash,
}

impl Checkpoint {
    /// The three body lines, newlines included: the bytes the signature covers.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        )
    }

    /// Signs the checkpoint and returns the whole signed note.
    ///
    /// The origin must be one non-empty line without control characters; otherwise the
    /// note is written all the same but no verifier will accept it.
    pub fn sign(&self, key: &AuditKey) -> String {
        let body = self.body();
        let signature = key.signing.sign(body.as_bytes());
        let mut blob = Vec::with_capacity(4 + Signature::BYTE_SIZE);
        blob.extend_from_slice(&key.id);
        blob.extend_from_slice(&signature.to_bytes());
        format!("{body}\n{SIG_PREFIX}{} {}\n", key.name, BASE64.encode(blob))
    }

    /// Parses the signed text of a checkpoint: exactly origin, size and root lines.
    fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let text = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Body("it must end with a newline"))?;
        let mut lines = text.split('\n');
        let (Some(origin), Some(size), Some(root), None) =
            (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::Body(
                "it must have exactly three lines: origin, size and root",
            ));
        };
        if origin.is_empty() {
            return Err(CheckpointError::Body("the origin line is empty"));
        }
        let canonical_digits = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        if !canonical_digits {
            return Err(CheckpointError::Body("the size is not a decimal number"));
        }
        let size = size
            .parse::<u64>()
            .map_err(|_| CheckpointError::Body("the size is too large"))?;
        let root = BASE64
            .decode(root)
            .ok()
            .and_then(|bytes| Hash::try_from(bytes.as_slice()).ok())
            .ok_or(CheckpointError::Body(
                "the root is not a base64 32-byte hash",
            ))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// The key that signs checkpoints: an Ed25519 signing key and its name.
pub struct AuditKey {
    name: String,
    id: [u8; 4],
    signing: SigningKey,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the seed: show what the verifier key shows.
        f.debug_struct("AuditKey")
            .field("name", &self.name)
            .field("id", &hex::encode(self.id))
            .field("seed", &"<redacted>")
            .finish()
    }
}

/// What checks the operator's token for `/health`'s error details: its SHA-256, compared in constant time.
#[derive(Clone, Copy)]
pub struct StatusToken([u8; 32]);

impl fmt::Debug for StatusToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StatusToken(<redacted>)")
    }
}

impl StatusToken {
    /// The check for `key`'s token ([`AuditKey::status_token`]).
    pub fn of(key: &AuditKey) -> Self {
        Self(Sha256::digest(key.status_token().as_bytes()).into())
    }

    /// Whether `presented` is the token.
    pub fn admits(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(self.0.ct_eq(&presented))
    }
}

impl AuditKey {
    /// A new random key with the given name (usually the log's origin).
    pub fn generate(name: &str) -> Result<Self, CheckpointError> {
        check_name(name)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| CheckpointError::Random(e.to_string()))?;
        let key = Self::from_seed(name, &seed);
        seed.fill(0);
        Ok(key)
    }

    /// The operator's token for `/health`'s error details, derived from this private key.
    ///
    /// Whoever can read the key file (the operator, `remit status`) can make it; the public
    /// key does not give it, and it signs nothing.
    pub fn status_token(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"remit status token v1\0");
        h.update(self.signing.to_bytes());
        hex::encode(h.finalize())
    }

    /// The key that seals agents' request states, derived from this private key under a
    /// label of its own ([`RequestStateKey::derive`]): two gateways reading one key file
    /// open each other's states, and the signing key itself seals nothing.
    ///
    /// [`RequestStateKey::derive`]: crate::request_state::RequestStateKey::derive
    pub fn request_state_key(&self) -> crate::request_state::RequestStateKey {
        crate::request_state::RequestStateKey::derive(self.signing.as_bytes())
    }

    /// The key with this name and 32-byte Ed25519 seed.
    fn from_seed(name: &str, seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let id = key_id(name, signing.verifying_key().as_bytes());
        Self {
            name: name.to_owned(),
            id,
            signing,
        }
    }

    /// Reads private key text `PRIVATE+KEY+<name>+<id hex>+<base64(0x01 || seed)>`.
    pub fn from_text(text: &str) -> Result<Self, CheckpointError> {
        let rest = text
            .trim_end_matches(['\n', '\r'])
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or(CheckpointError::PrivateKey(
                "it must start with `PRIVATE+KEY+`",
            ))?;
        let (name, id, key) =
            split_key(rest).ok_or(CheckpointError::PrivateKey("it must have five `+` fields"))?;
        check_name(name).map_err(|_| CheckpointError::PrivateKey("invalid key name"))?;
        let id = parse_id(id).ok_or(CheckpointError::PrivateKey(
            "the key id is not 8 hex digits",
        ))?;
        let mut seed = decode_key(key).ok_or(CheckpointError::PrivateKey(
            "the key is not base64 of an ed25519 seed",
        ))?;
        let parsed = Self::from_seed(name, &seed);
        seed.fill(0);
        if parsed.id != id {
            return Err(CheckpointError::PrivateKey(
                "the key id does not match the key",
            ));
        }
        Ok(parsed)
    }

    /// The private key text, for a secret store; it holds the seed.
    pub fn to_text(&self) -> String {
        let mut blob = [0u8; 33];
        let (alg, seed) = blob.split_at_mut(1);
        alg.fill(ALG_ED25519);
        seed.copy_from_slice(self.signing.as_bytes());
        let text = format!(
            "{PRIVATE_PREFIX}{}+{}+{}",
            self.name,
            hex::encode(self.id),
            BASE64.encode(blob)
        );
        blob.fill(0);
        text
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half, for anyone to check checkpoints with.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            id: self.id,
            key: self.signing.verifying_key(),
        }
    }
}

/// The public key that checks checkpoints, with its name and key id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl Verifier {
    /// Reads verifier key text `<name>+<id hex>+<base64(0x01 || public key)>`.
    pub fn from_text(text: &str) -> Result<Self, CheckpointError> {
        let text = text.trim_end_matches(['\n', '\r']);
        let (name, id, key) = split_key(text).ok_or(CheckpointError::VerifierKey(
            "it must have three `+` fields",
        ))?;
        check_name(name).map_err(|_| CheckpointError::VerifierKey("invalid key name"))?;
        let id = parse_id(id).ok_or(CheckpointError::VerifierKey(
            "the key id is not 8 hex digits",
        ))?;
        let bytes = decode_key(key).ok_or(CheckpointError::VerifierKey(
            "the key is not base64 of an ed25519 public key",
        ))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| CheckpointError::VerifierKey("the key is not an ed25519 point"))?;
        if key_id(name, key.as_bytes()) != id {
            return Err(CheckpointError::VerifierKey(
                "the key id does not match the key",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// The verifier key text, safe to publish.
    pub fn to_text(&self) -> String {
        let mut blob = [0u8; 33];
        let (alg, public) = blob.split_at_mut(1);
        alg.fill(ALG_ED25519);
        public.copy_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            BASE64.encode(blob)
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id: the first bytes of `SHA-256(name || "\n" || 0x01 || public key)`.
    pub fn key_id(&self) -> [u8; 4] {
        self.id
    }

    /// Checks a signed checkpoint note and returns the checkpoint it signs.
    ///
    /// The note must carry a valid signature from this key; signature lines from other
    /// keys are ignored. The body must be exactly the three checkpoint lines.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let text = self.open(note)?;
        Checkpoint::parse_body(text)
    }

    /// Checks the signed-note framing and this key's signature; returns the signed text.
    fn open<'n>(&self, note: &'n str) -> Result<&'n str, CheckpointError> {
        if note.len() > MAX_NOTE_LEN {
            return Err(CheckpointError::Note("it is larger than 1 MiB"));
        }
        if note.chars().any(|c| c.is_ascii_control() && c != '\n') {
            return Err(CheckpointError::Note(
                "it holds control characters other than newline",
            ));
        }
        let split = note.rfind("\n\n").ok_or(CheckpointError::Note(
            "it has no blank line before the signatures",
        ))?;
        let (text, sigs) = (note.get(..=split), note.get(split + 2..));
        let (Some(text), Some(sigs)) = (text, sigs) else {
            return Err(CheckpointError::Note("it has no signatures"));
        };
        let sigs =
            sigs.strip_suffix('\n')
                .filter(|s| !s.is_empty())
                .ok_or(CheckpointError::Note(
                    "the signature lines must end with a newline",
                ))?;
        let mut verified = false;
        for (n, line) in sigs.split('\n').enumerate() {
            if n >= MAX_SIGNATURES {
                return Err(CheckpointError::Note("it has too many signatures"));
            }
            let (name, blob) = line
                .strip_prefix(SIG_PREFIX)
                .and_then(|l| l.split_once(' '))
                .ok_or(CheckpointError::Note(
                    "a signature line is not `\u{2014} <name> <signature>`",
                ))?;
            if check_name(name).is_err() {
                return Err(CheckpointError::Note(
                    "a signature line has an invalid key name",
                ));
            }
            let blob = BASE64
                .decode(blob)
                .map_err(|_| CheckpointError::Note("a signature is not base64"))?;
            let Some((id, signature)) = blob.split_first_chunk::<4>() else {
                return Err(CheckpointError::Note("a signature is too short"));
            };
            if signature.is_empty() {
                return Err(CheckpointError::Note("a signature is too short"));
            }
            if name != self.name || *id != self.id {
                continue;
            }
            if verified {
                return Err(CheckpointError::Note(
                    "it carries two signatures from the same key",
                ));
            }
            let signature = Signature::from_slice(signature)
                .map_err(|_| CheckpointError::BadSignature(self.name.clone()))?;
            self.key
                .verify_strict(text.as_bytes(), &signature)
                .map_err(|_| CheckpointError::BadSignature(self.name.clone()))?;
            verified = true;
        }
        if verified {
            Ok(text)
        } else {
            Err(CheckpointError::NotSigned(self.name.clone()))
        }
    }
}

/// The key names on a note's signature lines (`— <name> <signature>`), in order, unchecked.
pub fn signers(note: &str) -> impl Iterator<Item = &str> {
    note.lines()
        .filter_map(|line| line.strip_prefix(SIG_PREFIX))
        .filter_map(|line| line.split(' ').next())
}

/// The note key id: the first 4 bytes of `SHA-256(name || 0x0A || 0x01 || public key)`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public_key);
    let digest: Hash = h.finalize().into();
    let [a, b, c, d, ..] = digest;
    [a, b, c, d]
}

/// A key name must be non-empty and hold no whitespace and no `+`.
fn check_name(name: &str) -> Result<(), CheckpointError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(CheckpointError::KeyName(name.to_owned()));
    }
    Ok(())
}

/// Splits `<name>+<id>+<key>` into its three fields; none may hold a `+` but the last's base64.
fn split_key(text: &str) -> Option<(&str, &str, &str)> {
    let (name, rest) = text.split_once('+')?;
    let (id, key) = rest.split_once('+')?;
    Some((name, id, key))
}

/// Parses 8 hex digits into a key id.
fn parse_id(text: &str) -> Option<[u8; 4]> {
    if text.len() != 8 {
        return None;
    }
    let mut id = [0u8; 4];
    hex::decode_to_slice(text, &mut id).ok()?;
    Some(id)
}

/// Decodes `base64(0x01 || 32 bytes)` into the 32 bytes.
fn decode_key(text: &str) -> Option<[u8; 32]> {
    let bytes = BASE64.decode(text).ok()?;
    let (alg, key) = bytes.split_first()?;
    if *alg != ALG_ED25519 {
        return None;
    }
    <[u8; 32]>::try_from(key).ok()
}

#[cfg(test)]
mod tests;
