//! One audit event: a stage of a call (or of the gateway) as it is written to the log.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// The stage a call (or the gateway) reached; past-tense verbs in the brief's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// An agent asked for an action.
    Proposed,
    /// The register allowed the call; it goes to the upstream.
    Decided,
    /// The call was refused; nothing was executed.
    Refused,
    /// The upstream ran the call; the result (or tool error) is recorded.
    Executed,
    /// The upstream could not be reached or failed; whether it ran is unknown or no.
    Failed,
    /// An agent or action was frozen by the kill switch.
    Frozen,
    /// An agent or action was unfrozen.
    Unfrozen,
    /// The gateway started with a register version.
    Started,
}

impl Stage {
    /// The stage as written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proposed => "proposed",
            Self::Decided => "decided",
            Self::Refused => "refused",
            Self::Executed => "executed",
            Self::Failed => "failed",
            Self::Frozen => "frozen",
            Self::Unfrozen => "unfrozen",
            Self::Started => "started",
        }
    }
}

/// An audit event before it has a place in the log.
///
/// Its text fields are shared (`Arc<str>`): a call's events name the same call, agent,
/// action and register, and often the same millisecond, without a copy each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened, RFC 3339 UTC with milliseconds.
    pub time: Arc<str>,
    /// What happened.
    pub stage: Stage,
    /// The call it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<Arc<str>>,
    /// The run or session of the agent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Arc<str>>,
    /// The agent, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Arc<str>>,
    /// The action (namespaced tool), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Arc<str>>,
    /// The register version in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register: Option<Arc<str>>,
    /// Stage-specific facts: redacted arguments, the agent's reason, the decision, the result.
    #[serde(default, skip_serializing_if = "Detail::is_null")]
    pub detail: Detail,
}

/// An event's stage-specific facts: a JSON value, or an object already written canonically.
///
/// The pipeline writes its own events' details straight from their parts ([`DetailWriter`]),
/// so a call's arguments and result are not copied into maps to be written once and dropped.
/// Both forms give the same bytes in [`Event::canonical`].
#[derive(Clone, Debug, PartialEq)]
pub enum Detail {
    /// A JSON value (`null`: no detail).
    Value(Value),
    /// A JSON object's canonical bytes, as [`DetailWriter`] writes them.
    Written(Vec<u8>),
}

impl Default for Detail {
    fn default() -> Self {
        Self::Value(Value::Null)
    }
}

impl From<Value> for Detail {
    fn from(value: Value) -> Self {
        Self::Value(value)
    }
}

impl Detail {
    /// Whether there is no detail.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Value(Value::Null))
    }

    /// The detail as a JSON value (a written one is read back).
    pub fn to_value(&self) -> Value {
        match self {
            Self::Value(v) => v.clone(),
            Self::Written(bytes) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
        }
    }
}

impl Serialize for Detail {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Value(v) => v.serialize(s),
            Self::Written(_) => self.to_value().serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Detail {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Self::Value)
    }
}

/// Writes a detail object field by field, in the canonical order its caller gives.
///
/// Fields must come in code-point order of their names, as [`write_canonical_json`] sorts
/// them (checked in debug builds); each value is written as that function writes it.
#[derive(Debug)]
pub struct DetailWriter {
    out: Vec<u8>,
    last: Option<&'static str>,
}

impl Default for DetailWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl DetailWriter {
    /// An empty object.
    pub fn new() -> Self {
        let mut out = Vec::with_capacity(192);
        out.push(b'{');
        Self { out, last: None }
    }

    fn key(&mut self, name: &'static str) {
        debug_assert!(
            self.last.is_none_or(|last| last < name),
            "detail fields out of order: {:?} then {name:?}",
            self.last
        );
        if self.last.is_some() {
            self.out.push(b',');
        }
        self.last = Some(name);
        write_str(&mut self.out, name);
        self.out.push(b':');
    }

    /// A JSON value.
    pub fn value(&mut self, name: &'static str, value: &Value) {
        self.key(name);
        write_canonical(value, &mut self.out);
    }

