//! Identifiers named in the brief, each a newtype so no bare string crosses a crate boundary.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string already known to be valid.
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }

            /// The identifier as text.
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

string_id!(
    /// The name of an agent in the register (`support-bot`).
    AgentId
);
string_id!(
    /// A namespaced action, `UPSTREAM.TOOL` (`billing.issue_refund`).
    ActionName
);
string_id!(
    /// The name of an upstream system in the register (`billing`).
    UpstreamName
);
string_id!(
    /// One agent run or session; every call of the run carries it.
    RunId
);
string_id!(
    /// One call through the pipeline; its audit events share it.
    CallId
);
string_id!(
    /// The version of the register a decision was taken under (a digest of the file).
    RegisterVersion
);

impl ActionName {
    /// Splits `UPSTREAM.TOOL` at the first dot.
    pub fn split(&self) -> Option<(&str, &str)> {
        self.0.split_once('.')
    }
}

/// A fresh random identifier with a prefix, such as `call_3f9a…`.
pub fn fresh(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    // INVARIANT: the OS RNG is available on every supported platform; if it is not,
    // a time-derived fallback still yields unique-enough correlation ids (never secrets).
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        for (i, b) in nanos.to_le_bytes().iter().take(12).enumerate() {
            if let Some(slot) = bytes.get_mut(i) {
                *slot = *b;
            }
        }
    }
    format!("{prefix}_{}", hex::encode(bytes))
}
