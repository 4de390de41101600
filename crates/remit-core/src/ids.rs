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

/// A fresh identifier with a prefix, time-ordered: `call_` + 12 hex digits of milliseconds + 16 random.
///
/// Time order keeps the store's indexes append-mostly (random ids halve SQLite's append rate).
pub fn fresh(prefix: &str) -> String {
    use std::fmt::Write as _;
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    // one allocation of the final size: this runs once per call
    let mut id = String::with_capacity(prefix.len() + 1 + 12 + 16);
    let _ = write!(
        id,
        "{prefix}_{:012x}{:016x}",
        ms & 0xffff_ffff_ffff,
        next_random()
    );
    id
}

/// 64 bits that never repeat within a process and differ between processes: SplitMix64 over a
/// counter that starts at a random point (one OS RNG read per process, not one per id).
fn next_random() -> u64 {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: OnceLock<AtomicU64> = OnceLock::new();
    let state = STATE.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // INVARIANT: the OS RNG is available on every supported platform; if it is not,
        // the clock's nanoseconds still make ids unique enough for correlation (they are
        // never secrets).
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            bytes = (nanos as u64).to_le_bytes();
        }
        AtomicU64::new(u64::from_le_bytes(bytes))
    });
    // the golden-ratio step makes the sequence a permutation of all 2^64 values
    let mut z = state
        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fresh_ids_are_unique_and_sort_by_time() {
        let a = super::fresh("call");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = super::fresh("call");
        assert!(a < b, "{a} {b}");
        assert_eq!(a.len(), "call_".len() + 12 + 16);
        assert_ne!(super::fresh("x"), super::fresh("x"));
    }

    #[test]
    fn a_hundred_thousand_ids_from_four_threads_never_repeat() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..25_000)
                        .map(|_| super::fresh("call"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = std::collections::HashSet::new();
        for t in threads {
            for id in t.join().unwrap() {
                assert!(all.insert(id));
            }
        }
        assert_eq!(all.len(), 100_000);
    }
}
