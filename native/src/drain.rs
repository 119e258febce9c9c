//! The SDK side's drain, natively: hash-chain links and OTLP LogRecords for batches of `AuditEvent`s.
//!
//! Both functions reproduce a Python function byte for byte and hand anything outside the plain case back
//! to it (a `fallback` callable), so the Python code stays the definition:
//!
//! * [`link_events`] is `pipeline.AuditLoggerProvider._link_events` over `chain.Chain.link`: the hashed
//!   object of chain.py (its keys in RFC 8785 order, absent values left out, the time as a decimal string,
//!   the seq a JSON integer), canonical JSON as RFC 8785 writes strings, SHA-256, lowercase hex; the four
//!   chain attributes set in `event.extra` in Chain.link's order.
//! * [`encode_request`] is `exporters.otlp_proto.EventEncoder.encode`: the request, `0x12 len LogRecord` per
//!   event as `_record` writes it, the fields in the same order, values encoded as that encoder encodes them.
//! * [`journal_payload`] is spool_file's journal frame (orjson of `_journal_entries`).
//!
//! Plain means: the hashed fields are str or None, the time an int; for the encoder, extra attributes of str,
//! int (int64), bool, float, bytes or None under non-empty str keys. An event outside that goes to `fallback`.
//!
//! The fields of an event that a DiskSpool stored come from its record (`AuditEvent.spooled`, the bytes
//! disk_spool.records.encode_event wrote), parsed and hashed or encoded with the GIL released: the drain's Python
//! part per event is then a few attribute and dict operations, and the app's threads run meanwhile.
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use sha2::{Digest, Sha256};

use crate::varint_to as varint;


pub(crate) const SAFE_INT: u64 = (1 << 53) - 1;

/// An optional str field of an event: Ok(None) for None, Err(()) for anything but a str (or a str that is
/// not valid UTF-8: lone surrogates, which the Python path refuses in its own words).
fn opt_str<'a>(value: &'a Bound<'_, PyAny>) -> Result<Option<&'a str>, ()> {
    if value.is_none() {
        return Ok(None);
    }
    value.cast::<PyString>().map_err(|_| ())?.to_str().map(Some).map_err(|_| ())
}

/// What RFC 8785 writes for each byte of a string: 0 itself, b'u' \u00xx, else a backslash and that byte.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x0c] = b'f';
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// RFC 8785 (ECMAScript JSON.stringify) for a string: `"` `\` and the C0 controls escaped (short forms where
/// JSON has them, else \u00xx in lowercase hex), everything else as its UTF-8.
pub(crate) fn json_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(text.len() + 2);
    out.push(b'"');
    let mut rest = text.as_bytes();
    while let Some(at) = rest.iter().position(|&b| ESCAPE[b as usize] != 0) {
        out.extend_from_slice(&rest[..at]);
        let b = rest[at];
        match ESCAPE[b as usize] {
            b'u' => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]),
            short => out.extend_from_slice(&[b'\\', short]),
        }
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

pub(crate) struct ChainState<'py> {
    pub(crate) chain: Bound<'py, PyAny>,
    pub(crate) id: Bound<'py, PyString>,
    pub(crate) seq: u64,
    pub(crate) head: Bound<'py, PyString>,
}

impl<'py> ChainState<'py> {
    pub(crate) fn load(chain: Bound<'py, PyAny>) -> PyResult<Self> {
        let (id, seq, head): (Bound<'py, PyString>, u64, Bound<'py, PyString>) =
            chain.call_method0(intern!(chain.py(), "state"))?.extract()?;
        Ok(ChainState { chain, id, seq, head })
    }

    pub(crate) fn store(&self) -> PyResult<()> {
        self.chain.call_method1(intern!(self.chain.py(), "set_head"), (self.seq, &self.head))?;
        Ok(())
    }

    /// Give `event` the next seq with hex `digest`, as Chain.link does: the four chain attributes set in
    /// its extra (`extra`, or a new dict when it has none), in Chain.link's order; the chain moves on.
    fn link(&mut self, event: &Bound<'py, PyAny>, extra: Option<Bound<'py, PyDict>>, digest: &[u8; 64]) -> PyResult<()> {
        let py = event.py();
        let keys = chain_keys(py);
        let digest = PyString::new(py, std::str::from_utf8(digest).expect("hex is ASCII"));
        let extra = match extra {
            Some(extra) => extra,
            None => {
                let extra = PyDict::new(py);
                event.setattr(intern!(py, "extra"), &extra)?;
                extra
            }
        };
        let seq = self.seq + 1;
        extra.set_item(keys[0], &self.id)?;
        extra.set_item(keys[1], seq)?;
        extra.set_item(keys[2], &self.head)?;
        extra.set_item(keys[3], &digest)?;
        self.seq = seq;
        self.head = digest;
        Ok(())
    }
}

/// The index in `states` of `tenant`'s chain, its state loaded (`chain_for(tenant)`) on the tenant's first event.
pub(crate) fn chain_index<'py>(
    states: &mut Vec<(Option<String>, ChainState<'py>)>,
    chain_for: &Bound<'py, PyAny>,
    tenant: Option<&str>,
) -> PyResult<usize> {
    if let Some(index) = states.iter().position(|(t, _)| t.as_deref() == tenant) {
        return Ok(index);
    }
    let chain = chain_for.call1((tenant,))?;
    states.push((tenant.map(str::to_owned), ChainState::load(chain)?));
    Ok(states.len() - 1)
}

