//! An OTLP/JSON logs request (`ExportLogsServiceRequest`) as OTLP protobuf, read as a stream: the store then runs
//! one pipeline for both encodings (the limits' scan with the tenant, the native encoder, the Python decoder
//! in slices). The document is never built: serde_json's streaming visitors walk request -> resourceLogs ->
//! scopeLogs -> logRecords and encode each LogRecord as soon as it is read; a ResourceLogs or ScopeLogs is
//! assembled when its object closes (JSON key order is free: `resource` may follow `scopeLogs`), so what is
//! held is the protobuf of what was read (smaller than the JSON) and one record's fields. orjson parsing the
//! whole body and decode_json's Python rows peaked at 21.6x the body.
//!
//! The semantics are auditrail_store.ingest.decode_json's (the reference, and the fallback without this core):
//! camelCase or snake_case names (the camelCase one unless it is null), the last of duplicate keys, int64s as
//! numbers, integral floats or strings (strings other than plain digits go to Python's `int`, as there),
//! severity names, hex ids, base64 bytes (Python's `b64decode(validate=True)` for what is not canonical), the
//! AnyValue kinds in decode_json's order of precedence, nulls as absent, orjson's document rules (depth 1024,
//! no lone surrogates, UTF-8, nothing after the value). A record's size, against `max_record_bytes`, is its
//! compact JSON text as orjson writes it; records are counted as they are read, so the first record over a
//! limit stops the reading. Errors carry decode_json's messages (with the record's JSON path). Refusals are
//! found in document order, decode_json's in its own: a request with two faults may be refused for another one.
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::varint_to;

/// orjson's nesting limit: deeper documents are malformed JSON to decode_json.
const MAX_DEPTH: usize = 1024;

/// Why a request is refused.
pub(crate) enum Fault {
    Invalid(String),
    Records,
    RecordBytes { index: usize, size: usize },
}

struct Ctx {
    max_records: usize,
    max_record_bytes: usize,
    /// decode_json measures records only in bodies larger than the per-record limit
    measure: bool,
    records: usize,
}

fn field(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    out.push(tag);
    varint_to(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// A map key, borrowed unless it holds escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON value as far as a scalar field reads it.
enum Scalar<'de> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'de, str>),
    Other,
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::U64(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::I64(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::F64(v))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A deserializer over a value already read (and so valid), without serde_json's depth limit (the prescan
/// bounds the depth).
fn reread<'de, T>(raw: &'de RawValue, seed: impl DeserializeSeed<'de, Value = T>) -> Option<T> {
    let mut d = serde_json::Deserializer::from_str(raw.get());
    d.disable_recursion_limit();
    seed.deserialize(&mut d).ok()
}

fn scalar(raw: Option<&RawValue>) -> Scalar<'_> {
    raw.and_then(|raw| reread(raw, std::marker::PhantomData::<Scalar>)).unwrap_or(Scalar::Null)
}

fn is_null(raw: Option<&RawValue>) -> bool {
    raw.is_none_or(|raw| raw.get() == "null")
}

/// decode_json's `_get(obj, camel, snake)`: the camelCase value unless it is null.
fn pick<'a>(camel: Option<&'a RawValue>, snake: Option<&'a RawValue>) -> Option<&'a RawValue> {
    if is_null(camel) { snake } else { camel }
}

// ------------------------------------------------------------------------------------------------
// Scalars as decode_json reads them (_json_string, _json_uint, _json_int64, _json_double, _json_id, ...)

fn string<'a>(value: &'a Scalar<'a>) -> Result<&'a str, String> {
    match value {
        Scalar::Null => Ok(""),
        Scalar::Str(s) => Ok(s),
        _ => Err("expected a string".into()),
    }
}

/// Python's `int(text)`: Ok(the value), Err(None) where it raises, Err(Some(digits)) beyond i128.
fn python_int(text: &str) -> Result<i128, Option<String>> {
    let plain = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !plain.is_empty() && plain.len() < 38 && plain.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i128>().map_err(|_| None);
    }
    // whitespace, underscores, other scripts' digits: Python's own rules, exactly
    Python::attach(|py| {
        let number = py.import("builtins").and_then(|b| b.getattr("int")).and_then(|int| int.call1((text,)));
        let digits = number.and_then(|n| n.str()).map(|s| s.to_string()).map_err(|_| None)?;
        digits.parse::<i128>().map_err(|_| Some(digits))
    })
}

/// Why a value is not the integer decode_json takes: not one (the message), or beyond i128 (its digits).
enum NotInt {
    Invalid(String),
    Big(String),
}

/// The integer decode_json takes from a JSON number or string (`_json_uint` / `_json_int64` before the range).
fn integer(value: &Scalar) -> Result<i128, NotInt> {
    match value {
        Scalar::U64(v) => Ok(*v as i128),
        Scalar::I64(v) => Ok(*v as i128),
        Scalar::F64(v) if v.fract() == 0.0 => {
            if v.abs() < 1e38 { Ok(*v as i128) } else { Err(NotInt::Big(format!("{v:.0}"))) }
        }
        Scalar::Str(s) => python_int(s).map_err(|big| match big {
            Some(digits) => NotInt::Big(digits),
            None => NotInt::Invalid(format!("expected an integer, got '{s}'")),
        }),
        _ => Err(NotInt::Invalid("expected an integer".into())),
    }
}

