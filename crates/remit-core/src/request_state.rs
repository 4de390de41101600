//! The seal on an upstream's `requestState`: bound to the agent, the action and the
//! arguments, and opened before anything of a resuming call reaches the upstream.
//!
//! A 2026-07-28 upstream that needs input mid-call answers with an `InputRequiredResult`
//! carrying an opaque `requestState`, and the agent resumes by sending it back unchanged.
//! The protocol says a server must treat the state that comes back as written by an
//! attacker. Passed through as it came, one agent could resume with another's state, with a
//! state minted for another action or other arguments, or with a state it wrote itself for
//! an upstream that trusts its own. So the pipeline hands the agent a sealed token in place
//! of the upstream's state, and gives the upstream its state back only from a token that
//! opens for the same agent, action and arguments, before it expires.
//!
//! The token is `remit1.` followed by base64url (no padding) of:
//!
//! ```text
//! expiry (8 bytes, big-endian epoch milliseconds) || MAC (32 bytes) || the upstream's state (UTF-8)
//! ```
//!
//! The MAC is HMAC-SHA256, under a key derived from the audit signing key, of a format
//! label, the agent's name, the action's name, the SHA-256 of the arguments in canonical
//! form (keys sorted at every depth, no space; `_reason` left out), the expiry and the
//! upstream's state, each of variable length prefixed by its length. The agent, the action
//! and the arguments are not in the token: the call that resumes supplies them.
//!
//! It protects integrity, not secrecy: the upstream's state can be read by anyone holding
//! the token, as it could before.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit as _, Mac as _};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::time::Duration;

/// How long after the upstream asked for input its sealed state still opens.
///
/// Thirty minutes: the input may be a person's answer to an elicitation, which can take a
/// while, and a state that outlives the question invites replay long after it.
pub const LIFETIME: Duration = Duration::from_secs(30 * 60);

/// What every sealed state starts with (the format's version).
const PREFIX: &str = "remit1.";

/// The label the MAC input starts with, so no other MAC made with the key can pass for one.
const MAC_LABEL: &[u8] = b"remit request state v1\0";

/// The label the key is derived under from the audit signing key.
const KEY_LABEL: &[u8] = b"remit request state key v1";

type HmacSha256 = hmac::Hmac<Sha256>;

/// The key that seals and opens request states; derived, never the signing key itself.
#[derive(Clone)]
pub struct RequestStateKey([u8; 32]);

impl fmt::Debug for RequestStateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestStateKey(<redacted>)")
    }
}

/// Who may open a sealed state: the agent, the action and the arguments of the call.
#[derive(Clone, Copy, Debug)]
pub struct StateBinding<'a> {
    /// The agent's name.
    pub agent: &'a str,
    /// The action's name (`UPSTREAM.TOOL`).
    pub action: &'a str,
    /// The SHA-256 of the call's arguments in canonical form ([`args_digest`]).
    pub args: [u8; 32],
}

/// Why a state the agent sent did not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFault {
    /// It was remit's, for this agent, action and arguments, but it is past its expiry.
    Expired,
    /// Not one remit sealed, altered, sealed under another key, or for another agent,
    /// action or arguments (which of these is not said).
    Invalid,
}

impl RequestStateKey {
    /// The key derived from `secret` (the audit signing key's seed) under remit's label.
    pub fn derive(secret: &[u8]) -> Self {
        Self(mac(secret, &[KEY_LABEL]))
    }

    /// A random key, for a gateway whose states no other gateway needs to open.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(Self(key))
    }

    /// The upstream's `state`, sealed for `binding` until `expires_at_ms`: one ASCII token.
    pub fn seal(&self, binding: &StateBinding<'_>, expires_at_ms: i64, state: &str) -> String {
        let expiry = expires_at_ms.to_be_bytes();
        let tag = self.tag(binding, &expiry, state.as_bytes());
        let mut payload = Vec::with_capacity(expiry.len() + tag.len() + state.len());
        payload.extend_from_slice(&expiry);
        payload.extend_from_slice(&tag);
        payload.extend_from_slice(state.as_bytes());
        let mut token = String::with_capacity(PREFIX.len() + payload.len().div_ceil(3) * 4);
        token.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        token
    }

    /// The upstream's state from a `token` the agent sent, if it opens for `binding` at `now_ms`.
    pub fn open(
        &self,
        binding: &StateBinding<'_>,
        now_ms: i64,
        token: &str,
    ) -> Result<String, StateFault> {
        use subtle::ConstantTimeEq as _;
        let encoded = token.strip_prefix(PREFIX).ok_or(StateFault::Invalid)?;
        let payload = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| StateFault::Invalid)?;
        let (expiry, rest) = payload
            .split_first_chunk::<8>()
            .ok_or(StateFault::Invalid)?;
        let (tag, state) = rest.split_first_chunk::<32>().ok_or(StateFault::Invalid)?;
        let expected = self.tag(binding, expiry, state);
        if !bool::from(expected.ct_eq(tag)) {
            return Err(StateFault::Invalid);
        }
        // the expiry is only believed once the MAC says remit wrote it
        if now_ms >= i64::from_be_bytes(*expiry) {
            return Err(StateFault::Expired);
        }
        String::from_utf8(state.to_vec()).map_err(|_| StateFault::Invalid)
    }

    /// The MAC over everything a sealed state is bound to.
    fn tag(&self, binding: &StateBinding<'_>, expiry: &[u8; 8], state: &[u8]) -> [u8; 32] {
        let agent_len = length(binding.agent.as_bytes());
        let action_len = length(binding.action.as_bytes());
        let state_len = length(state);
        mac(
            &self.0,
            &[
                MAC_LABEL,
                &agent_len,
                binding.agent.as_bytes(),
                &action_len,
                binding.action.as_bytes(),
                &binding.args,
                expiry,
                &state_len,
                state,
            ],
        )
    }
}

