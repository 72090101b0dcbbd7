//! Canonical document bytes, produced in one streaming pass (RES-3: no
//! `serde_json::Value` tree is built for a document).
//!
//! The canonical form is exactly what `serde_json::to_vec(&Value)` writes
//! for the parsed document (compact, object keys sorted by bytes, the last
//! of duplicate keys kept, numbers as serde_json prints them), so WAL bytes
//! are unchanged from earlier versions, except that numbers now parse to
//! the nearest f64 (serde_json's `float_roundtrip`; before, some long
//! decimals landed one f64 off): the canonical form of canonical bytes is
//! the same bytes, so a document read and written back never drifts.
//!
//! The transcoder writes scalars and arrays straight to the output and
//! buffers only each object's members to sort them: memory stays within a
//! small multiple of the document size.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Canonical bytes of one JSON text (surrounding whitespace allowed).
pub fn canonical_json(text: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let mut out = Vec::with_capacity(text.len());
    Canon(&mut out).deserialize(&mut de)?;
    de.end()?;
    Ok(out)
}

/// Writes the canonical form of one value into the vector.
struct Canon<'a>(&'a mut Vec<u8>);

impl Canon<'_> {
    fn scalar<T: serde::Serialize + ?Sized, E: serde::de::Error>(self, v: &T) -> Result<(), E> {
        serde_json::to_writer(&mut *self.0, v).map_err(E::custom)
    }
}

impl<'de> DeserializeSeed<'de> for Canon<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Canon<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.0.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(&v)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(&v)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        // Like `Value`: a non-finite number becomes null.
        if v.is_finite() {
            self.scalar(&v)
        } else {
            self.visit_unit()
        }
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(v)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        Canon(self.0).deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.0;
        out.push(b'[');
        let mut first = true;
        loop {
            let mark = out.len();
            if !first {
                out.push(b',');
            }
            if seq.next_element_seed(Canon(&mut *out))?.is_none() {
                out.truncate(mark);
                break;
            }
            first = false;
        }
        out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Members are sorted by key; a repeated key keeps its last value.
        let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let mut value = Vec::new();
            map.next_value_seed(Canon(&mut value))?;
            members.insert(key, value);
        }
        let out = self.0;
        out.push(b'{');
        for (i, (key, value)) in members.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut *out, &key).map_err(serde::de::Error::custom)?;
            out.push(b':');
            out.extend_from_slice(&value);
        }
        out.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn via_value(text: &[u8]) -> Result<Vec<u8>, ()> {
        let v: Value = serde_json::from_slice(text).map_err(|_| ())?;
        serde_json::to_vec(&v).map_err(|_| ())
    }

    /// CORE-4 / REPL-4 (same bytes for the same document on every path) and
    /// RES-3 (no value tree): the streaming canonical form equals
    /// serde_json's `Value` round trip on hand-picked edge cases.
    #[test]
    fn res_3_canonical_json_matches_the_value_round_trip() {
        for text in [
            r#"{"b":1,"a":[1,2,{"d":null,"c":true}],"a":"dup"}"#,
            r#"  [1.0, -0, -0.0, 1e2, 1E-7, 18446744073709551615, -9223372036854775808, 0.1]  "#,
            r#""\u0041\n\u00e9\ud83d\ude00\"\\/""#,
            r#"{"é":1,"e":2,"z":{},"y":[]}"#,
            "null",
            "true",
            "12345678901234567890123",
            "[[[[[]]]]]",
        ] {
            assert_eq!(canonical_json(text.as_bytes()).map_err(|_| ()), via_value(text.as_bytes()), "{text}");
        }
        for bad in ["", "{", "[1,]", "{\"a\":1} x", "1e400", "\"\\ud800\"", "nul"] {
            assert_eq!(canonical_json(bad.as_bytes()).is_ok(), via_value(bad.as_bytes()).is_ok(), "{bad}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(canonical_json(deep.as_bytes()).is_ok(), via_value(deep.as_bytes()).is_ok(), "recursion limit is the same");
    }

    /// RES-3 / CORE-4, regression of a `client_commit` fuzz crash: a long
    /// decimal (`9.98888888888888888888888888889`) became
    /// `9.988888888888889`, which became `9.988888888888887` when stored
    /// again: serde_json's default float parsing is not correctly rounded,
    /// so a document drifted each time it was read and written back. With
    /// `float_roundtrip` every number parses to the nearest f64 (as the
    /// standard library's parser does) and the canonical form is a fixed
    /// point.
    #[test]
    fn res_3_canonical_json_numbers_are_exact_and_idempotent() {
        for number in [
            "9.98888888888888888888888888889",
            "9.988888888888889",
            "9.988888888888887",
            "0.30000000000000004",
            "2.2250738585072011e-308",
            "1.7976931348623157e308",
            "123456789.123456789123456789",
            "-0.000000000000000000000000000001234567890123456789",
        ] {
            let once = canonical_json(number.as_bytes()).unwrap();
            assert_eq!(canonical_json(&once).unwrap(), once, "{number}: the canonical form is a fixed point");
            let parsed: f64 = std::str::from_utf8(&once).unwrap().parse().unwrap();
            assert_eq!(parsed.to_bits(), number.parse::<f64>().unwrap().to_bits(), "{number}: the nearest f64");
            let doc = format!(r#"{{"items":[225,6],"total":{number}}}"#);
            let once = canonical_json(doc.as_bytes()).unwrap();
            assert_eq!(canonical_json(&once).unwrap(), once, "{doc}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((".{0,4}", inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// RES-3 / CORE-4: for any JSON text (pretty or compact, any value)
        /// the streaming canonical form equals the `Value` round trip, and
        /// arbitrary bytes are accepted or refused alike.
        #[test]
        fn res_3_canonical_json_equals_value_round_trip_for_any_input(v in json_value(), bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let pretty = serde_json::to_vec_pretty(&v).unwrap();
            prop_assert_eq!(canonical_json(&pretty).map_err(|_| ()), via_value(&pretty));
            prop_assert_eq!(canonical_json(&bytes).map_err(|_| ()), via_value(&bytes));
        }
    }
}