fn uint(value: &Scalar, bits: u32) -> Result<u64, String> {
    if matches!(value, Scalar::Null) {
        return Ok(0);
    }
    let number = integer(value).map_err(|e| match e {
        NotInt::Invalid(message) => message,
        NotInt::Big(digits) => format!("{digits} out of range"),
    })?;
    if number < 0 || number >= 1i128 << bits {
        return Err(format!("{number} out of range"));
    }
    Ok(number as u64)
}

fn int64(value: &Scalar) -> Result<i64, String> {
    let number = integer(value).map_err(|e| match e {
        NotInt::Invalid(message) => message,
        NotInt::Big(digits) => format!("{digits} out of int64 range"),
    })?;
    i64::try_from(number).map_err(|_| format!("{number} out of int64 range"))
}

const SEVERITIES: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

fn severity_name(name: &str) -> Option<u8> {
    let rest = name.strip_prefix("SEVERITY_NUMBER_")?;
    if rest == "UNSPECIFIED" {
        return Some(0);
    }
    SEVERITIES.iter().enumerate().find_map(|(i, base)| {
        let step = match rest.strip_prefix(base)? {
            "" => 0,
            "2" => 1,
            "3" => 2,
            "4" => 3,
            _ => return None,
        };
        Some(i as u8 * 4 + 1 + step)
    })
}

/// `_severity_number`: names, or an int32 (its low byte, what the row keeps).
fn severity(value: &Scalar) -> Result<u8, String> {
    if let Scalar::Null = value {
        return Ok(0);
    }
    if let Scalar::Str(s) = value {
        let digits = if s.is_ascii() {
            let rest = s.trim_start_matches('-');
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
        } else {
            Python::attach(|py| {
                PyString::new(py, s).call_method1("lstrip", ("-",)).and_then(|r| r.call_method0("isdigit"))
                    .and_then(|r| r.extract::<bool>()).unwrap_or(false)
            })
        };
        if !digits {
            return severity_name(s).ok_or_else(|| format!("unknown severity '{s}'"));
        }
    }
    let number = int64(value)?;
    if !(-(1i64 << 31)..1i64 << 31).contains(&number) {
        return Err("out of int32 range".into());
    }
    Ok(number as u8)
}

fn double(value: &Scalar) -> Result<f64, String> {
    match value {
        Scalar::U64(v) => Ok(*v as f64),
        Scalar::I64(v) => Ok(*v as f64),
        Scalar::F64(v) => Ok(*v),
        Scalar::Str(s) => match s.as_ref() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err("expected a number".into()),
        },
        _ => Err("expected a number".into()),
    }
}

fn hex_id(value: &Scalar, size: usize) -> Result<Vec<u8>, String> {
    let text = string(value)?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if text.chars().count() != size * 2 {
        return Err(format!("expected {} hex digits", size * 2));
    }
    if !text.is_ascii() {
        return Err("not hex".into());
    }
    let digit = |b: u8| (b as char).to_digit(16).ok_or_else(|| "not hex".to_string());
    text.as_bytes().chunks(2).map(|pair| Ok((digit(pair[0])? << 4 | digit(pair[1])?) as u8)).collect()
}

fn base64_bytes(value: &Scalar) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true));
    let text = string(value)?;
    if let Ok(bytes) = LENIENT.decode(text) {
        return Ok(bytes);
    }
    // what is not canonical base64: Python's b64decode(validate=True) decides, as in decode_json
    Python::attach(|py| {
        py.import("base64").and_then(|m| m.getattr("b64decode"))
            .and_then(|f| f.call((text,), Some(&[("validate", true)].into_py_dict(py)?)))
            .and_then(|b| b.extract::<Vec<u8>>())
    }).map_err(|_| "bytesValue is not base64".into())
}

use pyo3::types::IntoPyDict as _;

// ------------------------------------------------------------------------------------------------
// AnyValue and KeyValue: read in one pass, every kind given kept until the object closes (decode_json picks
// by kind, in its order, not by position), errors kept as values: a kind that loses cannot refuse the request.

/// An AnyValue message's bytes (empty: no value, decode_json's None), or why decode_json refuses it.
type Val = Result<Vec<u8>, String>;

const ANY_KEYS: [&str; 14] = ["stringValue", "string_value", "boolValue", "bool_value", "intValue", "int_value",
                              "doubleValue", "double_value", "arrayValue", "array_value", "kvlistValue",
                              "kvlist_value", "bytesValue", "bytes_value"];

/// The deepest message of a value, counted from the request (1): what upb (the Python decoder of the
/// transcoded request) reads, measured: 47 arrays nested in a body, 32 kvlists in an attribute. decode_json took
/// deeper values (up to orjson's depth): they are refused here, naming why, as a protobuf request is.
pub(crate) const MAX_VALUE_DEPTH: u32 = 101;

fn too_deep() -> String {
    format!("arrays and kvlists nested deeper than protobuf reads them ({MAX_VALUE_DEPTH} messages from the \
             request: 47 arrays in a body, 32 kvlists in an attribute)")
}

/// An AnyValue `.0` messages deep.
struct AnySeed(u32);