/// A part's length as 8 big-endian bytes, so no two different sets of parts give one input.
fn length(part: &[u8]) -> [u8; 8] {
    u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes()
}

/// HMAC-SHA256 under `key` of the parts, in order.
fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes a key of any length: this cannot fail
    let Ok(mut m) = HmacSha256::new_from_slice(key) else {
        return [0; 32];
    };
    for part in parts {
        m.update(part);
    }
    m.finalize().into_bytes().into()
}

/// The SHA-256 of a call's arguments in canonical form: keys sorted at every depth, no space.
///
/// A client that writes the same arguments in another key order gets the same digest.
pub fn args_digest(args: &Map<String, Value>) -> [u8; 32] {
    let mut text = Vec::with_capacity(128);
    crate::audit::event::write_canonical_object(args, &mut text);
    Sha256::digest(&text).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::AuditKey;
    use crate::ports::Clock;
    use serde_json::json;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// A clock a test moves by hand.
    #[derive(Debug)]
    struct TestClock(AtomicI64);

    impl TestClock {
        fn at(ms: i64) -> Self {
            Self(AtomicI64::new(ms))
        }

        fn advance(&self, by: Duration) {
            self.0
                .fetch_add(i64::try_from(by.as_millis()).unwrap(), Ordering::SeqCst);
        }
    }

    impl Clock for TestClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn args(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("{other}"),
        }
    }

    fn key() -> RequestStateKey {
        AuditKey::generate("remit.test/log")
            .unwrap()
            .request_state_key()
    }

    fn binding<'a>(agent: &'a str, action: &'a str, a: Value) -> StateBinding<'a> {
        StateBinding {
            agent,
            action,
            args: args_digest(&args(a)),
        }
    }

    const NOW: i64 = 1_790_000_000_000;

    fn expiry() -> i64 {
        NOW + i64::try_from(LIFETIME.as_millis()).unwrap()
    }

    #[test]
    fn a_sealed_state_opens_for_its_own_call_and_gives_back_the_upstreams_state() {
        let key = key();
        let b = binding("support-bot", "asker.ask", json!({"id": "c1", "n": [1, 2]}));
        for state in [
            "echo-ask-round-1",
            "",
            "{\"round\":2,\"name\":\"Ada\"}",
            "é ✓",
        ] {
            let token = key.seal(&b, expiry(), state);
            assert!(token.starts_with("remit1."), "{token}");
            assert!(token.is_ascii(), "{token}");
            assert_eq!(key.open(&b, NOW, &token).as_deref(), Ok(state));
        }
    }

    #[test]
    fn a_state_sealed_for_another_agent_action_or_arguments_does_not_open() {
        let key = key();
        let sealed_for = binding("support-bot", "asker.ask", json!({"id": "c1"}));
        let token = key.seal(&sealed_for, expiry(), "echo-ask-round-1");
        for other in [
            binding("other-bot", "asker.ask", json!({"id": "c1"})),
            binding("support-bot", "asker.other", json!({"id": "c1"})),
            binding("support-bot", "asker.ask", json!({"id": "c2"})),
            binding(
                "support-bot",
                "asker.ask",
                json!({"id": "c1", "more": true}),
            ),
            binding("support-bot", "asker.ask", json!({})),
            // the parts' lengths are bound too: moving a character across a boundary changes it
            binding("support-bot", "asker.as", json!({"id": "c1"})),
            binding("support-bo", "tasker.ask", json!({"id": "c1"})),
        ] {
            assert_eq!(
                key.open(&other, NOW, &token),
                Err(StateFault::Invalid),
                "{other:?}"
            );
        }
    }

    #[test]
    fn the_same_arguments_in_another_key_order_open_the_state() {
        let key = key();
        let one = binding(
            "a",
            "u.t",
            json!({"b": {"y": 1, "x": [2, {"q": 1, "p": 2}]}, "a": "z"}),
        );
        let token = key.seal(&one, expiry(), "s");
        let text = r#"{"a":"z","b":{"x":[2,{"p":2,"q":1}],"y":1}}"#;
        let reordered: Map<String, Value> = serde_json::from_str(text).unwrap();
        let two = StateBinding {
            agent: "a",
            action: "u.t",
            args: args_digest(&reordered),
        };
        assert_eq!(key.open(&two, NOW, &token).as_deref(), Ok("s"));
    }

    #[test]
    fn a_state_opens_until_its_expiry_and_then_says_it_expired() {
        let key = key();
        let clock = TestClock::at(NOW);
        let b = binding("support-bot", "asker.ask", json!({}));
        let lifetime = i64::try_from(LIFETIME.as_millis()).unwrap();
        let token = key.seal(&b, clock.now_ms() + lifetime, "state");
        clock.advance(LIFETIME - Duration::from_millis(1));
        assert_eq!(key.open(&b, clock.now_ms(), &token).as_deref(), Ok("state"));
        clock.advance(Duration::from_millis(1));
        assert_eq!(
            key.open(&b, clock.now_ms(), &token),
            Err(StateFault::Expired)
        );
        // an expired state of another agent says only that it is not valid
        let other = binding("other-bot", "asker.ask", json!({}));
        assert_eq!(
            key.open(&other, clock.now_ms(), &token),
            Err(StateFault::Invalid)
        );
    }

    #[test]
    fn a_state_altered_anywhere_does_not_open() {
        let key = key();
        let b = binding("support-bot", "asker.ask", json!({}));
        let token = key.seal(&b, expiry(), "echo-ask-round-1");
        // every byte of the payload flipped in turn: expiry, MAC and state
        let payload = URL_SAFE_NO_PAD
            .decode(token.strip_prefix(PREFIX).unwrap())
            .unwrap();
        for i in 0..payload.len() {
            let mut edited = payload.clone();
            edited[i] ^= 0x01;
            let forged = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&edited));
            assert_eq!(
                key.open(&b, NOW, &forged),
                Err(StateFault::Invalid),
                "byte {i}"
            );
        }
        // one character of the token changed, added or taken away
        let last = token.chars().last().unwrap();
        let changed = format!(
            "{}{}",
            &token[..token.len() - 1],
            if last == 'A' { 'B' } else { 'A' }
        );
        for forged in [
            changed,
            format!("{token}A"),
            format!("{token}-TAMPERED"),
            token[..token.len() - 1].to_owned(),
            token.replacen("remit1.", "remit2.", 1),
            token.to_uppercase(),
        ] {
            assert_eq!(
                key.open(&b, NOW, &forged),
                Err(StateFault::Invalid),
                "{forged}"
            );
        }
    }

    #[test]
    fn a_state_remit_did_not_seal_does_not_open() {
        let key = key();
        let b = binding("support-bot", "asker.ask", json!({}));
        let short = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode([0u8; 39]));
        for forged in [
            "echo-ask-round-1",
            "",
            "remit1.",
            "remit1.!!!",
            "remit1.AAAA",
            &short,
        ] {
            assert_eq!(
                key.open(&b, NOW, forged),
                Err(StateFault::Invalid),
                "{forged}"
            );
        }
    }

    #[test]
    fn a_state_sealed_by_another_gateways_key_does_not_open_and_one_from_the_same_key_file_does() {
        let audit = AuditKey::generate("remit.test/log").unwrap();
        let b = binding("support-bot", "asker.ask", json!({}));
        let token = audit.request_state_key().seal(&b, expiry(), "state");
        // another gateway, with a key of its own
        assert_eq!(key().open(&b, NOW, &token), Err(StateFault::Invalid));
        // a second gateway reading the same key file opens it
        let replica = AuditKey::from_text(&audit.to_text()).unwrap();
        assert_eq!(
            replica.request_state_key().open(&b, NOW, &token).as_deref(),
            Ok("state")
        );
    }

    #[test]
    fn the_state_key_is_derived_and_is_not_the_signing_seed() {
        let seed = [7u8; 32];
        let derived = RequestStateKey::derive(&seed);
        assert_ne!(derived.0, seed);
        assert_eq!(derived.0, RequestStateKey::derive(&seed).0);
        assert_ne!(derived.0, RequestStateKey::derive(&[8u8; 32]).0);
        assert_eq!(format!("{derived:?}"), "RequestStateKey(<redacted>)");
    }
}
