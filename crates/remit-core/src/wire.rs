//! Checks on raw request bytes that serde would otherwise let through: duplicate keys, depth.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
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
                let shown: String = key.chars().take(64).flat_map(char::escape_debug).collect();
                return Err(de::Error::custom(format!("duplicate key `{shown}`")));
            }
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
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