impl<'de> DeserializeSeed<'de> for AnySeed {
    type Value = Val;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Val, D::Error> {
        if self.0 > MAX_VALUE_DEPTH {
            IgnoredAny::deserialize(d)?;
            return Ok(Err(too_deep()));
        }
        d.deserialize_any(ObjectOr { null: Ok(Vec::new()), inner: AnyFields(self.0) })
    }
}

/// A visitor of an object's entries, for ObjectOr.
trait Fields<'de> {
    type Value;
    fn fields<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error>;
}

/// `_json_object`: null is `{}` (`null` given), anything but an object is "expected an object".
struct ObjectOr<F, T> {
    null: T,
    inner: F,
}

/// A visitor's methods for the JSON types it does not take: the scalars (bool, numbers, string) and, named
/// after them, `seq` or `map` (read through, not kept) all give `$value`; `$s` is `self`, so `$value` may use it.
macro_rules! other_types {
    ($s:ident => $value:expr $(, $container:ident)*) => {
        other_types!(@scalars $s => $value; visit_bool: bool, visit_u64: u64, visit_i64: i64, visit_f64: f64, visit_str: &str);
        $(other_types!(@$container $s => $value);)*
    };
    (@scalars $s:ident => $value:expr; $($name:ident: $t:ty),*) => {$(
        fn $name<E>($s, _: $t) -> Result<Self::Value, E> {
            Ok($value)
        }
    )*};
    (@seq $s:ident => $value:expr) => {
        fn visit_seq<A: SeqAccess<'de>>($s, seq: A) -> Result<Self::Value, A::Error> {
            drain_seq(seq)?;
            Ok($value)
        }
    };
    (@map $s:ident => $value:expr) => {
        fn visit_map<A: MapAccess<'de>>($s, map: A) -> Result<Self::Value, A::Error> {
            drain_map(map)?;
            Ok($value)
        }
    };
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

trait NotObject {
    fn not_object() -> Self;
}

impl<T> NotObject for Result<T, String> {
    fn not_object() -> Self {
        Err("expected an object".into())
    }
}

impl<'de, F: Fields<'de, Value = T>, T: NotObject> Visitor<'de> for ObjectOr<F, T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(self.null)
    }
    other_types!(self => T::not_object(), seq);
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        self.inner.fields(map)
    }
}

struct AnyFields(u32);