    /// A JSON object.
    pub fn object(&mut self, name: &'static str, map: &serde_json::Map<String, Value>) {
        self.key(name);
        write_object(map, &mut self.out);
    }

    /// A string.
    pub fn text(&mut self, name: &'static str, text: &str) {
        self.key(name);
        write_str(&mut self.out, text);
    }

    /// A boolean.
    pub fn flag(&mut self, name: &'static str, flag: bool) {
        self.key(name);
        self.out
            .extend_from_slice(if flag { b"true" } else { b"false" });
    }

    /// The object written.
    pub fn finish(mut self) -> Detail {
        self.out.push(b'}');
        Detail::Written(self.out)
    }
}

impl Event {
    /// The canonical bytes of the event: JSON with sorted keys and no insignificant space.
    ///
    /// These bytes are the Merkle leaf; they are what the store keeps, byte for byte.
    pub fn canonical(&self) -> Vec<u8> {
        // the fields in code-point order, written straight out: this runs three times per call
        // a call's events are 300-500 bytes: most fit without growing
        let mut out = Vec::with_capacity(512);
        out.push(b'{');
        let mut first = true;
        // the names are this struct's own, with nothing to escape
        let mut key = |out: &mut Vec<u8>, name: &str| {
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
        };
        let text = [
            ("action", self.action.as_deref()),
            ("agent", self.agent.as_deref()),
            ("call", self.call.as_deref()),
        ];
        for (name, value) in text {
            if let Some(v) = value {
                key(&mut out, name);
                write_str(&mut out, v);
            }
        }
        match &self.detail {
            Detail::Value(Value::Null) => {}
            Detail::Value(detail) => {
                key(&mut out, "detail");
                write_canonical(detail, &mut out);
            }
            Detail::Written(bytes) => {
                key(&mut out, "detail");
                out.extend_from_slice(bytes);
            }
        }
        let text = [
            ("register", self.register.as_deref()),
            ("run", self.run.as_deref()),
            ("stage", Some(self.stage.as_str())),
            ("time", Some(&*self.time)),
        ];
        for (name, value) in text {
            if let Some(v) = value {
                key(&mut out, name);
                write_str(&mut out, v);
            }
        }
        out.push(b'}');
        out
    }
}

/// Appends a JSON value to `out` with object keys sorted by code point and no whitespace.
///
/// For a `Value` these are the bytes `serde_json::to_vec` writes (its maps keep their keys
/// sorted), written faster.
pub fn write_canonical_json(value: &Value, out: &mut Vec<u8>) {
    write_canonical(value, out);
}

/// Appends a JSON object to `out` as [`write_canonical_json`] writes it.
pub fn write_canonical_object(map: &serde_json::Map<String, Value>, out: &mut Vec<u8>) {
    write_object(map, out);
}

/// Appends `text` to `out` as a JSON string, escaped as serde_json escapes it.
pub fn write_json_string(text: &str, out: &mut Vec<u8>) {
    write_str(out, text);
}

/// Writes a JSON value with object keys sorted by code point and no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// A JSON string, escaped byte for byte as serde_json escapes it.
///
/// Every call writes about sixty strings of its events through here, most of them short
/// and with nothing to escape: those are checked eight bytes at a time and copied whole,
/// where serde_json looks each byte up in a table.
fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if needs_no_escape(bytes) {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        write_escaped(out, bytes);
    }
}

/// [`write_str`] for a string with something to escape: the rare case, kept out of its way.
#[cold]
#[inline(never)]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 8);
    out.push(b'"');
    // `bytes[start..i]` needs no escape and is not written yet
    let mut start = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if let Some(escaped) = escape(*byte) {
            out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
            out.extend_from_slice(escaped.as_bytes());
            start = i + 1;
        }
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

