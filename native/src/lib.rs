//! auditrail's native core: an OTLP `ExportLogsServiceRequest` (protobuf) as one ClickHouse `Native` block of
//! the rows the collector's clickhouse exporter (v0.161.0) writes into `otel_logs` (the 16 columns it inserts),
//! the same rows `auditrail_store.ingest` computes in Python (pdata's AsString for every AnyValue kind, Go's
//! float and JSON rules included). A trace or span id of another length makes it return None: pdata refuses
//! those, and the caller's Python path answers 400.
//!
//! The protobuf is read by a hand-written wire reader for the OTLP logs subset, zero-copy: strings and bytes
//! stay slices of the body, values are written straight into the block's column buffers, and the only
//! allocations are per request (columns, a scratch list of a record's attributes reused for every record),
//! per ResourceLogs / ScopeLogs, and for array and kvlist values. It reads as upb (the Python path's parser)
//! does: a singular field given twice, the last one wins, a message field given twice is merged (parsed as
//! the concatenation of its occurrences: repeated fields append, a oneof takes its last member, a message
//! member merged again), unknown fields and known numbers with another wire type are skipped, every string
//! field upb knows is UTF-8 checked (also inside values a later field replaces). Anything it does not take
//! (truncation, invalid UTF-8, groups, overlong varints, nesting deeper than [`MAX_DEPTH`]) is an error: the
//! caller then lets upb decide (a 400, or the Python path for what upb accepts).
use base64::Engine as _;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::HashSet;

mod batch;
mod drain;
mod limits;
mod otlp_json;
mod sign;
mod spool;
mod verify;

/// The columns, in the block's order, with the types the block declares (the insert converts to the table's).
pub const COLUMNS: [(&str, &str); 16] = [
    ("Timestamp", "DateTime64(9)"), ("TraceId", "String"), ("SpanId", "String"), ("TraceFlags", "UInt8"),
    ("SeverityText", "String"), ("SeverityNumber", "UInt8"), ("ServiceName", "String"), ("Body", "String"),
    ("ResourceSchemaUrl", "String"), ("ResourceAttributes", "Map(String, String)"), ("ScopeSchemaUrl", "String"),
    ("ScopeName", "String"), ("ScopeVersion", "String"), ("ScopeAttributes", "Map(String, String)"),
    ("LogAttributes", "Map(String, String)"), ("EventName", "String"),
];

/// Message nesting (from the request, 0) beyond which the reader gives up (upb's limit is 100).
const MAX_DEPTH: u32 = 64;

type Res<T> = Result<T, &'static str>;

/// The error that says a request limit was passed (not a wire error): see [`Count`].
const OVER_LIMIT: &str = "over a request limit";

/// Protobuf messages read so far against the request's budget (limits.rs counts the same ones, the request
/// itself included: every ResourceLogs, Resource, EntityRef, ScopeLogs, Scope, LogRecord, KeyValue, AnyValue,
/// ArrayValue and KeyValueList occurrence), so the encoder stops where the scan would, before it spends more.
struct Count {
    n: usize,
    max: usize,
}

impl Count {
    fn unlimited() -> Self {
        Count { n: 0, max: usize::MAX }
    }

    #[inline]
    fn one(&mut self) -> Res<()> {
        self.n += 1;
        if self.n > self.max {
            return Err(OVER_LIMIT);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------
// The wire reader.

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    #[inline]
    fn new(buf: &'a [u8]) -> Self {
        Wire { buf, pos: 0 }
    }

    #[inline]
    fn more(&self) -> bool {
        self.pos < self.buf.len()
    }

    #[inline]
    fn varint(&mut self) -> Res<u64> {
        // the common one-byte case first
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(b as u64);
            }
        }
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err("varint beyond 64 bits");
            }
            value |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// (field number, wire type) of the next field.
    #[inline]
    fn tag(&mut self) -> Res<(u32, u8)> {
        let tag = self.varint()?;
        if tag >> 3 == 0 || tag > u32::MAX as u64 {
            return Err("invalid field number");
        }
        Ok(((tag >> 3) as u32, (tag & 7) as u8))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        if n > self.buf.len() - self.pos {
            return Err("truncated field");
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[inline]
    fn bytes(&mut self) -> Res<&'a [u8]> {
        let n = self.varint()?;
        if n > (self.buf.len() - self.pos) as u64 {
            return Err("truncated field");
        }
        self.take(n as usize)
    }

    #[inline]
    fn string(&mut self) -> Res<&'a [u8]> {
        let s = self.bytes()?;
        utf8(s)?;
        Ok(s)
    }

    #[inline]
    fn fixed64(&mut self) -> Res<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    #[inline]
    fn fixed32(&mut self) -> Res<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    /// Skip an unknown field (groups, deprecated and rare, are left to upb).
    fn skip(&mut self, wire: u8) -> Res<()> {
        match wire {
            VARINT => self.varint().map(|_| ()),
            FIXED64 => self.take(8).map(|_| ()),
            LEN => self.bytes().map(|_| ()),
            FIXED32 => self.take(4).map(|_| ()),
            _ => Err("group or invalid wire type"),
        }
    }
}