impl<'de> Fields<'de> for AnyFields {
    type Value = Val;
    fn fields<A: MapAccess<'de>>(self, mut map: A) -> Result<Val, A::Error> {
        let mut slots: [Option<(bool, Val)>; 14] = Default::default();
        while let Some(Key(key)) = map.next_key()? {
            match ANY_KEYS.iter().position(|k| *k == key) {
                Some(i) => slots[i] = Some(map.next_value_seed(KindSeed(i / 2, self.0))?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        // _json_any_raw: the first kind present (camel or snake) in its order, its camelCase value unless null
        for kind in [0, 1, 2, 3, 4, 5, 6] {
            let (camel, snake) = (slots[2 * kind].take(), slots[2 * kind + 1].take());
            match (camel, snake) {
                (Some((false, value)), _) | (_, Some((_, value))) | (Some((true, value)), None) => return Ok(value),
                (None, None) => {}
            }
        }
        Ok(Ok(Vec::new()))
    }
}

/// One AnyValue kind's value: (was it null, the AnyValue message holding it or why not).
struct KindSeed(usize, u32);

impl<'de> DeserializeSeed<'de> for KindSeed {
    type Value = (bool, Val);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(bool, Val), D::Error> {
        let mut out = Vec::new();
        if (self.0 == 4 || self.0 == 5) && self.1 + 1 > MAX_VALUE_DEPTH {
            IgnoredAny::deserialize(d)?;
            return Ok((false, Err(too_deep())));
        }
        if self.0 == 4 || self.0 == 5 {
            let (null, items) = d.deserialize_any(ObjectOr { null: Ok((true, Ok(Vec::new()))),
                                                             inner: ValuesFields(self.0 == 5, self.1) })?
                .unwrap_or_else(|e| (false, Err(e)));
            return Ok((null, items.map(|items| {
                field(&mut out, if self.0 == 4 { 0x2A } else { 0x32 }, &items);
                out
            })));
        }
        // a double's text: -0 is the integer 0 to decode_json (float(0) is +0.0), the float -0.0 to serde
        let raw = <&RawValue>::deserialize(d)?;
        let value = scalar(Some(raw));
        let null = matches!(value, Scalar::Null);
        let encoded = match self.0 {
            0 => string(&value).map(|s| field(&mut out, 0x0A, s.as_bytes())),
            1 => match value {
                Scalar::Bool(b) => {
                    out.extend_from_slice(&[0x10, b as u8]);
                    Ok(())
                }
                _ => Err("boolValue must be true or false".to_string()),
            },
            2 => int64(&value).map(|v| {
                out.push(0x18);
                varint_to(&mut out, v as u64);
            }),
            3 => double(&value).map(|v| {
                let v = if raw.get() == "-0" { 0.0 } else { v };
                out.push(0x21);
                out.extend_from_slice(&v.to_le_bytes());
            }),
            _ => base64_bytes(&value).map(|b| field(&mut out, 0x3A, &b)),
        };
        Ok((null, encoded.map(|()| out)))
    }
}

/// An arrayValue's or kvlistValue's object: its `values`, the last one given, each encoded as field 1.
struct ValuesFields(bool, u32);

impl<'de> Fields<'de> for ValuesFields {
    type Value = Result<(bool, Val), String>;
    fn fields<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values: Val = Ok(Vec::new());
        while let Some(Key(key)) = map.next_key()? {
            if key == "values" {
                values = map.next_value_seed(ListSeed { tag: 0x0A, kvlist: self.0, null_entries: true, depth: self.1 + 2 })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Ok((false, values)))
    }
}

/// `_json_list` of AnyValues (arrays) or KeyValues (kvlists, attributes), each encoded as field `tag`; the
/// first error the list holds. null_entries: a null KeyValue is `{}` (kvlists) rather than refused (attributes).
struct ListSeed {
    tag: u8,
    kvlist: bool,
    null_entries: bool,
    /// the entries' depth in messages
    depth: u32,
}

impl<'de> DeserializeSeed<'de> for ListSeed {
    type Value = Val;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Val, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListSeed {
    type Value = Val;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_unit<E>(self) -> Result<Val, E> {
        Ok(Ok(Vec::new()))
    }
    other_types!(self => Err("expected an array".into()), map);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val, A::Error> {
        let mut out: Val = Ok(Vec::new());
        loop {
            let item = if self.kvlist {
                let null = if self.null_entries { Ok(Vec::new()) } else { Err("expected an object".into()) };
                seq.next_element_seed(KeyValueSeed(null, self.depth))?
            } else {
                seq.next_element_seed(AnySeed(self.depth))?
            };
            let Some(item) = item else { break };
            let item = if self.depth > MAX_VALUE_DEPTH { Err(too_deep()) } else { item };
            if let Ok(bytes) = &mut out {
                match item {
                    Ok(message) => field(bytes, self.tag, &message),
                    Err(error) => out = Err(error), // the rest is read (the document's syntax), not kept
                }
            }
        }
        Ok(out)
    }
}

/// A KeyValue: `key` (a string, null is "") then `value` (an AnyValue), the last of each; `.0` for null.
struct KeyValueSeed(Val, u32);

impl<'de> DeserializeSeed<'de> for KeyValueSeed {
    type Value = Val;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Val, D::Error> {
        d.deserialize_any(ObjectOr { null: self.0, inner: KeyValueFields(self.1) })
    }
}

struct KeyValueFields(u32);

impl<'de> Fields<'de> for KeyValueFields {
    type Value = Val;
    fn fields<A: MapAccess<'de>>(self, mut map: A) -> Result<Val, A::Error> {
        let mut key: Result<Cow<'de, str>, String> = Ok(Cow::Borrowed(""));
        let mut value: Val = Ok(Vec::new());
        while let Some(Key(name)) = map.next_key()? {
            match name.as_ref() {
                "key" => {
                    key = match map.next_value::<Scalar>()? {
                        Scalar::Null => Ok(Cow::Borrowed("")),
                        Scalar::Str(s) => Ok(s),
                        _ => Err("expected a string".into()),
                    }
                }
                "value" => value = map.next_value_seed(AnySeed(self.0 + 1))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let (key, value) = match (key, value) {
            (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
            (Ok(key), Ok(value)) => (key, value),
        };
        let mut out = Vec::with_capacity(key.len() + value.len() + 4);
        if !key.is_empty() {
            field(&mut out, 0x0A, key.as_bytes());
        }
        if !value.is_empty() {
            field(&mut out, 0x12, &value);
        }
        Ok(Ok(out))
    }
}

/// `_json_attributes` of a value read earlier, each KeyValue (`depth` messages deep) as field `tag`.
fn attributes(raw: Option<&RawValue>, tag: u8, depth: u32) -> Val {
    match raw {
        None => Ok(Vec::new()),
        Some(raw) => reread(raw, ListSeed { tag, kvlist: true, null_entries: false, depth }).unwrap_or(Ok(Vec::new())),
    }
}

// ------------------------------------------------------------------------------------------------
// Objects whose fields are read in decode_json's order once the object closes: values kept as their text.

/// An object's fields, the last of each (a Python dict's): the known ones by `names`, then the others.
type Entries<'de, const N: usize> = ([Option<&'de RawValue>; N], Vec<(Cow<'de, str>, &'de RawValue)>);

/// An object's fields; None: not an object (null is an empty one).
struct Slots<const N: usize>(&'static [&'static str; N]);

impl<'de, const N: usize> DeserializeSeed<'de> for Slots<N> {
    type Value = Option<Entries<'de, N>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for Slots<N> {
    type Value = Option<Entries<'de, N>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Some(([None; N], Vec::new())))
    }
    other_types!(self => None, seq);
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut slots, mut others) = ([None; N], Vec::new());
        while let Some(Key(key)) = map.next_key()? {
            let value = map.next_value::<&RawValue>()?;
            match self.0.iter().position(|k| *k == key) {
                Some(i) => slots[i] = Some(value),
                None => match others.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, last)) => *last = value,
                    None => others.push((key, value)),
                },
            }
        }
        Ok(Some((slots, others)))
    }
}

