//! Offline verification of a whole log, streaming: what `remit audit verify` runs.
//!
//! Feed a [`LogVerifier`] every stored event in `seq` order, then [`LogVerifier::finish`].
//! It checks each event on its own (its body against its recorded leaf hash, that the
//! body is an event, that `seq` runs 0, 1, 2, .. without gaps or repeats) and the tree as
//! a whole: at each signed checkpoint's size, the root over the recorded leaf hashes must
//! be the signed root. Memory stays O(log n) (a [`Frontier`], the checkpoints, and at
//! most [`MAX_PROBLEMS`] problems).
//!
//! How each kind of tampering shows:
//!
//! | tampering | problem |
//! |---|---|
//! | a body edited | `event N: body does not match its recorded hash` |
//! | a body edited and its hash rewritten to match | the first checkpoint range whose root fails |
//! | events reordered with their hashes | the first checkpoint range whose root fails |
//! | an event deleted | `event N is missing` |
//! | an event duplicated or inserted under a used `seq` | `event N appears twice` / `event N is out of order` |
//! | events inserted and renumbered | the first checkpoint range whose root fails |
//! | the tail deleted | `log holds N events but checkpoint at size M was signed` |
//! | a body that is not an event | `event N: body is not a valid event: ..` |
//! | a forged, edited or unsigned checkpoint | `checkpoint at size M: ..` |
//!
//! Once the tree stops following the signed one (a root fails, or an event is missing),
//! the roots of later checkpoints cannot be compared: they are counted in
//! [`VerifyReport::checkpoints_skipped`] rather than reported again, and the events read
//! after it in [`VerifyReport::events_unchecked`]: a later edit among them shows no
//! problem of its own until the first one is fixed. Per-event checks (a body against its
//! own recorded hash, its shape, the `seq` order) go on to the end.

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use std::fmt;

use super::checkpoint::Verifier;
use super::event::{Stage, StoredCheckpoint, StoredEvent};
use super::tree::{Frontier, Hash, leaf_hash};

/// The most problems a report lists; past it they are counted, so memory stays bounded.
pub const MAX_PROBLEMS: usize = 1000;

/// Where in the log a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// One event, by `seq`.
    Event(u64),
    /// The events with `seq` in `from..to` (half-open).
    Events {
        /// First `seq` of the range.
        from: u64,
        /// One past the last `seq` of the range.
        to: u64,
    },
    /// The checkpoint with this tree size.
    Checkpoint(u64),
    /// The log as a whole.
    Log,
}

/// One thing wrong with the log: where, and a message for the person reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where it is.
    pub location: Location,
    /// What is wrong, one lowercase line that names the location too.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What verifying a whole log found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// How many stored events were read (repeats included).
    pub events: u64,
    /// How many signed checkpoints had their root compared with the log's.
    pub checkpoints_checked: usize,
    /// How many signed checkpoints could not be compared: the tree already differed, or the log ends before them.
    pub checkpoints_skipped: usize,
    /// How many events were read after the tree stopped following the signed one: their place under a checkpoint was not checked.
    pub events_unchecked: u64,
    /// Everything wrong, in the order found; empty when the log is intact.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A signed checkpoint whose signature has been checked: the size and root it commits to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Signed {
    size: u64,
    root: Hash,
}

/// Checks a log streamed in `seq` order against its signed checkpoints.
#[derive(Debug)]
pub struct LogVerifier {
    // INVARIANT: `checkpoints` hold only validly signed ones, sorted by size; those
    // before `next` have been compared or skipped.
    checkpoints: Vec<Signed>,
    next: usize,
    frontier: Frontier,
    /// One past the highest `seq` read: the log's length as far as read.
    next_seq: u64,
    last_seq: Option<u64>,
    events: u64,
    /// The size of the last checkpoint whose root matched (0 before any).
    last_good: u64,
    /// The tree no longer follows the signed one; roots are no longer compared.
    broken: bool,
    unchecked: u64,
    checked: usize,
    skipped: usize,
    problems: Vec<Problem>,
    omitted: u64,
}

impl LogVerifier {
    /// A verifier for the log named `origin` whose checkpoints are signed by `verifier`.
    ///
    /// Checks every checkpoint's signature now: a bad one is reported at its size and
    /// takes no part in root checks. The stored `tree_size` and `root` columns must agree
    /// with the signed note, and every checkpoint must name `origin`: one signed with the
    /// right key for another log is reported at its size and takes no part either.
    pub fn new(verifier: &Verifier, origin: &str, checkpoints: &[StoredCheckpoint]) -> Self {
        let mut this = Self {
            checkpoints: Vec::with_capacity(checkpoints.len()),
            next: 0,
            frontier: Frontier::new(),
            next_seq: 0,
            last_seq: None,
            events: 0,
            last_good: 0,
            broken: false,
            unchecked: 0,
            checked: 0,
            skipped: 0,
            problems: Vec::new(),
            omitted: 0,
        };
        let mut sorted: Vec<&StoredCheckpoint> = checkpoints.iter().collect();
        sorted.sort_by_key(|c| c.tree_size);
        for stored in sorted {
            let at = stored.tree_size;
            let signed = match verifier.verify(&stored.note) {
                Ok(signed) => signed,
                Err(e) => {
                    this.report(
                        Location::Checkpoint(at),
                        format!("checkpoint at size {at}: {e}"),
                    );
                    continue;
                }
            };
            if signed.size != stored.tree_size || signed.root != stored.root {
                this.report(
                    Location::Checkpoint(at),
                    format!(
                        "checkpoint at size {at}: the stored size or root differs from the signed note (size {})",
                        signed.size
                    ),
                );
            }
            // the signature holds, but it commits to another log's state
            if signed.origin != origin {
                this.report(
                    Location::Checkpoint(at),
                    format!(
                        "checkpoint at size {at}: origin `{}` differs from the log's origin `{origin}`",
                        signed.origin
                    ),
                );
                continue;
            }
            this.checkpoints.push(Signed {
                size: signed.size,
                root: signed.root,
            });
        }
        this.checkpoints.sort_by_key(|c| c.size);
        this.checkpoints.dedup();
        let forks: Vec<u64> = this
            .checkpoints
            .windows(2)
            .filter_map(|pair| match pair {
                [a, b] if a.size == b.size => Some(a.size),
                _ => None,
            })
            .collect();
        for size in forks {
            this.report(
                Location::Checkpoint(size),
                format!("two checkpoints are signed at size {size} with different roots"),
            );
        }
        this.check_due();
        this
    }