/// Each chain's (id, seq, head), to link with the GIL released.
pub(crate) fn heads_of(states: &[(Option<String>, ChainState<'_>)]) -> PyResult<Vec<(String, u64, String)>> {
    states.iter().map(|(_, s)| Ok((s.id.to_str()?.to_owned(), s.seq, s.head.to_str()?.to_owned()))).collect()
}

/// The chain attributes, in Chain.link's order.
fn chain_keys(py: Python<'_>) -> [&Bound<'_, PyString>; 4] {
    [
        intern!(py, "audit.chain.id"),
        intern!(py, "audit.chain.seq"),
        intern!(py, "audit.chain.prev_hash"),
        intern!(py, "audit.chain.hash"),
    ]
}

/// AuditEvent's fields in disk_spool.records.encode_event's order (after its format number), as text or None.
const SLOTS: [&str; 13] = [
    "event_type", "tenant", "actor", "actor_type", "payload", "source_ip", "reason", "outcome", "risk",
    "impersonator", "impersonation_id", "approval_id", "event_id",
];
const EVENT_TYPE: usize = 0;
const TENANT: usize = 1;
const ACTOR: usize = 2;
const ACTOR_TYPE: usize = 3;
const PAYLOAD: usize = 4;
const SOURCE_IP: usize = 5;
const REASON: usize = 6;
const OUTCOME: usize = 7;
const RISK: usize = 8;
const IMPERSONATOR: usize = 9;
const IMPERSONATION: usize = 10;
const APPROVAL: usize = 11;
const EVENT_ID: usize = 12;

/// An event's fields, read from the AuditEvent or parsed from its spool record (`AuditEvent.spooled`, the
/// bytes encode_event wrote: no attribute reads under the GIL). `text` None: the value was None.
pub(crate) struct Ev {
    text: [Option<String>; 13],
    time: String,       // time_unix_nano as a decimal string (the hashed form)
    time_u64: Option<u64>, // the same when it fits a fixed64 (the encoder needs it)
    trace_id: Option<u128>,
    span_id: Option<u64>,
    trace_flags: Option<u32>,
}

impl Ev {
    fn get(&self, i: usize) -> Option<&str> {
        self.text[i].as_deref()
    }

    /// From the object; Err(()) when a field is not a str or None, or the time not an int.
    fn from_object<'py>(event: &Bound<'py, PyAny>) -> PyResult<Result<Ev, ()>> {
        let py = event.py();
        let mut text: [Option<String>; 13] = Default::default();
        for (i, slot) in SLOTS.iter().enumerate() {
            let value = event.getattr(PyString::intern(py, slot))?;
            match opt_str(&value) {
                Ok(value) => text[i] = value.map(str::to_owned),
                Err(()) => return Ok(Err(())),
            }
        }
        let time = event.getattr(intern!(py, "time_unix_nano"))?;
        let Ok(time) = time.cast::<PyInt>() else { return Ok(Err(())) };
        let number = |name: &Bound<'py, PyString>| -> PyResult<Bound<'py, PyAny>> { event.getattr(name) };
        let trace = number(intern!(py, "trace_id"))?;
        Ok(Ok(Ev {
            text,
            time: time.str()?.to_str()?.to_owned(),
            time_u64: time.extract::<u64>().ok(),
            trace_id: trace.extract::<u64>().map(u128::from).or_else(|_| trace.extract::<u128>()).ok(),
            span_id: number(intern!(py, "span_id"))?.extract::<u64>().ok(),
            trace_flags: number(intern!(py, "trace_flags"))?.extract::<u32>().ok(),
        }))
    }

    /// From a spool record (format 1: [1, 13 fields, time, trace, span, flags, extra]); Err(()) when it is not
    /// one or a field is not plain. The record's own extra is not read (the object's is current).
    pub(crate) fn from_spooled(record: &[u8]) -> Result<Ev, ()> {
        Ok(Ev::from_fields(Spooled::parse(record)?.0))
    }

    /// The tenant (the chain an event belongs to).
    pub(crate) fn tenant(&self) -> Option<&str> {
        self.get(TENANT)
    }

    /// From a record's parsed fields.
    pub(crate) fn from_fields(fields: Spooled) -> Ev {
        let (time, time_u64) = match fields.time {
            Number::U(n) => (n.to_string(), Some(n)),
            Number::I(n) => (n.to_string(), None),
        };
        Ev {
            text: fields.text,
            time,
            time_u64,
            trace_id: Some(fields.trace_id),
            span_id: Some(fields.span_id),
            trace_flags: Some(fields.trace_flags),
        }
    }
}

/// The fields of a spool record (disk_spool.records.encode_event's format 1) up to its extra attributes.
pub(crate) struct Spooled {
    pub(crate) text: [Option<String>; 13],
    pub(crate) time: Number,
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    pub(crate) trace_flags: u32,
}

impl Spooled {
    /// Parse `record` up to its extra (format 1: [1, 13 fields, time, trace, span, flags, extra]); returns the
    /// fields and the parser, at the extra. Err(()) when it is not one or a field is not plain.
    pub(crate) fn parse(record: &[u8]) -> Result<(Spooled, Parser<'_>), ()> {
        let mut p = Parser { data: record, at: 0 };
        p.expect(b'[')?;
        if p.number()? != Number::U(1) {
            return Err(());
        }
        let mut text: [Option<String>; 13] = Default::default();
        for slot in text.iter_mut() {
            p.expect(b',')?;
            *slot = p.text_or_null()?;
        }
        p.expect(b',')?;
        let time = p.number()?;
        let mut id = || -> Result<u128, ()> {
            p.expect(b',')?;
            match p.peek()? {
                b'"' => u128::from_str_radix(&p.text_or_null()?.ok_or(())?, 16).map_err(|_| ()),
                _ => match p.number()? {
                    Number::U(n) => Ok(u128::from(n)),
                    Number::I(_) => Err(()),
                },
            }
        };
        let trace_id = id()?;
        let span_id = u64::try_from(id()?).map_err(|_| ())?;
        p.expect(b',')?;
        let Number::U(flags) = p.number()? else { return Err(()) };
        p.expect(b',')?;
        let trace_flags = u32::try_from(flags).map_err(|_| ())?;
        Ok((Spooled { text, time, trace_id, span_id, trace_flags }, p))
    }
}

#[derive(PartialEq)]
pub(crate) enum Number {
    U(u64),
    I(i64), // negative
}

/// Just enough JSON for spool records as orjson writes them (no whitespace; strings with escapes).
pub(crate) struct Parser<'a> {
    data: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    /// What is left to parse.
    pub(crate) fn rest(&self) -> &[u8] {
        &self.data[self.at..]
    }

    /// A record's extra attributes: null, or an object of plain values (str, int64, float, bool, null) in the
    /// record's order, then the closing `]` of the record. Err(()) for anything else (nested values, ints out
    /// of range): the caller hands such a record to the Python path.
    pub(crate) fn flat_extra(&mut self) -> Result<Option<Vec<(String, XVal)>>, ()> {
        let out = if self.data[self.at..].starts_with(b"null") {
            self.at += 4;
            None
        } else {
            self.expect(b'{')?;
            let mut out = Vec::new();
            if self.peek()? == b'}' {
                self.at += 1;
            } else {
                loop {
                    let key = self.text_or_null()?.ok_or(())?;
                    self.expect(b':')?;
                    let value = match self.peek()? {
                        b'"' => XVal::Str(self.text_or_null()?.ok_or(())?),
                        b't' if self.data[self.at..].starts_with(b"true") => {
                            self.at += 4;
                            XVal::Bool(true)
                        }
                        b'f' if self.data[self.at..].starts_with(b"false") => {
                            self.at += 5;
                            XVal::Bool(false)
                        }
                        b'n' if self.data[self.at..].starts_with(b"null") => {
                            self.at += 4;
                            XVal::Null
                        }
                        _ => self.json_number()?,
                    };
                    out.push((key, value));
                    match self.peek()? {
                        b',' => self.at += 1,
                        b'}' => {
                            self.at += 1;
                            break;
                        }
                        _ => return Err(()),
                    }
                }
            }
            Some(out)
        };
        self.expect(b']')?;
        if self.at != self.data.len() {
            return Err(());
        }
        Ok(out)
    }

    /// A JSON number: an int64, or a float when it has a fraction or an exponent.
    fn json_number(&mut self) -> Result<XVal, ()> {
        let start = self.at;
        let mut float = false;
        while let Some(&b) = self.data.get(self.at) {
            match b {
                b'0'..=b'9' | b'-' | b'+' => {}
                b'.' | b'e' | b'E' => float = true,
                _ => break,
            }
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.data[start..self.at]).map_err(|_| ())?;
        if float {
            text.parse::<f64>().map(XVal::Float).map_err(|_| ())
        } else {
            text.parse::<i64>().map(XVal::Int).map_err(|_| ())
        }
    }

    pub(crate) fn peek(&self) -> Result<u8, ()> {
        self.data.get(self.at).copied().ok_or(())
    }

    pub(crate) fn expect(&mut self, byte: u8) -> Result<(), ()> {
        if self.peek()? != byte {
            return Err(());
        }
        self.at += 1;
        Ok(())
    }

    /// An integer (no fraction or exponent: those are not plain here).
    pub(crate) fn number(&mut self) -> Result<Number, ()> {
        let negative = self.peek()? == b'-';
        if negative {
            self.at += 1;
        }
        let start = self.at;
        while self.data.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        let digits = std::str::from_utf8(&self.data[start..self.at]).map_err(|_| ())?;
        if digits.is_empty() || matches!(self.data.get(self.at), Some(b'.' | b'e' | b'E')) {
            return Err(());
        }
        let value: u64 = digits.parse().map_err(|_| ())?;
        if negative {
            if value == 0 {
                return Ok(Number::U(0));
            }
            return i64::try_from(value).map(|v| Number::I(-v)).or(if value == 1 << 63 { Ok(Number::I(i64::MIN)) } else { Err(()) });
        }
        Ok(Number::U(value))
    }

    pub(crate) fn text_or_null(&mut self) -> Result<Option<String>, ()> {
        if self.data[self.at..].starts_with(b"null") {
            self.at += 4;
            return Ok(None);
        }
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let rest = &self.data[self.at..];
            let stop = rest.iter().position(|&b| b == b'"' || b == b'\\').ok_or(())?;
            out.push_str(std::str::from_utf8(&rest[..stop]).map_err(|_| ())?);
            self.at += stop + 1;
            if rest[stop] == b'"' {
                return Ok(Some(out));
            }
            let escape = self.peek()?;
            self.at += 1;
            match escape {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let unit = self.hex4()?;
                    let code = if (0xd800..0xdc00).contains(&unit) {
                        if !self.data[self.at..].starts_with(b"\\u") {
                            return Err(()); // a lone surrogate: no str holds it
                        }
                        self.at += 2;
                        let low = self.hex4()?;
                        if !(0xdc00..0xe000).contains(&low) {
                            return Err(());
                        }
                        0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
                    } else {
                        unit
                    };
                    out.push(char::from_u32(code).ok_or(())?);
                }
                _ => return Err(()),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, ()> {
        let digits = self.data.get(self.at..self.at + 4).ok_or(())?;
        self.at += 4;
        u32::from_str_radix(std::str::from_utf8(digits).map_err(|_| ())?, 16).map_err(|_| ())
    }
}

/// The hashed fields of one event (chain.py's `HASHED_FIELDS` but the chain's own): an `Ev` of the drain, or
/// a stored row read back by the store's verification (verify.rs). Indexes are `SLOTS`'.
pub(crate) trait HashedFields {
    /// The field at `SLOTS` index `i`, None when absent.
    fn field(&self, i: usize) -> Option<&str>;
    /// time_unix_nano as a decimal string.
    fn time(&self) -> &str;
}

impl HashedFields for Ev {
    fn field(&self, i: usize) -> Option<&str> {
        self.get(i)
    }
    fn time(&self) -> &str {
        &self.time
    }
}

/// chain.py's hashed object of `ev` at position `seq` after `prev`, as canonical JSON in `out`: its keys in
/// RFC 8785 order, None values left out, the seq an integer, the time a string.
fn hashed_json(out: &mut Vec<u8>, ev: &impl HashedFields, chain_id: &str, prev: &str, seq: u64) {
    out.clear();
    out.push(b'{');
    let mut first = true;
    let mut field = |out: &mut Vec<u8>, key: &str, value: Option<&str>| {
        if let Some(value) = value {
            if !first {
                out.push(b',');
            }
            first = false;
            json_string(out, key);
            out.push(b':');
            json_string(out, value);
        }
    };
    field(out, "audit.actor.type", ev.field(ACTOR_TYPE));
    field(out, "audit.approval.id", ev.field(APPROVAL));
    field(out, "audit.chain.id", Some(chain_id));
    field(out, "audit.chain.prev_hash", Some(prev));
    out.extend_from_slice(b",\"audit.chain.seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    for (key, index) in [
        ("audit.event_id", EVENT_ID), ("audit.impersonation.id", IMPERSONATION),
        ("audit.impersonator.id", IMPERSONATOR), ("audit.outcome", OUTCOME), ("audit.payload", PAYLOAD),
        ("audit.reason", REASON), ("audit.risk", RISK), ("audit.tenant_id", TENANT),
        ("client.address", SOURCE_IP), ("enduser.id", ACTOR), ("event_name", EVENT_TYPE),
    ] {
        if let Some(value) = ev.field(index) {
            out.push(b',');
            json_string(out, key);
            out.push(b':');
            json_string(out, value);
        }
    }
    out.extend_from_slice(b",\"time_unix_nano\":");
    json_string(out, ev.time());
    out.push(b'}');
}

/// The hex SHA-256 of `ev`'s hashed object at `seq` after `prev`.
pub(crate) fn link_digest(json: &mut Vec<u8>, ev: &impl HashedFields, chain_id: &str, prev: &str, seq: u64) -> [u8; 64] {
    hashed_json(json, ev, chain_id, prev, seq);
    sha256_hex(json)
}

/// The SHA-256 of `data` in lowercase hex (hashlib's hexdigest).
pub(crate) fn sha256_hex(data: &[u8]) -> [u8; 64] {
    let digest = Sha256::digest(data);
    let mut hex = [0u8; 64];
    for (i, b) in digest.iter().enumerate() {
        hex[2 * i] = b"0123456789abcdef"[(b >> 4) as usize];
        hex[2 * i + 1] = b"0123456789abcdef"[(b & 15) as usize];
    }
    hex
}

/// expressions.sha256 of a str: the hex SHA-256 of its UTF-8. A lone surrogate raises UnicodeEncodeError, as
/// str.encode("utf-8") does; like hashlib, a text of 2 KiB or more is hashed without the GIL.
#[pyfunction]
pub fn sha256_text<'py>(py: Python<'py>, text: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyString>> {
    let bytes = text.to_str()?.as_bytes();
    let hex = if bytes.len() < 2048 { sha256_hex(bytes) } else { py.detach(|| sha256_hex(bytes)) };
    Ok(PyString::new(py, std::str::from_utf8(&hex).expect("hex is ASCII")))
}

/// One event of a link_events batch.
enum Link<'a> {
    Skip,               // linked already
    Spooled(&'a [u8]),  // its spool record: parsed without the GIL
    Plain(Ev),
    Fallback,           // the Python linker's
}

/// Link `events` in order into the chains of their tenants: `chain_for(tenant)` gives the `Chain` (made on
/// the tenant's first event), `fallback(chain, event)` links an event that is not plain (True when it did).
/// Events that carry `audit.chain.hash` already are left as they are. Returns {tenant: events linked}.
/// Call it as the Python linker is called (under the append lock): the chains' state is read once
/// (`Chain.state`) and written back (`Chain.set_head`) before any fallback and at the end. When every event
/// is plain, the fields are read from their spool records and hashed without the GIL.
#[pyfunction]
pub fn link_events<'py>(
    py: Python<'py>,
    events: &Bound<'py, PyList>,
    chain_for: &Bound<'py, PyAny>,
    fallback: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let keys = chain_keys(py);
    let extra_name = intern!(py, "extra");
    let spooled_name = intern!(py, "spooled");
    // 1. (GIL) what each event is; the records' bytes stay borrowed from their objects, which `events` holds.
    let mut extras: Vec<Option<Bound<'py, PyDict>>> = Vec::with_capacity(events.len());
    let mut spooled: Vec<Option<Bound<'py, PyBytes>>> = Vec::with_capacity(events.len());
    let mut items: Vec<Link<'_>> = Vec::with_capacity(events.len());
    for event in events.iter() {
        let (item, extra, record) = 'classify: {
            let extra = event.getattr(extra_name)?;
            let extra = if extra.is_none() {
                None
            } else {
                let Ok(extra) = extra.cast_into::<PyDict>() else { break 'classify (Link::Fallback, None, None) };
                if extra.contains(keys[3])? {
                    break 'classify (Link::Skip, None, None);
                }
                Some(extra)
            };
            match event.getattr(spooled_name)?.cast_into::<PyBytes>() {
                Ok(record) => (Link::Spooled(&[]), extra, Some(record)), // its bytes: below, once held
                Err(_) => (Ev::from_object(&event)?.map(Link::Plain).unwrap_or(Link::Fallback), extra, None),
            }
        };
        items.push(item);
        extras.push(extra);
        spooled.push(record);
    }
    for (item, record) in items.iter_mut().zip(&spooled) {
        if let (Link::Spooled(bytes), Some(record)) = (item, record) {
            *bytes = record.as_bytes();
        }
    }
    let mut any_fallback = items.iter().any(|item| matches!(item, Link::Fallback));
    // 2. (GIL) the chain of each event's tenant (read from the object: its record says the same)
    let tenant_name = intern!(py, "tenant");
    let mut states: Vec<(Option<String>, ChainState<'py>)> = Vec::new();
    let mut chain_of = vec![usize::MAX; items.len()];
    let counts = PyDict::new(py);
    let mut json = Vec::with_capacity(1024);
    let result = (|| -> PyResult<()> {
        if !any_fallback {
            for (i, item) in items.iter().enumerate() {
                if matches!(item, Link::Skip) {
                    continue;
                }
                let tenant = events.get_item(i)?.getattr(tenant_name)?;
                let Ok(tenant) = opt_str(&tenant) else {
                    any_fallback = true;
                    break;
                };
                chain_of[i] = chain_index(&mut states, chain_for, tenant)?;
            }
        }
        let mut heads = heads_of(&states)?;
        // 3. (no GIL) parse the spool records; when every event is plain, hash chain by chain in event order
        let (items, digests): (Vec<Link<'_>>, Option<Vec<[u8; 64]>>) = py.detach(|| {
            let items: Vec<Link<'_>> = items
                .into_iter()
                .map(|item| match item {
                    Link::Spooled(record) => Ev::from_spooled(record).map(Link::Plain).unwrap_or(Link::Fallback),
                    other => other,
                })
                .collect();
            if any_fallback || items.iter().any(|item| matches!(item, Link::Fallback)) {
                return (items, None);
            }
            let mut digests = Vec::with_capacity(items.len());
            for (item, &index) in items.iter().zip(&chain_of) {
                let Link::Plain(ev) = item else {
                    digests.push([0u8; 64]);
                    continue;
                };
                let (id, seq, head) = &mut heads[index];
                if *seq >= SAFE_INT {
                    return (items, None);
                }
                *seq += 1;
                let digest = link_digest(&mut json, ev, id, head, *seq);
                head.clear();
                head.push_str(std::str::from_utf8(&digest).expect("hex is ASCII"));
                digests.push(digest);
            }
            (items, Some(digests))
        });
        {
            if let Some(digests) = digests {
                // 5. (GIL) the chain attributes, in Chain.link's order
                let mut linked = vec![0usize; states.len()];
                for (i, (item, &index)) in items.iter().zip(&chain_of).enumerate() {
                    let Link::Plain(_) = item else { continue };
                    states[index].1.link(&events.get_item(i)?, extras[i].take(), &digests[i])?;
                    linked[index] += 1;
                }
                for ((tenant, _), n) in states.iter().zip(linked) {
                    if n > 0 {
                        counts.set_item(tenant.as_deref(), n)?;
                    }
                }
                return Ok(());
            }
        }
        // Some event is not plain (or a chain reached 2**53): one by one, with the GIL, in order.
        link_in_order(py, events, &items, chain_for, fallback, &counts, &mut json)
    })();
    for (_, state) in &states {
        state.store()?;
    }
    result.map(|_| counts)
}