const RECORD_FIELDS: [&str; 17] = [
    "timeUnixNano", "time_unix_nano", "observedTimeUnixNano", "observed_time_unix_nano", "traceId", "trace_id",
    "spanId", "span_id", "flags", "severityText", "severity_text", "severityNumber", "severity_number", "body",
    "attributes", "eventName", "event_name",
];

/// A LogRecord's protobuf from its fields, read in decode_json's order; Err(the message, with `at`).
fn record(f: &[Option<&RawValue>; 17], at: &dyn Fn() -> String) -> Result<Vec<u8>, String> {
    let fail = |name: &str, error: String| format!("{}.{name}: {error}", at());
    let time = uint(&scalar(pick(f[0], f[1])), 64).map_err(|e| fail("timeUnixNano", e))?;
    let observed = uint(&scalar(pick(f[2], f[3])), 64).map_err(|e| fail("observedTimeUnixNano", e))?;
    let trace = hex_id(&scalar(pick(f[4], f[5])), 16).map_err(|e| fail("traceId", e))?;
    let span = hex_id(&scalar(pick(f[6], f[7])), 8).map_err(|e| fail("spanId", e))?;
    let flags = uint(&scalar(f[8]), 32).map_err(|e| fail("flags", e))?;
    let text = scalar(pick(f[9], f[10]));
    let text = string(&text).map_err(|e| fail("severityText", e))?;
    let number = severity(&scalar(pick(f[11], f[12]))).map_err(|e| fail("severityNumber", e))?;
    let body = match f[13] {
        Some(raw) if raw.get() != "null" => {
            Some(reread(raw, AnySeed(5)).unwrap_or(Ok(Vec::new())).map_err(|e| fail("body", e))?)
        }
        _ => None,
    };
    let attrs = attributes(f[14], 0x32, 5).map_err(|e| fail("attributes", e))?;
    let event = scalar(pick(f[15], f[16]));
    let event = string(&event).map_err(|e| fail("eventName", e))?;

    let mut out = Vec::with_capacity(attrs.len() + 64);
    if time != 0 {
        out.push(0x09);
        out.extend_from_slice(&time.to_le_bytes());
    }
    if number != 0 {
        out.extend_from_slice(&[0x10]);
        varint_to(&mut out, number as u64);
    }
    if !text.is_empty() {
        field(&mut out, 0x1A, text.as_bytes());
    }
    if let Some(body) = body {
        field(&mut out, 0x2A, &body);
    }
    out.extend_from_slice(&attrs);
    if flags != 0 {
        out.push(0x45);
        out.extend_from_slice(&(flags as u32).to_le_bytes());
    }
    if !trace.is_empty() {
        field(&mut out, 0x4A, &trace);
    }
    if !span.is_empty() {
        field(&mut out, 0x52, &span);
    }
    if observed != 0 {
        out.push(0x59);
        out.extend_from_slice(&observed.to_le_bytes());
    }
    if !event.is_empty() {
        field(&mut out, 0x62, event.as_bytes());
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------------
// The containers: request -> resourceLogs -> scopeLogs -> logRecords, read as a stream. A refusal is a value
// until its object closes: a list a later key overrides (or a null camelCase one) refuses nothing.

/// A container's or record's message, or why it is refused.
type Read = Result<Vec<u8>, Fault>;

/// A list of the containers' (or records') messages: (was it null, their fields, the records they hold).
type Listed = (bool, Read, usize);

/// Keep `new` as the value of a key given again (the last wins), its records counted instead of the old one's.
fn replace(ctx: &mut Ctx, slot: &mut Option<Listed>, new: Listed) {
    if let Some(old) = slot.replace(new) {
        ctx.records -= old.2;
    }
}

/// The camelCase list unless it is null, else the snake_case one; the other's records no longer counted.
fn chosen(ctx: &mut Ctx, camel: Option<Listed>, snake: Option<Listed>) -> Read {
    let (kept, dropped) = match (camel, snake) {
        (Some(camel @ (false, _, _)), snake) => (Some(camel), snake),
        (camel, Some(snake)) => (Some(snake), camel),
        (camel, None) => (None, camel),
    };
    if let Some(dropped) = dropped {
        ctx.records -= dropped.2;
    }
    kept.map_or(Ok(Vec::new()), |(_, read, _)| read)
}

/// Which level a list is, and where it is (for the errors).
#[derive(Clone, Copy)]
enum Level {
    Resources,
    Scopes { r: usize },
    Records { r: usize, s: usize },
}

impl Level {
    /// Where a list of this level is (decode_json's names).
    fn at(self) -> String {
        match self {
            Level::Resources => "resourceLogs".into(),
            Level::Scopes { r } => format!("resourceLogs[{r}]"),
            Level::Records { r, s } => format!("resourceLogs[{r}].scopeLogs[{s}]"),
        }
    }
}

/// Drain what a visitor refuses, so that the document's reading goes on.
struct ListOf<'c> {
    ctx: &'c mut Ctx,
    level: Level,
}

impl ListOf<'_> {
    fn not_array(&self) -> Listed {
        (false, Err(Fault::Invalid(format!("{}: expected an array", self.level.at()))), 0)
    }
}