    /// Reads the next event; events must come in `seq` order, starting from 0.
    pub fn push(&mut self, event: &StoredEvent) {
        self.events += 1;
        let seq = event.seq;
        if seq < self.next_seq {
            let message = if self.last_seq == Some(seq) {
                format!("event {seq} appears twice")
            } else {
                format!("event {seq} is out of order")
            };
            self.report(Location::Event(seq), message);
            return;
        }
        if seq > self.next_seq {
            let from = self.next_seq;
            if seq == from + 1 {
                self.report(Location::Event(from), format!("event {from} is missing"));
            } else {
                self.report(
                    Location::Events { from, to: seq },
                    format!("events {from}..{seq} are missing"),
                );
            }
            // The leaves after a gap sit at the wrong places: the tree is lost.
            self.broken = true;
            self.next_seq = seq;
            self.check_due();
        }

        if leaf_hash(event.body.as_bytes()) != event.leaf_hash {
            self.report(
                Location::Event(seq),
                format!("event {seq}: body does not match its recorded hash"),
            );
        } else if let Err(e) = serde_json::from_str::<EventShape>(&event.body) {
            self.report(
                Location::Event(seq),
                format!("event {seq}: body is not a valid event: {e}"),
            );
        }

        // The recorded hash goes in the tree, so an edited body alone is found above
        // and does not also fail every later checkpoint.
        if self.broken {
            self.unchecked += 1;
        } else {
            self.frontier.push(event.leaf_hash);
        }
        self.last_seq = Some(seq);
        self.next_seq = seq + 1;
        self.check_due();
    }

    /// How many events have been read so far; poll it to show progress.
    pub fn events_seen(&self) -> u64 {
        self.events
    }

    /// The problems found so far.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Ends the log: reports checkpoints signed past its end, and returns the report.
    pub fn finish(mut self) -> VerifyReport {
        let beyond = self.checkpoints.get(self.next..).unwrap_or_default();
        if let Some(last) = beyond.last() {
            let (held, signed) = (self.next_seq, last.size);
            self.skipped += beyond.len();
            self.report(
                Location::Events {
                    from: held,
                    to: signed,
                },
                format!("log holds {held} events but checkpoint at size {signed} was signed"),
            );
        }
        if self.omitted > 0 {
            self.problems.push(Problem {
                location: Location::Log,
                message: format!("{} more problems not listed", self.omitted),
            });
        }
        VerifyReport {
            events: self.events,
            checkpoints_checked: self.checked,
            checkpoints_skipped: self.skipped,
            events_unchecked: self.unchecked,
            problems: self.problems,
        }
    }

    /// Compares (or skips) every checkpoint whose size the log has now reached.
    fn check_due(&mut self) {
        let reached = self.next_seq;
        while let Some(first) = self.checkpoints.get(self.next).copied()
            && first.size <= reached
        {
            let size = first.size;
            let end = self
                .checkpoints
                .iter()
                .skip(self.next)
                .take_while(|c| c.size == size)
                .count();
            if self.broken {
                self.skipped += end;
                self.next += end;
                continue;
            }
            // INVARIANT: not broken, so the frontier holds exactly `reached` leaves, and
            // checkpoints are checked as each size is reached, so `size == reached`.
            let root = self.frontier.root();
            let group = self
                .checkpoints
                .get(self.next..self.next + end)
                .unwrap_or_default();
            let matched = group.iter().any(|c| c.root == root);
            self.checked += end;
            self.next += end;
            if matched {
                self.last_good = size;
            } else {
                let from = self.last_good;
                let between = if from == 0 && !self.checkpoints.iter().any(|c| c.size == 0) {
                    format!("up to the checkpoint at size {size}")
                } else {
                    format!("between checkpoints at sizes {from} and {size}")
                };
                self.report(
                    Location::Events { from, to: size },
                    format!(
                        "events {from}..{size} ({between}): root does not match the signed checkpoint"
                    ),
                );
                self.broken = true;
            }
        }
    }

    fn report(&mut self, location: Location, message: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem { location, message });
        } else {
            self.omitted += 1;
        }
    }
}

/// The shape of an event, checked without building one: no allocation per event.
///
/// Accepts exactly what deserializing an `Event` accepts.
#[derive(Deserialize)]
struct EventShape {
    #[serde(rename = "time")]
    _time: Text,
    #[serde(rename = "stage")]
    _stage: Stage,
    #[serde(rename = "call")]
    _call: Option<Text>,
    #[serde(rename = "run")]
    _run: Option<Text>,
    #[serde(rename = "agent")]
    _agent: Option<Text>,
    #[serde(rename = "action")]
    _action: Option<Text>,
    #[serde(rename = "register")]
    _register: Option<Text>,
    #[serde(rename = "detail", default)]
    _detail: IgnoredAny,
}

/// A JSON string, checked and dropped.
struct Text;

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Text, E> {
                Ok(Text)
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

#[cfg(test)]
mod tests;