#[inline]
fn utf8(s: &[u8]) -> Res<()> {
    if s.is_ascii() {
        return Ok(());
    }
    std::str::from_utf8(s).map(|_| ()).map_err(|_| "invalid UTF-8 in a string field")
}

// ---------------------------------------------------------------------------------------------------------
// AnyValue.

/// An AnyValue as upb holds it after merging every occurrence: the oneof's last member. Arrays and kvlists
/// keep the slices of their (merged) occurrences, already checked, read again only to be formatted.
enum Val<'a> {
    Empty, // no member, or string_value_strindex (pdata: an empty value)
    Str(&'a [u8]),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    Array(Vec<&'a [u8]>),
    Kvlist(Vec<&'a [u8]>),
}

/// Merge one serialized AnyValue into `val` (as protobuf merges a message given again).
fn any_merge<'a>(val: &mut Val<'a>, seg: &'a [u8], depth: u32, count: &mut Count) -> Res<()> {
    if depth > MAX_DEPTH {
        return Err("nesting too deep");
    }
    let mut w = Wire::new(seg);
    while w.more() {
        match w.tag()? {
            (1, LEN) => *val = Val::Str(w.string()?),
            (2, VARINT) => *val = Val::Bool(w.varint()? != 0),
            (3, VARINT) => *val = Val::Int(w.varint()? as i64),
            (4, FIXED64) => *val = Val::Double(f64::from_bits(w.fixed64()?)),
            (5, LEN) => {
                let s = w.bytes()?;
                count.one()?;
                check_list(s, depth + 1, false, count)?;
                match val {
                    Val::Array(segs) => segs.push(s),
                    _ => *val = Val::Array(vec![s]),
                }
            }
            (6, LEN) => {
                let s = w.bytes()?;
                count.one()?;
                check_list(s, depth + 1, true, count)?;
                match val {
                    Val::Kvlist(segs) => segs.push(s),
                    _ => *val = Val::Kvlist(vec![s]),
                }
            }
            (7, LEN) => *val = Val::Bytes(w.bytes()?),
            (8, VARINT) => {
                w.varint()?;
                *val = Val::Empty;
            }
            (_, wire) => w.skip(wire)?,
        }
    }
    Ok(())
}

/// Check an ArrayValue (`kv` false) or KeyValueList (true) as upb would read it (structure, UTF-8, depth).
fn check_list(seg: &[u8], depth: u32, kv: bool, count: &mut Count) -> Res<()> {
    let mut w = Wire::new(seg);
    while w.more() {
        match w.tag()? {
            (1, LEN) => {
                let s = w.bytes()?;
                count.one()?;
                if kv {
                    key_value(s, depth + 1, count)?;
                } else {
                    any_merge(&mut Val::Empty, s, depth + 1, count)?;
                }
            }
            (_, wire) => w.skip(wire)?,
        }
    }
    Ok(())
}

/// One KeyValue: (key, value). `count` takes its values (the caller counted the KeyValue).
#[inline]
fn key_value<'a>(seg: &'a [u8], depth: u32, count: &mut Count) -> Res<(&'a [u8], Val<'a>)> {
    let mut key: &[u8] = b"";
    let mut val = Val::Empty;
    let mut w = Wire::new(seg);
    while w.more() {
        match w.tag()? {
            (1, LEN) => key = w.string()?,
            (2, LEN) => {
                let s = w.bytes()?;
                count.one()?;
                any_merge(&mut val, s, depth + 1, count)?
            }
            (_, wire) => w.skip(wire)?, // key_strindex (3) included
        }
    }
    Ok((key, val))
}

/// The elements of a (merged) ArrayValue, in order.
fn array_items<'a>(segs: &[&'a [u8]]) -> Vec<Val<'a>> {
    let mut out = Vec::new();
    for seg in segs {
        let mut w = Wire::new(seg);
        while w.more() {
            // checked when read: no error here
            match w.tag().unwrap() {
                (1, LEN) => {
                    let mut v = Val::Empty;
                    any_merge(&mut v, w.bytes().unwrap(), 0, &mut Count::unlimited()).unwrap();
                    out.push(v);
                }
                (_, wire) => w.skip(wire).unwrap(),
            }
        }
    }
    out
}