impl<'de> DeserializeSeed<'de> for ListOf<'_> {
    type Value = Listed;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Listed, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListOf<'_> {
    type Value = Listed;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_unit<E>(self) -> Result<Listed, E> {
        Ok((true, Ok(Vec::new()), 0))
    }
    other_types!(self => self.not_array(), map);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Listed, A::Error> {
        let before = self.ctx.records;
        let tag = if matches!(self.level, Level::Resources) { 0x0A } else { 0x12 };
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let ctx = &mut *self.ctx;
            let item = match self.level {
                Level::Resources => seq.next_element_seed(Container { ctx, level: Level::Scopes { r: i } })?,
                Level::Scopes { r } => seq.next_element_seed(Container { ctx, level: Level::Records { r, s: i } })?,
                Level::Records { r, s } => seq.next_element_seed(RecordSeed { ctx, r, s, i })?,
            };
            match item {
                None => break,
                Some(Ok(message)) => field(&mut out, tag, &message),
                Some(Err(fault)) => {
                    drain_seq(seq)?; // read, not kept
                    return Ok((false, Err(fault), self.ctx.records - before));
                }
            }
            i += 1;
        }
        Ok((false, Ok(out), self.ctx.records - before))
    }
}

/// A ResourceLogs (level Scopes: its list is scopeLogs), a ScopeLogs (level Records) or the request (level
/// Resources), assembled when its object closes: its resource or scope (kept as text, read then) before its
/// list, whatever the JSON order.
struct Container<'c> {
    ctx: &'c mut Ctx,
    level: Level,
}

impl<'de> DeserializeSeed<'de> for Container<'_> {
    type Value = Read;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Read, D::Error> {
        d.deserialize_any(self)
    }
}

impl Container<'_> {
    /// Where this object is: the request, resourceLogs[r] or resourceLogs[r].scopeLogs[s].
    fn at(&self) -> String {
        match self.level {
            Level::Resources => "request".into(),
            Level::Scopes { r } => format!("resourceLogs[{r}]"),
            Level::Records { r, s } => format!("resourceLogs[{r}].scopeLogs[{s}]"),
        }
    }

    fn not_object(&self) -> Read {
        Err(Fault::Invalid(format!("{}: expected an object", self.at())))
    }
}

impl<'de> Visitor<'de> for Container<'_> {
    type Value = Read;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_unit<E>(self) -> Result<Read, E> {
        Ok(Ok(Vec::new()))
    }
    other_types!(self => self.not_object(), seq);
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Read, A::Error> {
        let (head_key, camel_key, snake_key, list) = match self.level {
            Level::Resources => ("", "resourceLogs", "resource_logs", Level::Resources),
            Level::Scopes { r } => ("resource", "scopeLogs", "scope_logs", Level::Scopes { r }),
            Level::Records { r, s } => ("scope", "logRecords", "log_records", Level::Records { r, s }),
        };
        let (mut head, mut url): (Option<&RawValue>, [Option<&RawValue>; 2]) = (None, [None, None]);
        let (mut camel, mut snake): (Option<Listed>, Option<Listed>) = (None, None);
        while let Some(Key(key)) = map.next_key()? {
            if key == camel_key || key == snake_key {
                let listed = map.next_value_seed(ListOf { ctx: &mut *self.ctx, level: list })?;
                replace(self.ctx, if key == camel_key { &mut camel } else { &mut snake }, listed);
            } else if key == head_key {
                head = Some(map.next_value()?);
            } else if key == "schemaUrl" && !head_key.is_empty() {
                url[0] = Some(map.next_value()?);
            } else if key == "schema_url" && !head_key.is_empty() {
                url[1] = Some(map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        let list = chosen(self.ctx, camel, snake);
        if head_key.is_empty() {
            return Ok(list); // the request: its resourceLogs
        }
        // decode_json's order: the resource or scope, the schema url, then the list
        let at = self.at();
        let head = match self.level {
            Level::Scopes { .. } => resource(head, &at),
            _ => scope(head, &at),
        };
        let url = scalar(pick(url[0], url[1]));
        let read = head.and_then(|head| {
            let url = string(&url).map_err(|e| format!("{at}.schemaUrl: {e}"))?;
            Ok((head, url))
        });
        let (head, url) = match read {
            Ok(read) => read,
            Err(message) => return Ok(Err(Fault::Invalid(message))),
        };
        let list = match list {
            Ok(list) => list,
            Err(fault) => return Ok(Err(fault)),
        };
        let mut out = Vec::with_capacity(head.len() + list.len() + url.len() + 8);
        if !head.is_empty() {
            field(&mut out, 0x0A, &head);
        }
        out.extend_from_slice(&list);
        if !url.is_empty() {
            field(&mut out, 0x1A, url.as_bytes());
        }
        Ok(Ok(out))
    }
}

/// A Resource's protobuf (its attributes, field 1).
fn resource(raw: Option<&RawValue>, at: &str) -> Result<Vec<u8>, String> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    let Some(Some(([attrs], _))) = reread(raw, Slots(&["attributes"])) else {
        return Err(format!("{at}.resource: expected an object"));
    };
    attributes(attrs, 0x0A, 4).map_err(|e| format!("{at}.resource.attributes: {e}"))
}

/// An InstrumentationScope's protobuf (name 1, version 2, attributes 3).
fn scope(raw: Option<&RawValue>, at: &str) -> Result<Vec<u8>, String> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    let Some(Some(([name, version, attrs], _))) = reread(raw, Slots(&["name", "version", "attributes"])) else {
        return Err(format!("{at}.scope: expected an object"));
    };
    let attrs = attributes(attrs, 0x1A, 5).map_err(|e| format!("{at}.scope.attributes: {e}"))?;
    let (name, version) = (scalar(name), scalar(version));
    let name = string(&name).map_err(|e| format!("{at}.scope.name: {e}"))?;
    let version = string(&version).map_err(|e| format!("{at}.scope.version: {e}"))?;
    let mut out = Vec::with_capacity(attrs.len() + name.len() + version.len() + 6);
    if !name.is_empty() {
        field(&mut out, 0x0A, name.as_bytes());
    }
    if !version.is_empty() {
        field(&mut out, 0x12, version.as_bytes());
    }
    out.extend_from_slice(&attrs);
    Ok(out)
}