/// link_events for a batch with events the Python linker must take: in order, each chain's state read
/// from its Chain before and written back around every fallback.
fn link_in_order<'py>(
    py: Python<'py>,
    events: &Bound<'py, PyList>,
    items: &[Link<'_>],
    chain_for: &Bound<'py, PyAny>,
    fallback: &Bound<'py, PyAny>,
    counts: &Bound<'py, PyDict>,
    json: &mut Vec<u8>,
) -> PyResult<()> {
    let extra_name = intern!(py, "extra");
    let tenant_name = intern!(py, "tenant");
    for (i, item) in items.iter().enumerate() {
        if matches!(item, Link::Skip) {
            continue;
        }
        let event = events.get_item(i)?;
        let tenant = event.getattr(tenant_name)?;
        let mut state = ChainState::load(chain_for.call1((&tenant,))?)?;
        let linked = match item {
            Link::Plain(ev) if state.seq < SAFE_INT => {
                let digest = link_digest(json, ev, state.id.to_str()?, state.head.to_str()?, state.seq + 1);
                let extra = event.getattr(extra_name)?;
                let extra = if extra.is_none() { None } else { Some(extra.cast_into::<PyDict>()?) };
                state.link(&event, extra, &digest)?;
                state.store()?;
                true
            }
            _ => fallback.call1((&state.chain, &event))?.is_truthy()?,
        };
        if linked {
            let n: usize = counts.get_item(&tenant)?.map(|n| n.extract()).transpose()?.unwrap_or(0);
            counts.set_item(&tenant, n + 1)?;
        }
    }
    Ok(())
}