/// The pairs of a (merged) KeyValueList, in order.
fn kvlist_items<'a>(segs: &[&'a [u8]]) -> Vec<(&'a [u8], Val<'a>)> {
    let mut out = Vec::new();
    for seg in segs {
        let mut w = Wire::new(seg);
        while w.more() {
            match w.tag().unwrap() {
                (1, LEN) => out.push(key_value(w.bytes().unwrap(), 0, &mut Count::unlimited()).unwrap()),
                (_, wire) => w.skip(wire).unwrap(),
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// pdata's AsString.

/// pdata's float64AsString: shortest round-trip digits, 'f' style, 'e' below 1e-6 and from 1e21.
fn go_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return (if x > 0.0 { "Infinity" } else { "-Infinity" }).into();
    }
    go_float_digits(x)
}

fn go_float_digits(x: f64) -> String {
    if x == 0.0 {
        return (if x.is_sign_negative() { "-0" } else { "0" }).into();
    }
    let (digits, exponent) = shortest_digits(x.abs());
    let mut out = String::with_capacity(digits.len() + 8);
    if x < 0.0 {
        out.push('-');
    }
    if (1e-6..1e21).contains(&x.abs()) {
        // 'f': the digits with the point placed, zeros as needed
        if exponent < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
            out.push_str(&digits);
        } else if digits.len() <= exponent as usize + 1 {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', exponent as usize + 1 - digits.len()));
        } else {
            out.push_str(&digits[..exponent as usize + 1]);
            out.push('.');
            out.push_str(&digits[exponent as usize + 1..]);
        }
        return out;
    }
    // 'e': d[.ddd]e-7, e+21 (Go pads the exponent to two digits)
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    if exponent < 0 {
        out.push_str(&format!("e-{}", -exponent));
    } else {
        out.push_str(&format!("e+{exponent:02}"));
    }
    out
}

/// The shortest significant digits that read back as `x` (> 0) and the decimal exponent of the first one.
/// Of two shortest candidates equally near `x` (x exactly halfway, as 3.25043487548828125), the even one, as
/// Python's repr and Go's strconv; Rust's shortest formatting takes the upper one, its exact formatting at that
/// precision rounds half to even.
fn shortest_digits(x: f64) -> (String, i32) {
    let split = |text: &str| -> (String, i32) {
        let (mantissa, exponent) = text.split_once('e').unwrap();
        (mantissa.chars().filter(|c| *c != '.').collect(), exponent.parse().unwrap())
    };
    let (digits, exponent) = split(&format!("{x:e}"));
    let exact = format!("{:.*e}", digits.len() - 1, x);
    if exact.parse::<f64>() == Ok(x) {
        return split(&exact);
    }
    (digits, exponent)
}

/// A JSON string as Go's json.Encoder writes it with SetEscapeHTML(false).
fn go_json_string(text: &[u8], out: &mut String) {
    let text = std::str::from_utf8(text).expect("checked when read");
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// json.Marshal of pdata's AsRaw(); Err for NaN / infinity (encoding/json refuses them).
fn go_json(value: &Val, out: &mut String) -> Result<(), ()> {
    match value {
        Val::Empty => out.push_str("null"),
        Val::Str(s) => go_json_string(s, out),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Int(i) => out.push_str(&i.to_string()),
        Val::Double(d) => {
            if !d.is_finite() {
                return Err(());
            }
            out.push_str(&go_float_digits(*d));
        }
        Val::Bytes(b) => {
            if b.is_empty() {
                out.push_str("null");
            } else {
                out.push('"');
                base64::engine::general_purpose::STANDARD.encode_string(b, out);
                out.push('"');
            }
        }
        Val::Array(segs) => {
            out.push('[');
            for (i, v) in array_items(segs).iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(v, out)?;
            }
            out.push(']');
        }
        Val::Kvlist(segs) => {
            // AsRaw: a map, the last of a repeated key wins; Go sorts map keys by their bytes.
            let mut items = kvlist_items(segs);
            items.sort_by(|a, b| a.0.cmp(b.0)); // stable: a repeated key's last pair stays last
            out.push('{');
            let mut first = true;
            for (i, (key, v)) in items.iter().enumerate() {
                if i + 1 < items.len() && items[i + 1].0 == *key {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                go_json_string(key, out);
                out.push(':');
                go_json(v, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

#[inline]
pub(crate) fn varint_to(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A Native String value: length, bytes.
#[inline]
fn string_to(out: &mut Vec<u8>, s: &[u8]) {
    varint_to(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// pdata `AsString` of `value`, written as a Native String value into `out` (`scratch`: a reused buffer).
#[inline]
fn as_string_to(out: &mut Vec<u8>, value: &Val, scratch: &mut String) {
    match value {
        Val::Str(s) => string_to(out, s),
        Val::Empty => out.push(0),
        Val::Int(i) => {
            let mut digits = [0u8; 20];
            let mut n = i.unsigned_abs();
            let mut at = digits.len();
            loop {
                at -= 1;
                digits[at] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            let negative = *i < 0;
            varint_to(out, (digits.len() - at + negative as usize) as u64);
            if negative {
                out.push(b'-');
            }
            out.extend_from_slice(&digits[at..]);
        }
        Val::Bool(b) => string_to(out, if *b { b"true" } else { b"false" }),
        Val::Bytes(b) => {
            scratch.clear();
            base64::engine::general_purpose::STANDARD.encode_string(b, scratch);
            string_to(out, scratch.as_bytes());
        }
        Val::Double(d) => string_to(out, go_float(*d).as_bytes()),
        Val::Array(_) | Val::Kvlist(_) => {
            scratch.clear();
            if go_json(value, scratch).is_err() {
                scratch.clear();
            }
            string_to(out, scratch.as_bytes());
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The block.

/// A map column value, encoded once: (keys, values) as Native String values, the pair count.
#[derive(Default)]
struct MapValue {
    keys: Vec<u8>,
    values: Vec<u8>,
    count: u64,
}

impl MapValue {
    /// (key, AsString) pairs sorted by key bytes, ties in request order.
    fn of(pairs: &mut [(&[u8], Val)], scratch: &mut String) -> Self {
        sort_pairs(pairs);
        let mut map = MapValue::default();
        for (k, v) in pairs.iter() {
            string_to(&mut map.keys, k);
            as_string_to(&mut map.values, v, scratch);
        }
        map.count = pairs.len() as u64;
        map
    }
}

/// A key's first 8 bytes as a big-endian number (zero-padded): comparing two of them orders the keys unless
/// they are equal, when the whole keys decide. Most keys differ there, so sorting compares numbers.
#[inline]
fn prefix(key: &[u8]) -> u64 {
    let mut head = [0u8; 8];
    let n = key.len().min(8);
    head[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(head)
}

#[inline]
fn key_lt(a: &[u8], b: &[u8]) -> bool {
    let (pa, pb) = (prefix(a), prefix(b));
    if pa != pb {
        return pa < pb;
    }
    a < b
}

/// The positions of `keys` in key-byte order, ties in request order (what [`sort_pairs`] makes of them).
fn key_order(keys: &[&[u8]], order: &mut Vec<usize>) {
    order.clear();
    order.extend(0..keys.len());
    if !keys.windows(2).all(|w| !key_lt(w[1], w[0])) {
        order.sort_by(|&a, &b| {
            if key_lt(keys[a], keys[b]) {
                std::cmp::Ordering::Less
            } else if key_lt(keys[b], keys[a]) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
    }
}

/// Sort pairs by key bytes, ties in request order (a stable sort).
#[inline]
fn sort_pairs(pairs: &mut [(&[u8], Val)]) {
    if !pairs.windows(2).all(|w| !key_lt(w[1].0, w[0].0)) {
        pairs.sort_by(|a, b| {
            if key_lt(a.0, b.0) {
                std::cmp::Ordering::Less
            } else if key_lt(b.0, a.0) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
    }
}

const TS: usize = 0;
const TRACE_ID: usize = 1;
const SPAN_ID: usize = 2;
const FLAGS: usize = 3;
const SEVERITY_TEXT: usize = 4;
const SEVERITY_NUMBER: usize = 5;
const SERVICE: usize = 6;
const BODY: usize = 7;
const RESOURCE_URL: usize = 8;
const RESOURCE_ATTRS: usize = 9;
const SCOPE_URL: usize = 10;
const SCOPE_NAME: usize = 11;
const SCOPE_VERSION: usize = 12;
const SCOPE_ATTRS: usize = 13;
const LOG_ATTRS: usize = 14;
const EVENT_NAME: usize = 15;

#[derive(Default)]
struct Block {
    rows: usize,
    /// Fixed-size and String columns: the column's bytes; Map columns: the offsets.
    data: [Vec<u8>; 16],
    keys: [Vec<u8>; 16],
    values: [Vec<u8>; 16],
    totals: [u64; 16],
}

impl Block {
    #[inline]
    fn text(&mut self, column: usize, s: &[u8]) {
        string_to(&mut self.data[column], s);
    }

    #[inline]
    fn map(&mut self, column: usize, map: &MapValue) {
        self.keys[column].extend_from_slice(&map.keys);
        self.values[column].extend_from_slice(&map.values);
        self.end_map(column, map.count);
    }

    #[inline]
    fn end_map(&mut self, column: usize, count: u64) {
        self.totals[column] += count;
        let total = self.totals[column];
        self.data[column].extend_from_slice(&total.to_le_bytes());
    }

    /// traceutil.*ToHexOrEmptyString; Err(()) for another length (pdata refuses it).
    #[inline]
    fn hex_id(&mut self, column: usize, raw: &[u8], size: usize) -> Result<(), ()> {
        let out = &mut self.data[column];
        if raw.is_empty() || raw.iter().all(|b| *b == 0) {
            if raw.is_empty() || raw.len() == size {
                out.push(0);
                return Ok(());
            }
            return Err(());
        }
        if raw.len() != size {
            return Err(());
        }
        const H: &[u8; 16] = b"0123456789abcdef";
        out.push((2 * size) as u8);
        for b in raw {
            out.push(H[(b >> 4) as usize]);
            out.push(H[(b & 15) as usize]);
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.rows = 0;
        self.totals = [0; 16];
        for column in self.data.iter_mut().chain(self.keys.iter_mut()).chain(self.values.iter_mut()) {
            column.clear();
        }
    }

    fn capacity(&self) -> usize {
        self.data.iter().chain(self.keys.iter()).chain(self.values.iter()).map(Vec::capacity).sum()
    }

    fn header(&self) -> Vec<u8> {
        let mut out = Vec::new();
        varint_to(&mut out, COLUMNS.len() as u64);
        varint_to(&mut out, self.rows as u64);
        out
    }

    fn column_header(i: usize) -> Vec<u8> {
        let mut out = Vec::new();
        string_to(&mut out, COLUMNS[i].0.as_bytes());
        string_to(&mut out, COLUMNS[i].1.as_bytes());
        out
    }

    /// The Native block's size in bytes.
    fn size(&self) -> usize {
        self.header().len()
            + (0..16).map(|i| Self::column_header(i).len() + self.data[i].len() + self.keys[i].len() + self.values[i].len())
                .sum::<usize>()
    }

    /// Write the Native block to `out`: the bytes [`Block::write`] makes, from the column buffers themselves.
    fn write_into<W: std::io::Write>(&self, out: &mut W) -> std::io::Result<()> {
        out.write_all(&self.header())?;
        for i in 0..16 {
            out.write_all(&Self::column_header(i))?;
            out.write_all(&self.data[i])?;
            out.write_all(&self.keys[i])?;
            out.write_all(&self.values[i])?;
        }
        Ok(())
    }

    /// Write the Native block into `out`, of [`Block::size`] bytes.
    fn write(&self, out: &mut [u8]) {
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&self.header());
        for i in 0..16 {
            put(&Self::column_header(i));
            put(&self.data[i]);
            put(&self.keys[i]);
            put(&self.values[i]);
        }
        debug_assert_eq!(at, out.len());
    }
}

// ---------------------------------------------------------------------------------------------------------
// The request.

/// Why encoding stopped: the body is not read here (upb decides), or an id pdata refuses (the Python path).
enum Stop {
    Wire(&'static str),
    Refused,
    Limit, // a request limit passed: the scan (limits.rs) says which
}

impl From<&'static str> for Stop {
    fn from(message: &'static str) -> Self {
        if message == OVER_LIMIT {
            Stop::Limit
        } else {
            Stop::Wire(message)
        }
    }
}

/// Attributes of a Resource or InstrumentationScope given as the concatenation of its occurrences: the
/// message's pairs, with its other fields checked (name and version of a scope returned).
fn head<'a>(segs: &[&'a [u8]], scope: bool, pairs: &mut Vec<(&'a [u8], Val<'a>)>, count: &mut Count)
            -> Res<(&'a [u8], &'a [u8])> {
    let (mut name, mut version): (&[u8], &[u8]) = (b"", b"");
    for seg in segs {
        count.one()?;
        let mut w = Wire::new(seg);
        while w.more() {
            match (scope, w.tag()?) {
                (false, (1, LEN)) | (true, (3, LEN)) => {
                    let s = w.bytes()?;
                    count.one()?;
                    pairs.push(key_value(s, 2, count)?)
                }
                (true, (1, LEN)) => name = w.string()?,
                (true, (2, LEN)) => version = w.string()?,
                (false, (3, LEN)) => {
                    let s = w.bytes()?;
                    count.one()?;
                    entity_ref(s)?
                }
                (_, (_, wire)) => w.skip(wire)?, // dropped_attributes_count included
            }
        }
    }
    Ok((name, version))
}

/// A Resource's EntityRef: not written, but its strings are UTF-8 checked as upb does.
fn entity_ref(seg: &[u8]) -> Res<()> {
    let mut w = Wire::new(seg);
    while w.more() {
        match w.tag()? {
            (1..=4, LEN) => {
                w.string()?;
            }
            (_, wire) => w.skip(wire)?,
        }
    }
    Ok(())
}

/// ResourceLogs and ScopeLogs share a layout: 1 = the head message (merged), 2 = repeated children,
/// 3 = schema_url. Returns (head occurrences, children, schema url). More than `max_children` children (a
/// limit: each is a message, and a ScopeLogs' a record) stop it before their list grows further.
fn container<'a>(seg: &'a [u8], max_children: usize) -> Res<(Vec<&'a [u8]>, Vec<&'a [u8]>, &'a [u8])> {
    let (mut heads, mut children, mut url) = (Vec::new(), Vec::new(), &b""[..]);
    let mut w = Wire::new(seg);
    while w.more() {
        match w.tag()? {
            (1, LEN) => heads.push(w.bytes()?),
            (2, LEN) => {
                children.push(w.bytes()?);
                if children.len() > max_children {
                    return Err(OVER_LIMIT);
                }
            }
            (3, LEN) => url = w.string()?,
            (_, wire) => w.skip(wire)?,
        }
    }
    Ok((heads, children, url))
}

/// What one request may hold (ingest_limits.py): the encoder stops as soon as one is passed.
#[derive(Clone, Copy)]
struct Limits {
    records: usize,
    record_bytes: usize,
    messages: usize,
    /// distinct attribute keys (resource, scope and record attributes), and map entries of the rows (each row
    /// holds its resource's and scope's attributes besides its own), as limits.rs counts them
    keys: usize,
    entries: usize,
}

impl Limits {
    fn new(records: usize, record_bytes: usize, messages: usize, keys: usize, entries: usize) -> Self {
        Limits { records, record_bytes, messages, keys, entries }
    }
}

struct Encoder<'a> {
    block: Block,
    pairs: Vec<(&'a [u8], Val<'a>)>,
    scratch: String,
    limits: Limits,
    records: usize,
    count: Count,
    /// map entries the rows hold so far, and the distinct attribute keys seen (at most limits.keys)
    entries: usize,
    keys: HashSet<&'a [u8]>,
    /// the last record's attribute keys, in request order: records of one shape skip the set's lookups
    last_keys: Vec<&'a [u8]>,
    /// the positions of `last_keys` in key order (a stable sort): records of one shape skip the sort
    last_order: Vec<usize>,
}

impl<'a> Encoder<'a> {
    /// Count the distinct keys of `pairs` against the limit (Stop::Limit past it).
    fn note_keys(&mut self, pairs: &[(&'a [u8], Val<'a>)]) -> Result<(), Stop> {
        for (key, _) in pairs {
            if !self.keys.contains(key) {
                if self.keys.len() >= self.limits.keys {
                    return Err(Stop::Limit);
                }
                self.keys.insert(key);
            }
        }
        Ok(())
    }

    fn request(&mut self, body: &'a [u8]) -> Result<(), Stop> {
        self.count.one()?; // the request itself, as the scan counts it
        let mut w = Wire::new(body);
        while w.more() {
            match w.tag()? {
                (1, LEN) => self.resource_logs(w.bytes()?)?,
                (_, wire) => w.skip(wire)?,
            }
        }
        Ok(())
    }

    fn resource_logs(&mut self, seg: &'a [u8]) -> Result<(), Stop> {
        self.count.one()?;
        let (heads, scope_logs, url) = container(seg, self.limits.messages)?;
        self.pairs.clear();
        head(&heads, false, &mut self.pairs, &mut self.count)?;
        let pairs = std::mem::take(&mut self.pairs);
        let noted = self.note_keys(&pairs);
        self.pairs = pairs;
        noted?;
        // pcommon.Map.Get("service.name").AsString(): the first pair with that key
        let mut service = Vec::new();
        match self.pairs.iter().find(|(k, _)| *k == b"service.name") {
            Some((_, v)) => as_string_to(&mut service, v, &mut self.scratch),
            None => service.push(0),
        }
        let resource = MapValue::of(&mut self.pairs, &mut self.scratch);
        let mut url_value = Vec::new();
        string_to(&mut url_value, url);
        for sl in scope_logs {
            self.scope_logs(sl, &service, &url_value, &resource)?;
        }
        Ok(())
    }

    fn scope_logs(&mut self, seg: &'a [u8], service: &[u8], resource_url: &[u8], resource: &MapValue)
                  -> Result<(), Stop> {
        self.count.one()?;
        let (heads, records, url) = container(seg, self.limits.records)?;
        self.pairs.clear();
        let (name, version) = head(&heads, true, &mut self.pairs, &mut self.count)?;
        let pairs = std::mem::take(&mut self.pairs);
        let noted = self.note_keys(&pairs);
        self.pairs = pairs;
        noted?;
        let scope = MapValue::of(&mut self.pairs, &mut self.scratch);
        let mut fixed = [Vec::new(), Vec::new(), Vec::new()];
        string_to(&mut fixed[0], url);
        string_to(&mut fixed[1], name);
        string_to(&mut fixed[2], version);
        let head = (resource.count + scope.count) as usize;
        for record in records {
            self.record(record)?;
            self.entries += head;
            if self.entries > self.limits.entries {
                return Err(Stop::Limit);
            }
            let b = &mut self.block;
            b.data[SERVICE].extend_from_slice(service);
            b.data[RESOURCE_URL].extend_from_slice(resource_url);
            b.map(RESOURCE_ATTRS, resource);
            b.data[SCOPE_URL].extend_from_slice(&fixed[0]);
            b.data[SCOPE_NAME].extend_from_slice(&fixed[1]);
            b.data[SCOPE_VERSION].extend_from_slice(&fixed[2]);
            b.map(SCOPE_ATTRS, &scope);
        }
        Ok(())
    }

    /// A LogRecord's own columns.
    fn record(&mut self, seg: &'a [u8]) -> Result<(), Stop> {
        self.count.one()?;
        self.records += 1;
        if self.records > self.limits.records || seg.len() > self.limits.record_bytes {
            return Err(Stop::Limit);
        }
        let (mut time, mut observed, mut severity, mut flags) = (0u64, 0u64, 0u64, 0u32);
        let (mut severity_text, mut trace_id, mut span_id, mut event_name): (&[u8], &[u8], &[u8], &[u8]) =
            (b"", b"", b"", b"");
        let mut body = Val::Empty;
        self.pairs.clear();
        let mut w = Wire::new(seg);
        while w.more() {
            match w.tag()? {
                (1, FIXED64) => time = w.fixed64()?,
                (11, FIXED64) => observed = w.fixed64()?,
                (2, VARINT) => severity = w.varint()?,
                (3, LEN) => severity_text = w.string()?,
                (5, LEN) => {
                    let s = w.bytes()?;
                    self.count.one()?;
                    any_merge(&mut body, s, 4, &mut self.count)?
                }
                (6, LEN) => {
                    let s = w.bytes()?;
                    self.count.one()?;
                    self.pairs.push(key_value(s, 4, &mut self.count)?)
                }
                (8, FIXED32) => flags = w.fixed32()?,
                (9, LEN) => trace_id = w.bytes()?,
                (10, LEN) => span_id = w.bytes()?,
                (12, LEN) => event_name = w.string()?,
                (_, wire) => w.skip(wire)?, // dropped_attributes_count (7) included
            }
        }
        self.entries += self.pairs.len();
        if self.entries > self.limits.entries {
            return Err(Stop::Limit);
        }
        let same = self.pairs.len() == self.last_keys.len()
            && self.pairs.iter().zip(self.last_keys.iter()).all(|((k, _), last)| k == last);
        if !same {
            let pairs = std::mem::take(&mut self.pairs);
            let noted = self.note_keys(&pairs);
            self.last_keys.clear();
            self.last_keys.extend(pairs.iter().map(|(k, _)| *k));
            self.pairs = pairs;
            noted?;
            key_order(&self.last_keys, &mut self.last_order);
        }
        let b = &mut self.block;
        let t = if time != 0 { time } else { observed };
        b.data[TS].extend_from_slice(&(t as i64).to_le_bytes());
        b.hex_id(TRACE_ID, trace_id, 16).map_err(|_| Stop::Refused)?;
        b.hex_id(SPAN_ID, span_id, 8).map_err(|_| Stop::Refused)?;
        b.data[FLAGS].push((flags & 255) as u8);
        b.text(SEVERITY_TEXT, severity_text);
        b.data[SEVERITY_NUMBER].push((severity & 255) as u8);
        as_string_to(&mut b.data[BODY], &body, &mut self.scratch);
        // the keys are the last record's, in the same order: the same permutation sorts them
        for &i in self.last_order.iter() {
            let (k, v) = &self.pairs[i];
            string_to(&mut b.keys[LOG_ATTRS], k);
            as_string_to(&mut b.values[LOG_ATTRS], v, &mut self.scratch);
        }
        b.end_map(LOG_ATTRS, self.pairs.len() as u64);
        b.text(EVENT_NAME, event_name);
        b.rows += 1;
        Ok(())
    }
}

/// What encode() made of a request.
enum Encoded {
    Block(Block),
    Refused, // an id of another length
    Limit,   // a request limit passed
}

/// The request's rows as one Native block, stopping at the first limit passed.
fn encode(body: &[u8], limits: Limits) -> Result<Encoded, &'static str> {
    let mut block = POOL.lock().unwrap().pop().unwrap_or_default();
    block.clear();
    let mut encoder = Encoder { block, pairs: Vec::with_capacity(32), scratch: String::new(), limits, records: 0,
                                count: Count { n: 0, max: limits.messages }, entries: 0, keys: HashSet::new(),
                                last_keys: Vec::with_capacity(32), last_order: Vec::with_capacity(32) };
    let result = encoder.request(body);
    match result {
        Ok(()) => Ok(Encoded::Block(encoder.block)),
        Err(stop) => {
            give_back(encoder.block);
            match stop {
                Stop::Refused => Ok(Encoded::Refused),
                Stop::Limit => Ok(Encoded::Limit),
                Stop::Wire(message) => Err(message),
            }
        }
    }
}

/// Column buffers kept for the next request (at most [`POOL_SIZE`], each up to [`POOL_BYTES`], together up
/// to [`POOL_TOTAL`]): a fresh buffer of a block's size costs its page faults on every request (measured:
/// ~20% of the encoding). A [`NativeBlock`] holds its buffers until its request is written, so as many
/// blocks live as requests wait for their group: the pool keeps enough for the service's groups in flight.
static POOL: std::sync::Mutex<Vec<Block>> = std::sync::Mutex::new(Vec::new());
const POOL_SIZE: usize = 16;
const POOL_BYTES: usize = 64 << 20;
const POOL_TOTAL: usize = 128 << 20;

fn give_back(block: Block) {
    let size = block.capacity();
    if size <= POOL_BYTES {
        let mut pool = POOL.lock().unwrap();
        if pool.len() < POOL_SIZE && pool.iter().map(Block::capacity).sum::<usize>() + size <= POOL_TOTAL {
            pool.push(block);
        }
    }
}

/// A request's Native block kept in the core's column buffers ([`otlp_logs_block`]): written straight into
/// the group's file, never copied into a Python bytes object first (4 MB for 5,000 records: a copy and the
/// page faults of a fresh allocation per request). `len()` is its size in bytes; the buffers go back to the
/// pool when it is dropped.
#[pyclass(frozen)]
struct NativeBlock {
    block: std::sync::Mutex<Option<Block>>,
    #[pyo3(get)]
    rows: usize,
    size: usize,
}

#[pymethods]
impl NativeBlock {
    fn __len__(&self) -> usize {
        self.size
    }

    /// Write the block at the current offset of the open file descriptor `fd` (left open); again for a retry.
    fn write_to(&self, py: Python<'_>, fd: i32) -> PyResult<()> {
        use std::io::Write;
        use std::os::fd::FromRawFd;
        py.detach(|| {
            let guard = self.block.lock().unwrap();
            let Some(block) = guard.as_ref() else { return Ok(()) };
            // the caller's descriptor: borrowed, never closed here
            let file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
            let mut out = std::io::BufWriter::with_capacity(1 << 16, &*file);
            block.write_into(&mut out)?;
            out.flush()
        })
        .map_err(|e: std::io::Error| pyo3::exceptions::PyOSError::new_err(e.to_string()))
    }
}

impl Drop for NativeBlock {
    fn drop(&mut self) {
        if let Some(block) = self.block.get_mut().unwrap().take() {
            give_back(block);
        }
    }
}

/// otlp_logs_native's reading of a request with the block left in the core: a [`NativeBlock`], None (an id of
/// another length), "limit", or ValueError, as otlp_logs_native answers.
#[pyfunction]
#[pyo3(signature = (body, max_records=usize::MAX, max_record_bytes=usize::MAX, max_messages=usize::MAX,
                    max_keys=usize::MAX, max_entries=usize::MAX))]
fn otlp_logs_block<'py>(py: Python<'py>, body: &[u8], max_records: usize, max_record_bytes: usize,
                        max_messages: usize, max_keys: usize, max_entries: usize)
                        -> PyResult<Option<Bound<'py, PyAny>>> {
    let limits = Limits::new(max_records, max_record_bytes, max_messages, max_keys, max_entries);
    match py.detach(|| encode(body, limits)) {
        Ok(Encoded::Block(block)) => {
            let (rows, size) = (block.rows, block.size());
            let held = NativeBlock { block: std::sync::Mutex::new(Some(block)), rows, size };
            Ok(Some(Bound::new(py, held)?.into_any()))
        }
        other => refusal(py, other),
    }
}

/// The answer for an encoding that made no block.
fn refusal<'py>(py: Python<'py>, encoded: Result<Encoded, &'static str>) -> PyResult<Option<Bound<'py, PyAny>>> {
    match encoded {
        Ok(Encoded::Block(_)) | Ok(Encoded::Refused) => Ok(None),
        Ok(Encoded::Limit) => Ok(Some(pyo3::types::PyString::new(py, "limit").into_any())),
        Err(message) => Err(PyValueError::new_err(format!("malformed protobuf ExportLogsServiceRequest: {message}"))),
    }
}

/// (rows, the Native block) of a protobuf ExportLogsServiceRequest, or None when a trace or span id has
/// another length (pdata refuses it: the caller's Python path answers). ValueError when the body is not read
/// here (malformed, or a shape left to upb: see the module notes).
///
/// With limits (ingest_limits.py's: records, bytes of a record, messages, distinct attribute keys, map entries
/// of the rows, counted as `otlp_logs_scan` counts them), the string "limit" as soon as one is passed: the scan then names it (or, reading in order, finds
/// the body unreadable before it: a scope's records are listed before they are read). A request encoded within them
/// is one the scan passes, so the ingest path scans only requests this does not take (one pass, not two).
#[pyfunction]
#[pyo3(signature = (body, max_records=usize::MAX, max_record_bytes=usize::MAX, max_messages=usize::MAX,
                    max_keys=usize::MAX, max_entries=usize::MAX))]
fn otlp_logs_native<'py>(py: Python<'py>, body: &[u8], max_records: usize, max_record_bytes: usize,
                         max_messages: usize, max_keys: usize, max_entries: usize)
                         -> PyResult<Option<Bound<'py, PyAny>>> {
    let limits = Limits::new(max_records, max_record_bytes, max_messages, max_keys, max_entries);
    match py.detach(|| encode(body, limits)) {
        Ok(Encoded::Block(block)) => {
            let data = PyBytes::new_with(py, block.size(), |out| {
                block.write(out);
                Ok(())
            })?;
            let rows = block.rows;
            py.detach(|| give_back(block));
            Ok(Some((rows, data).into_pyobject(py)?.into_any()))
        }
        other => refusal(py, other),
    }
}

#[pymodule]
fn auditrail_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(otlp_logs_native, m)?)?;
    m.add_function(wrap_pyfunction!(otlp_logs_block, m)?)?;
    m.add_class::<NativeBlock>()?;
    m.add_function(wrap_pyfunction!(limits::otlp_logs_scan, m)?)?;
    m.add_function(wrap_pyfunction!(otlp_json::otlp_logs_json, m)?)?;
    m.add_function(wrap_pyfunction!(drain::link_events, m)?)?;
    m.add_function(wrap_pyfunction!(drain::sha256_text, m)?)?;
    m.add_function(wrap_pyfunction!(drain::encode_request, m)?)?;
    m.add_function(wrap_pyfunction!(drain::journal_payload, m)?)?;
    m.add_function(wrap_pyfunction!(spool::read_frames, m)?)?;
    m.add_function(wrap_pyfunction!(batch::drain_segment, m)?)?;
    m.add_class::<verify::ChainScan>()?;
    m.add_class::<sign::Ed25519Signer>()?;
    m.add("COLUMNS", COLUMNS.iter().map(|(n, _)| *n).collect::<Vec<_>>())?;
    Ok(())
}