/// Whether no byte of `bytes` is escaped in a JSON string.
fn needs_no_escape(bytes: &[u8]) -> bool {
    let word = |w: &[u8]| <[u8; 8]>::try_from(w).map_or(u64::MAX, u64::from_le_bytes);
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    let tail_clear = if tail.is_empty() {
        true
    } else if let Some(last) = bytes.len().checked_sub(8).and_then(|at| bytes.get(at..)) {
        // the last eight bytes, overlapping the last whole word: no byte-by-byte tail
        !may_need_escape(word(last))
    } else {
        tail.iter().all(|b| escape(*b).is_none())
    };
    tail_clear && words.map(word).all(|w| !may_need_escape(w))
}

/// Whether any of the eight bytes in `word` may be a control character, a quote or a backslash.
///
/// Never false when one is (a true answer may be wrong: each byte is then checked).
fn may_need_escape(word: u64) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS != 0;
    // a byte below 0x20: the same trick with 0x20 in place of 1
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
    below_space
        || has_zero(word ^ (ONES * u64::from(b'"')))
        || has_zero(word ^ (ONES * u64::from(b'\\')))
}

/// How serde_json writes `byte` inside a string, if not as itself.
fn escape(byte: u8) -> Option<std::borrow::Cow<'static, str>> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match byte {
        b'"' => "\\\"",
        b'\\' => "\\\\",
        0x08 => "\\b",
        0x09 => "\\t",
        0x0a => "\\n",
        0x0c => "\\f",
        0x0d => "\\r",
        0x00..=0x1f => {
            let hex = |n: u8| char::from(HEX.get(usize::from(n)).copied().unwrap_or(b'0'));
            return Some(format!("\\u00{}{}", hex(byte >> 4), hex(byte & 0xf)).into());
        }
        _ => return None,
    };
    Some(short.into())
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        Value::String(text) => write_str(out, text),
        other => {
            // writing to a Vec cannot fail
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

fn write_object(map: &serde_json::Map<String, Value>, out: &mut Vec<u8>) {
    // serde_json's map is a BTreeMap unless a crate turns on `preserve_order`: then
    // its keys come in code-point order already and need no sorted copy
    if map.keys().is_sorted() {
        write_entries(map.iter(), out);
    } else {
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        write_entries(entries.into_iter(), out);
    }
}

fn write_entries<'v>(entries: impl Iterator<Item = (&'v String, &'v Value)>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_canonical(v, out);
    }
    out.push(b'}');
}

/// An event as the store holds it: its place in the log and its exact bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Zero-based index of the event in the log (its Merkle leaf index); also its public id.
    pub seq: u64,
    /// The canonical JSON bytes written at append time.
    pub body: String,
    /// `SHA-256(0x00 || body)` as recorded at append time (RFC 6962 leaf hash).
    pub leaf_hash: [u8; 32],
}

impl StoredEvent {
    /// Parses the body back into an event.
    pub fn event(&self) -> Result<Event, serde_json::Error> {
        serde_json::from_str(&self.body)
    }
}

/// A signed checkpoint as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Number of events the checkpoint covers.
    pub tree_size: u64,
    /// The Merkle tree head over the first `tree_size` events.
    pub root: [u8; 32],
    /// The full signed note text (C2SP signed-note format).
    pub note: String,
    /// When it was signed, RFC 3339 UTC.
    pub time: String,
}