// --- OTLP LogRecords -------------------------------------------------------------------------------------


/// A length-delimited field: tag, length, payload.
fn field(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    out.push(tag);
    varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

pub(crate) fn varint_len(v: u64) -> usize {
    ((64 - (v | 1).leading_zeros() as usize) + 6) / 7
}

/// `0x32 len KeyValue{0x0a key, 0x12 AnyValue{0x0a text}}`: `_string_attribute` (the key always written).
fn string_attribute(out: &mut Vec<u8>, key: &[u8], text: &[u8]) {
    let any = 1 + varint_len(text.len() as u64) + text.len();
    let kv = 1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(any as u64) + any;
    out.push(0x32);
    varint(out, kv as u64);
    field(out, 0x0a, key);
    out.push(0x12);
    varint(out, any as u64);
    field(out, 0x0a, text);
}

/// A plain extra attribute value (`encode_any_value`'s kinds but arrays and maps).
pub(crate) enum XVal {
    Str(String),
    Int(i64),
    Bool(bool),
    Float(f64),
    Bytes(Vec<u8>),
    Null,
}

/// An event's extra attributes in dict order; Err(()) when one is not plain or its key not a non-empty str
/// (`_key_value` leaves an empty key out where `_string_attribute` writes it: the Python encoder decides).
fn extras_of(extra: &Bound<'_, PyAny>) -> PyResult<Result<Vec<(String, XVal)>, ()>> {
    if extra.is_none() {
        return Ok(Ok(Vec::new()));
    }
    let Ok(extra) = extra.cast::<PyDict>() else { return Ok(Err(())) };
    let mut out = Vec::with_capacity(extra.len());
    for (key, value) in extra.iter() {
        let Ok(Some(key)) = opt_str(&key) else { return Ok(Err(())) };
        if key.is_empty() {
            return Ok(Err(()));
        }
        let value = if let Ok(flag) = value.cast::<PyBool>() {
            XVal::Bool(flag.is_true())
        } else if let Ok(text) = value.cast::<PyString>() {
            let Ok(text) = text.to_str() else { return Ok(Err(())) };
            XVal::Str(text.to_owned())
        } else if let Ok(number) = value.cast::<PyInt>() {
            let Ok(number) = number.extract::<i64>() else { return Ok(Err(())) };
            XVal::Int(number)
        } else if let Ok(number) = value.cast::<PyFloat>() {
            XVal::Float(number.value())
        } else if let Ok(raw) = value.cast::<PyBytes>() {
            XVal::Bytes(raw.as_bytes().to_vec())
        } else if value.is_none() {
            XVal::Null
        } else {
            return Ok(Err(()));
        };
        out.push((key.to_owned(), value));
    }
    Ok(Ok(out))
}

/// `0x32 len KeyValue{0x0a key, 0x12 AnyValue}` for a non-str value (`_key_value`, key non-empty).
fn value_attribute(out: &mut Vec<u8>, scratch: &mut Vec<u8>, key: &[u8], value: &XVal) {
    scratch.clear();
    match value {
        XVal::Str(text) => field(scratch, 0x0a, text.as_bytes()),
        XVal::Bool(flag) => scratch.extend_from_slice(if *flag { b"\x10\x01" } else { b"\x10\x00" }),
        XVal::Int(number) => {
            scratch.push(0x18);
            varint(scratch, *number as u64);
        }
        XVal::Float(number) => {
            scratch.push(0x21);
            scratch.extend_from_slice(&number.to_le_bytes());
        }
        XVal::Bytes(raw) => field(scratch, 0x3a, raw),
        XVal::Null => {}
    }
    let kv = 1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(scratch.len() as u64) + scratch.len();
    out.push(0x32);
    varint(out, kv as u64);
    field(out, 0x0a, key);
    field(out, 0x12, scratch);
}

/// A str-or-None attribute that is always written (`_attribute`): None as an empty AnyValue.
fn text_attribute(out: &mut Vec<u8>, scratch: &mut Vec<u8>, key: &str, value: Option<&str>) {
    match value {
        Some(text) => string_attribute(out, key.as_bytes(), text.as_bytes()),
        None => value_attribute(out, scratch, key.as_bytes(), &XVal::Null),
    }
}

const WHO: [(usize, &str); 7] = [
    (ACTOR, "enduser.id"), (TENANT, "audit.tenant_id"), (SOURCE_IP, "client.address"), (REASON, "audit.reason"),
    (IMPERSONATOR, "audit.impersonator.id"), (IMPERSONATION, "audit.impersonation.id"), (APPROVAL, "audit.approval.id"),
];

/// One LogRecord's fields (without the 0x12 and length) as EventEncoder._record writes them, or None when
/// the event is not plain for the encoder (no event id or type, a time or id out of range).
pub(crate) fn record(ev: &Ev, extras: &[(String, XVal)], rec: &mut Vec<u8>, scratch: &mut Vec<u8>) -> Option<()> {
    rec.clear();
    let (Some(name), Some(event_id), Some(time)) = (ev.get(EVENT_TYPE), ev.get(EVENT_ID), ev.time_u64) else {
        return None;
    };
    let (Some(flags), Some(trace), Some(span)) = (ev.trace_flags, ev.trace_id, ev.span_id) else { return None };
    if time != 0 {
        rec.push(0x09);
        rec.extend_from_slice(&time.to_le_bytes());
    }
    let (number, severity) = if matches!(ev.get(RISK), Some("high" | "critical")) { (13, "WARN") } else { (9, "INFO") };
    rec.push(0x10);
    varint(rec, number);
    field(rec, 0x1a, severity.as_bytes());
    // AuditEvent.body(): "{event_type} by {who} on tenant {tenant or '?'}: {outcome}"
    scratch.clear();
    scratch.extend_from_slice(name.as_bytes());
    scratch.extend_from_slice(b" by ");
    scratch.extend_from_slice(ev.get(ACTOR).filter(|a| !a.is_empty()).unwrap_or("unknown").as_bytes());
    if let Some(by) = ev.get(IMPERSONATOR).filter(|i| !i.is_empty()) {
        scratch.extend_from_slice(b" (impersonated by ");
        scratch.extend_from_slice(by.as_bytes());
        scratch.push(b')');
    }
    scratch.extend_from_slice(b" on tenant ");
    scratch.extend_from_slice(ev.get(TENANT).filter(|t| !t.is_empty()).unwrap_or("?").as_bytes());
    scratch.extend_from_slice(b": ");
    scratch.extend_from_slice(ev.get(OUTCOME).unwrap_or("None").as_bytes());
    rec.push(0x2a);
    varint(rec, (1 + varint_len(scratch.len() as u64) + scratch.len()) as u64);
    field(rec, 0x0a, scratch);
    string_attribute(rec, b"audit.event_id", event_id.as_bytes());
    for (index, key) in WHO {
        if let Some(value) = ev.get(index) {
            string_attribute(rec, key.as_bytes(), value.as_bytes());
        }
    }
    for (index, key) in [(ACTOR_TYPE, "audit.actor.type"), (PAYLOAD, "audit.payload"), (OUTCOME, "audit.outcome"), (RISK, "audit.risk")] {
        text_attribute(rec, scratch, key, ev.get(index));
    }
    for (key, value) in extras {
        match value {
            XVal::Str(text) => string_attribute(rec, key.as_bytes(), text.as_bytes()),
            other => value_attribute(rec, scratch, key.as_bytes(), other),
        }
    }
    if flags != 0 {
        rec.push(0x45);
        rec.extend_from_slice(&flags.to_le_bytes());
    }
    if trace != 0 {
        rec.extend_from_slice(b"\x4a\x10");
        rec.extend_from_slice(&trace.to_be_bytes());
    }
    if span != 0 {
        rec.extend_from_slice(b"\x52\x08");
        rec.extend_from_slice(&span.to_be_bytes());
    }
    if time != 0 {
        rec.push(0x59);
        rec.extend_from_slice(&time.to_le_bytes());
    }
    if !name.is_empty() {
        field(rec, 0x62, name.as_bytes());
    }
    Some(())
}

/// One event of an encode_request batch.
enum Rec<'a> {
    Spooled(&'a [u8], Vec<(String, XVal)>),
    Plain(Ev, Vec<(String, XVal)>),
    Missing, // the Python encoder writes it
}

thread_local! {
    /// The records of the last batch: kept, so a batch of ~2 MB does not fault in fresh pages each time.
    static RECORDS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `EventEncoder.encode(events)`: the serialized ExportLogsServiceRequest with one ResourceLogs and one
/// ScopeLogs, from the encoder's pre-encoded resource and scope fields (`resource_field` = ResourceLogs
/// field 1 with its tag and length, `scope_field` = ScopeLogs field 1, the schema fields or b""), the
/// records `0x12 len LogRecord` in order; `fallback(event)` gives the record bytes of an event that is not
/// plain (EventEncoder._record: its errors are the errors). b"" for no events. An event's fields come from
/// its spool record when it has one (`spooled`: parsed and written without the GIL), its extra attributes
/// (the chain's) from the object.
#[pyfunction]
pub fn encode_request<'py>(
    py: Python<'py>,
    events: &Bound<'py, PyList>,
    fallback: &Bound<'py, PyAny>,
    resource_field: &[u8],
    resource_schema: &[u8],
    scope_field: &[u8],
    scope_schema: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    if events.is_empty() {
        return Ok(PyBytes::new(py, b""));
    }
    let extra_name = intern!(py, "extra");
    let spooled_name = intern!(py, "spooled");
    // 1. (GIL) the extra attributes and the spool records (borrowed: `events` holds their objects)
    let mut records: Vec<Option<Bound<'py, PyBytes>>> = Vec::with_capacity(events.len());
    let mut items: Vec<Rec<'_>> = Vec::with_capacity(events.len());
    for event in events.iter() {
        let record = event.getattr(spooled_name)?.cast_into::<PyBytes>().ok();
        let extras = extras_of(&event.getattr(extra_name)?)?;
        items.push(match (extras, &record) {
            (Err(()), _) => Rec::Missing,
            (Ok(extras), Some(_)) => Rec::Spooled(&[], extras),
            (Ok(extras), None) => match Ev::from_object(&event)? {
                Ok(ev) => Rec::Plain(ev, extras),
                Err(()) => Rec::Missing,
            },
        });
        records.push(record);
    }
    for (item, record) in items.iter_mut().zip(&records) {
        if let (Rec::Spooled(bytes, _), Some(record)) = (item, record) {
            *bytes = record.as_bytes();
        }
    }
    RECORDS.with_borrow_mut(|out| {
        // 2. (no GIL) the records: (start, end) in `out`, or None for the Python encoder
        let ranges: Vec<Option<(usize, usize)>> = py.detach(|| {
            out.clear();
            let mut rec = Vec::with_capacity(2048);
            let mut scratch = Vec::with_capacity(256);
            items
                .iter()
                .map(|item| {
                    let written = match item {
                        Rec::Spooled(bytes, extras) => {
                            Ev::from_spooled(bytes).ok().and_then(|ev| record(&ev, extras, &mut rec, &mut scratch))
                        }
                        Rec::Plain(ev, extras) => record(ev, extras, &mut rec, &mut scratch),
                        _ => None,
                    };
                    written.map(|()| {
                        let start = out.len();
                        out.push(0x12);
                        varint(out, rec.len() as u64);
                        out.extend_from_slice(&rec);
                        (start, out.len())
                    })
                })
                .collect()
        });
        // 3. (GIL) the Python encoder's records, then the request
        let mut python: Vec<Option<Bound<'py, PyBytes>>> = Vec::with_capacity(items.len());
        let mut records_len = out.len();
        for (i, range) in ranges.iter().enumerate() {
            python.push(None);
            if range.is_none() {
                let encoded = fallback.call1((events.get_item(i)?,))?;
                let encoded = encoded.cast_into::<PyBytes>().map_err(|_| PyValueError::new_err("fallback must return bytes"))?;
                records_len += encoded.as_bytes().len();
                python[i] = Some(encoded);
            }
        }
        let (resource_head, scope_head, total) =
            request_heads(resource_field, resource_schema, scope_field, scope_schema, records_len);
        PyBytes::new_with(py, total, |buf| {
            let mut at = 0;
            let mut put = |data: &[u8]| {
                buf[at..at + data.len()].copy_from_slice(data);
                at += data.len();
            };
            put(&resource_head);
            put(resource_field);
            put(&scope_head);
            put(scope_field);
            for (range, encoded) in ranges.iter().zip(&python) {
                match (range, encoded) {
                    (Some((start, end)), _) => put(&out[*start..*end]),
                    (None, Some(encoded)) => put(encoded.as_bytes()),
                    (None, None) => unreachable!("every record is written"),
                }
            }
            put(scope_schema);
            put(resource_schema);
            Ok(())
        })
    })
}

/// The framing of an ExportLogsServiceRequest around `records_len` bytes of `0x12 len LogRecord` records:
/// request = 0x0a len(RL) RL; RL = resource_field 0x12 len(SL) SL resource_schema; SL = scope_field records
/// scope_schema. Returns the two heads (0x0a len(RL), 0x12 len(SL)) and the request's length.
pub(crate) fn request_heads(resource_field: &[u8], resource_schema: &[u8], scope_field: &[u8], scope_schema: &[u8],
                            records_len: usize) -> (Vec<u8>, Vec<u8>, usize) {
    let scope_logs = scope_field.len() + records_len + scope_schema.len();
    let resource_logs = resource_field.len() + 1 + varint_len(scope_logs as u64) + scope_logs + resource_schema.len();
    let mut resource_head = vec![0x0a];
    varint(&mut resource_head, resource_logs as u64);
    let mut scope_head = vec![0x12];
    varint(&mut scope_head, scope_logs as u64);
    (resource_head, scope_head, 1 + varint_len(resource_logs as u64) + resource_logs)
}

/// The journal frame payload of `disk_spool.records._journal_entries` + orjson.dumps: JSON
/// ``[[end, chain id, seq, prev hash, hash], ...]`` for linked records (event, segment, end offset, _), the chain
/// fields read from each event's extra (null when absent). None when a value is not a str, int or None
/// (the caller then writes it with orjson).
#[pyfunction]
pub fn journal_payload<'py>(py: Python<'py>, records: &Bound<'py, PyList>) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let keys = chain_keys(py);
    let extra_name = intern!(py, "extra");
    let mut out = Vec::with_capacity(records.len() * 190 + 2);
    out.push(b'[');
    for (i, item) in records.iter().enumerate() {
        let item = item.cast_into::<PyTuple>()?;
        let (event, end): (Bound<'py, PyAny>, u64) = (item.get_item(0)?, item.get_item(2)?.extract()?);
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        out.extend_from_slice(end.to_string().as_bytes());
        let extra = event.getattr(extra_name)?;
        let extra = if extra.is_none() { None } else { Some(extra.cast_into::<PyDict>().map_err(PyErr::from)?) };
        for key in keys {
            out.push(b',');
            let value = match &extra {
                Some(extra) => extra.get_item(key)?,
                None => None,
            };
            match value {
                None => out.extend_from_slice(b"null"),
                Some(value) if value.is_none() => out.extend_from_slice(b"null"),
                Some(value) => {
                    if let Ok(text) = value.cast::<PyString>() {
                        let Ok(text) = text.to_str() else { return Ok(None) };
                        json_string(&mut out, text);
                    } else if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
                        let Ok(number) = value.extract::<i64>() else { return Ok(None) };
                        out.extend_from_slice(number.to_string().as_bytes());
                    } else {
                        return Ok(None);
                    }
                }
            }
        }
        out.push(b']');
    }
    out.push(b']');
    Ok(Some(PyBytes::new(py, &out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
        }
    }

    #[test]
    fn json_escapes() {
        let mut out = Vec::new();
        json_string(&mut out, "a\"\\\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}\u{2028}é");
        assert_eq!(String::from_utf8(out).unwrap(), "\"a\\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}\u{2028}é\"");
    }
}