/// One LogRecord: counted (the records limit) and measured (the per-record limit, its compact JSON as orjson
/// writes it) before its fields are read, then encoded.
struct RecordSeed<'c> {
    ctx: &'c mut Ctx,
    r: usize,
    s: usize,
    i: usize,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = Read;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Read, D::Error> {
        let ctx = self.ctx;
        let (r, s, i) = (self.r, self.s, self.i);
        let at = move || format!("resourceLogs[{r}].scopeLogs[{s}].logRecords[{i}]");
        if ctx.records >= ctx.max_records {
            IgnoredAny::deserialize(d)?;
            return Ok(Err(Fault::Records));
        }
        let Some((fields, others)) = Slots(&RECORD_FIELDS).deserialize(d)? else {
            return Ok(Err(Fault::Invalid(format!("{}: expected an object", at()))));
        };
        if ctx.measure {
            let entries = RECORD_FIELDS.iter().zip(fields).filter_map(|(k, v)| Some((*k, v?)))
                .chain(others.iter().map(|(k, v)| (k.as_ref(), *v)));
            let size = record_size(entries, ctx.max_record_bytes);
            if size > ctx.max_record_bytes {
                return Ok(Err(Fault::RecordBytes { index: ctx.records, size }));
            }
        }
        let message = record(&fields, &at).map_err(Fault::Invalid);
        ctx.records += message.is_ok() as usize;
        Ok(message)
    }
}

// ------------------------------------------------------------------------------------------------
// A record's size as decode_json measures it: len(orjson.dumps(record)), without building the record.

/// A record's size from its fields (a dict's: the last value of each key), as orjson writes the record; no
/// more than needed to compare it with `max`: a value's compact text is at most 4.5x its text (a number as
/// short as 1e15 written 1000000000000000.0; strings, escapes and repeated keys only shrink), so a record whose
/// text is a fifth of the limit is not measured.
fn record_size<'a>(entries: impl Iterator<Item = (&'a str, &'a RawValue)> + Clone, max: usize) -> usize {
    let framing = |entries: &mut dyn Iterator<Item = usize>| {
        let (sum, n) = entries.fold((0, 0), |(sum, n), len| (sum + len, n + 1));
        2 + sum + n.max(1) - 1
    };
    let bound = framing(&mut entries.clone().map(|(k, v)| string_len(k) + 1 + 5 * v.get().len()));
    if bound <= max {
        return bound.min(max);
    }
    framing(&mut entries.map(|(k, v)| string_len(k) + 1 + reread(v, Measure).unwrap_or(0)))
}

struct Measure;

