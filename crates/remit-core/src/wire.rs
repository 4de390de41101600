//! Checks on raw request bytes that serde would otherwise let through: duplicate keys, depth.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;

/// Deepest nesting accepted in a request body.
pub const MAX_DEPTH: usize = 64;

/// Fails when a JSON document repeats a key in any object, nests too deep, or is not JSON.
///
/// serde_json keeps the last of two equal keys; a gateway that checked the first and
/// forwarded the last would be fooled, so such bodies are refused before anything else.
pub fn check_strict_json(bytes: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Strict { depth: 0 }
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

#[derive(Clone, Copy)]
struct Strict {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Strict {
    fn deeper<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(Self {
            depth: self.depth + 1,
        })
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(duplicate(&key)));
            }
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// Reads a JSON value as serde_json does, refusing what [`check_strict_json`] refuses.
///
/// For a value nested `depth` levels into a document (the document itself is at 0), so
/// that a field read this way inside a typed request is held to the same limits as the
/// whole body.
#[derive(Clone, Copy, Debug)]
pub struct StrictValue {
    depth: usize,
}

impl StrictValue {
    /// A reader for a value `depth` levels into its document.
    pub fn at(depth: usize) -> Self {
        Self { depth }
    }

    fn deeper<E: de::Error>(self) -> Result<Self, E> {
        Strict { depth: self.depth }
            .deeper()
            .map(|s| Self { depth: s.depth })
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.deeper()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.deeper()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(duplicate(&key)));
            }
            let value = map.next_value_seed(inner)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

fn duplicate(key: &str) -> String {
    let shown: String = key.chars().take(64).flat_map(char::escape_debug).collect();
    format!("duplicate key `{shown}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicate_json_keys_at_any_depth() {
        let e = check_strict_json(br#"{"a":1,"a":2}"#).unwrap_err();
        assert!(e.contains("duplicate key `a`"), "{e}");
        let e = check_strict_json(br#"{"params":{"arguments":{"amount":1,"amount":900}}}"#)
            .unwrap_err();
        assert!(e.contains("duplicate key `amount`"), "{e}");
    }

    fn strict_value(bytes: &[u8]) -> Result<Value, String> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let v = StrictValue::at(0)
            .deserialize(&mut de)
            .map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        Ok(v)
    }

    #[test]
    fn a_strict_value_refuses_what_the_check_refuses_and_reads_the_rest_as_serde_json_does() {
        let cases: [&[u8]; 8] = [
            br#"{"a":1,"a":2}"#,
            br#"{"params":{"arguments":{"amount":1,"amount":900}}}"#,
            br#"[{"x":[1,2.5,-3,1e400]},{"y":null,"z":true,"w":"\u00e9\n"}]"#,
            br#"{"n":18446744073709551615,"m":-9223372036854775808,"f":0.1}"#,
            b"{} x",
            b"{\"a\":",
            br#""just a string""#,
            b"[]",
        ];
        for bytes in cases {
            let checked = check_strict_json(bytes);
            let read = strict_value(bytes);
            assert_eq!(
                checked.is_ok(),
                read.is_ok(),
                "{}",
                String::from_utf8_lossy(bytes)
            );
            if let (Err(a), Err(b)) = (&checked, &read) {
                assert_eq!(a, b);
            }
            if let Ok(v) = read {
                assert_eq!(v, serde_json::from_slice::<Value>(bytes).unwrap());
            }
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(
            strict_value(deep.as_bytes())
                .unwrap_err()
                .contains("nesting")
        );
        let limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(check_strict_json(limit.as_bytes()).is_ok());
        assert!(strict_value(limit.as_bytes()).is_ok());
        let over = format!("[{limit}]");
        assert!(check_strict_json(over.as_bytes()).is_err());
        assert!(strict_value(over.as_bytes()).is_err());
    }

    #[test]
    fn accepts_ordinary_json() {
        check_strict_json(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"a":[{"a":1},{"a":2}]}}"#,
        )
        .unwrap();
    }

    #[test]
    fn rejects_deep_nesting_and_trailing_garbage() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(
            check_strict_json(deep.as_bytes())
                .unwrap_err()
                .contains("nesting")
        );
        assert!(check_strict_json(b"{} x").is_err());
        assert!(check_strict_json(b"{\"a\":").is_err());
    }
}