#[cfg(test)]
mod canonical_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_drops_space() {
        let a = json!({"b": 1, "a": {"d": [1, {"z": 1, "y": 2}], "c": "x"}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":"x","d":[1,{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn an_event_is_written_as_its_serde_form_canonicalised() {
        // the direct writer must give the bytes the serde form gives, or old logs stop verifying
        let full = Event {
            time: "2026-11-25T21:00:00.000Z".into(),
            stage: Stage::Executed,
            call: Some("call_1".into()),
            run: Some("run \"quoted\" \u{1}".into()),
            agent: Some("support-bot".into()),
            action: Some("billing.issue_refund".into()),
            register: Some("sha256:ab".into()),
            detail: json!({"z": [1, 2.5, -3, {"b": null, "a": "é\n"}], "a": true, "é": 1e30})
                .into(),
        };
        let bare = Event {
            time: "t".into(),
            stage: Stage::Started,
            call: None,
            run: None,
            agent: None,
            action: None,
            register: None,
            detail: Value::Null.into(),
        };
        for e in [full, bare] {
            let via_serde = canonical_json(&serde_json::to_value(&e).unwrap());
            assert_eq!(String::from_utf8(e.canonical()).unwrap(), via_serde);
        }
    }

    #[test]
    fn a_written_detail_is_the_canonical_form_of_its_value() {
        let args: serde_json::Map<String, Value> =
            serde_json::from_value(json!({"z": "é\n\"", "a": [1, -2.5, null, {"y": 1, "b": 2}]}))
                .unwrap();
        let result = json!({"content": [{"type": "text", "text": "\u{1}ok"}], "isError": false});
        let mut d = DetailWriter::new();
        d.object("args", &args);
        d.text("entry", "mcp\t");
        d.flag("is_error", true);
        d.flag("r", false);
        d.value("result", &result);
        let written = d.finish();
        let value = json!({
            "args": args, "entry": "mcp\t", "is_error": true, "r": false, "result": result
        });
        let Detail::Written(bytes) = &written else {
            panic!("a writer gives written bytes");
        };
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            canonical_json(&value)
        );
        assert_eq!(written.to_value(), value);
        assert_eq!(DetailWriter::new().finish().to_value(), json!({}));
        // an event holding either form is written the same, and serialised the same
        let event = |detail: Detail| Event {
            time: "2026-11-25T21:00:00.000Z".into(),
            stage: Stage::Proposed,
            call: Some("call_1".into()),
            run: None,
            agent: Some("support-bot".into()),
            action: Some("billing.issue_refund".into()),
            register: Some("sha256:ab".into()),
            detail,
        };
        let (a, b) = (event(written), event(value.into()));
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::to_value(&b).unwrap()
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "out of order")]
    fn a_detail_written_out_of_order_is_a_bug_caught_in_tests() {
        let mut d = DetailWriter::new();
        d.text("tool", "x");
        d.text("args", "y");
    }

    #[test]
    fn canonical_bytes_do_not_depend_on_key_order() {
        let one: Value = serde_json::from_str(r#"{"x": 1, "y": {"q": true, "p": null}}"#).unwrap();
        let two: Value = serde_json::from_str(r#"{"y": {"p": null, "q": true}, "x": 1}"#).unwrap();
        assert_eq!(canonical_json(&one), canonical_json(&two));
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let ours = |text: &str| {
            let mut out = Vec::new();
            write_str(&mut out, text);
            String::from_utf8(out).unwrap()
        };
        let theirs = |text: &str| serde_json::to_string(text).unwrap();
        // every ASCII byte and some wider characters, at every offset within and across
        // the eight-byte words the fast path reads
        let mut specials: Vec<char> = (0u8..=0x7f).map(char::from).collect();
        specials.extend(['é', '€', '\u{2028}', '\u{10ffff}', '\u{fffd}']);
        for c in &specials {
            for before in 0..18 {
                for after in [0, 1, 7, 8, 9] {
                    let text = format!("{}{c}{}", "a".repeat(before), "b".repeat(after));
                    assert_eq!(ours(&text), theirs(&text), "{text:?}");
                }
            }
        }
        // runs of specials, and pseudo-random strings from the same alphabet
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for len in 0..200 {
            let text: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    specials[usize::try_from(seed % specials.len() as u64).unwrap()]
                })
                .collect();
            assert_eq!(ours(&text), theirs(&text), "{text:?}");
        }
        assert_eq!(ours(""), "\"\"");
        assert_eq!(ours("\"\\\u{1}\n"), r#""\"\\\u0001\n""#);
    }

    #[test]
    fn string_values_inside_the_detail_are_escaped_as_serde_json_does() {
        let value = json!({ "k\"ey": ["line\none", "tab\tand \u{7f} and \u{0}", { "q": "\\" }] });
        let canonical = canonical_json(&value);
        assert_eq!(canonical, serde_json::to_string(&value).unwrap());
        let back: Value = serde_json::from_str(&canonical).unwrap();
        assert_eq!(back, value);
    }
}