impl<'de> DeserializeSeed<'de> for Measure {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

/// A JSON string's length as orjson writes it: `"` and `\` and \b \t \n \f \r escaped in two bytes, other
/// control characters as \u00XX, the rest as UTF-8.
fn string_len(s: &str) -> usize {
    2 + s.bytes().map(|b| match b {
        b'"' | b'\\' | 8 | 9 | 10 | 12 | 13 => 2,
        0..=31 => 6,
        _ => 1,
    }).sum::<usize>()
}

fn digits(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

/// orjson's double: the shortest digits, fixed from 1e-5 to below 1e16 (with ".0" when integral), else
/// d.ddde+X / d.ddde-X.
fn float_len(v: f64) -> usize {
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let n = mantissa.bytes().filter(u8::is_ascii_digit).count() as i64;
    let sign = v.is_sign_negative() as i64;
    let len = if (-5..16).contains(&exp) {
        if exp >= 0 { exp + 1 + if n > exp + 1 { 1 + n - exp - 1 } else { 2 } } else { 2 + (-exp - 1) + n }
    } else {
        n + (n > 1) as i64 + 2 + digits(exp.unsigned_abs()) as i64
    };
    (len + sign) as usize
}

impl<'de> Visitor<'de> for Measure {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<usize, E> {
        Ok(4)
    }
    fn visit_bool<E>(self, v: bool) -> Result<usize, E> {
        Ok(if v { 4 } else { 5 })
    }
    fn visit_u64<E>(self, v: u64) -> Result<usize, E> {
        Ok(digits(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<usize, E> {
        Ok(digits(v.unsigned_abs()) + (v < 0) as usize)
    }
    fn visit_f64<E>(self, v: f64) -> Result<usize, E> {
        Ok(float_len(v))
    }
    fn visit_str<E>(self, s: &str) -> Result<usize, E> {
        Ok(string_len(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let (mut len, mut n) = (2, 0);
        while let Some(item) = seq.next_element_seed(Measure)? {
            len += item;
            n += 1;
        }
        Ok(len + n.max(1) - 1)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        // a key given again keeps its place and takes the last value (a Python dict)
        let mut entries: Vec<(Cow<'de, str>, usize)> = Vec::new();
        let mut index: HashMap<Cow<'de, str>, usize> = HashMap::new();
        while let Some(Key(key)) = map.next_key()? {
            let value = map.next_value_seed(Measure)?;
            let found = if entries.len() < 16 {
                entries.iter().position(|(k, _)| *k == key)
            } else {
                if index.is_empty() {
                    index.extend(entries.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)));
                }
                index.get(&key).copied()
            };
            match found {
                Some(i) => entries[i].1 = value,
                None => {
                    if !index.is_empty() || entries.len() >= 16 {
                        index.insert(key.clone(), entries.len());
                    }
                    entries.push((key, value));
                }
            }
        }
        let n = entries.len();
        Ok(2 + entries.iter().map(|(k, v)| string_len(k) + 1 + v).sum::<usize>() + n.max(1) - 1)
    }
}

// ------------------------------------------------------------------------------------------------

/// orjson's document rules serde_json does not apply: nesting deeper than 1024, lone surrogate escapes,
/// numbers beyond a double anywhere.
fn prescan(b: &[u8]) -> Result<(), String> {
    let hex = |at: usize| -> Option<u32> {
        let digits = b.get(at..at + 4)?;
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let (mut depth, mut i) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] != b'\\' {
                        i += 1;
                        continue;
                    }
                    if b.get(i + 1) != Some(&b'u') {
                        i += 2;
                        continue;
                    }
                    match hex(i + 2) {
                        Some(0xD800..=0xDBFF) => {
                            if b.get(i + 6..i + 8) != Some(b"\\u") || !matches!(hex(i + 8), Some(0xDC00..=0xDFFF)) {
                                return Err("malformed JSON: no low surrogate in string".into());
                            }
                            i += 12;
                        }
                        Some(0xDC00..=0xDFFF) => return Err("malformed JSON: lone low surrogate in string".into()),
                        _ => i += 6,
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                // orjson refuses a number a double cannot hold (1e400; serde_json only when it reads it)
                let start = i;
                while i + 1 < b.len() && matches!(b[i + 1], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    i += 1;
                }
                let token = &b[start..=i];
                if token.len() > 15 || token.iter().any(|c| matches!(c, b'e' | b'E')) {
                    let value = std::str::from_utf8(token).ok().and_then(|t| t.parse::<f64>().ok());
                    if value.is_some_and(f64::is_infinite) {
                        return Err("malformed JSON: number is infinity when parsed as double".into());
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("malformed JSON: nesting deeper than {MAX_DEPTH}"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The protobuf ExportLogsServiceRequest of an OTLP/JSON one, or why it is refused.
pub(crate) fn transcode(body: &[u8], max_records: usize, max_record_bytes: usize) -> Result<Vec<u8>, Fault> {
    let text = std::str::from_utf8(body).map_err(|e| Fault::Invalid(format!("malformed JSON: {e}")))?;
    prescan(body).map_err(Fault::Invalid)?;
    let mut ctx = Ctx { max_records, max_record_bytes, measure: body.len() > max_record_bytes, records: 0 };
    let mut d = serde_json::Deserializer::from_str(text);
    d.disable_recursion_limit();
    // the whole document is read before any refusal is answered: a syntax error anywhere comes first (orjson
    // parses the whole body before decode_json reads it)
    let read = Request { ctx: &mut ctx }.deserialize(&mut d).and_then(|out| d.end().map(|()| out));
    read.map_err(|e| Fault::Invalid(format!("malformed JSON: {e}")))?
}

/// The top level: null is an empty request, anything but an object is refused.
struct Request<'c> {
    ctx: &'c mut Ctx,
}

impl<'de> DeserializeSeed<'de> for Request<'_> {
    type Value = Read;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Read, D::Error> {
        d.deserialize_any(Container { ctx: self.ctx, level: Level::Resources })
    }
}

/// An OTLP/JSON ExportLogsServiceRequest as protobuf: ("ok", the protobuf), ("invalid", the message: 400),
/// ("records", None: more than max_records) or ("record_bytes", None, index, size: a record over
/// max_record_bytes, measured as decode_json does in bodies larger than it). Reads decode_json's semantics.
#[pyfunction]
#[pyo3(signature = (body, max_records=usize::MAX, max_record_bytes=usize::MAX))]
pub(crate) fn otlp_logs_json<'py>(py: Python<'py>, body: &[u8], max_records: usize, max_record_bytes: usize)
                                  -> PyResult<(&'static str, Option<Bound<'py, PyAny>>, usize, usize)> {
    Ok(match py.detach(|| transcode(body, max_records, max_record_bytes)) {
        Ok(out) => ("ok", Some(PyBytes::new(py, &out).into_any()), 0, 0),
        Err(Fault::Invalid(message)) => ("invalid", Some(PyString::new(py, &message).into_any()), 0, 0),
        Err(Fault::Records) => ("records", None, 0, 0),
        Err(Fault::RecordBytes { index, size }) => ("record_bytes", None, index, size),
    })
}
