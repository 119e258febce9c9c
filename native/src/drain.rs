//! The SDK side's drain, natively: hash-chain links and OTLP LogRecords for batches of `AuditEvent`s.
//!
//! Both functions reproduce a Python function byte for byte and hand anything outside the plain case back
//! to it (a `fallback` callable), so the Python code stays the definition:
//!
//! * [`link_events`] is `pipeline.AuditLoggerProvider._link_events` over `chain.Chain.link`: the hashed
//!   object of chain.py (its keys in RFC 8785 order, absent values left out, the time as a decimal string,
//!   the seq a JSON integer), canonical JSON as RFC 8785 writes strings, SHA-256, lowercase hex; the four
//!   chain attributes set in `event.extra` in Chain.link's order.
//! * [`encode_log_records`] is `exporters.otlp_proto.EventEncoder._record` over a batch: `0x12 len LogRecord`
//!   per event, the fields in the same order, values encoded as that encoder encodes them.
//!
//! Plain means: the hashed fields are str or None, the time an int; for the encoder, extra attributes of str,
//! int (int64), bool, float, bytes or None under non-empty str keys. An event outside that goes to `fallback`.
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString};
use sha2::{Digest, Sha256};

const SAFE_INT: u64 = (1 << 53) - 1;

/// An optional str field of an event: Ok(None) for None, Err(()) for anything but a str (or a str that is
/// not valid UTF-8: lone surrogates, which the Python path refuses in its own words).
fn opt_str<'a>(value: &'a Bound<'_, PyAny>) -> Result<Option<&'a str>, ()> {
    if value.is_none() {
        return Ok(None);
    }
    value.cast::<PyString>().map_err(|_| ())?.to_str().map(Some).map_err(|_| ())
}

/// RFC 8785 (ECMAScript JSON.stringify) for a string: `"` `\` and the C0 controls escaped (short forms where
/// JSON has them, else \u00xx in lowercase hex), everything else as its UTF-8.
fn json_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short != 0 {
            out.extend_from_slice(&[b'\\', short]);
        } else {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

struct ChainState<'py> {
    chain: Bound<'py, PyAny>,
    id: Bound<'py, PyString>,
    seq: u64,
    head: Bound<'py, PyString>,
}

impl<'py> ChainState<'py> {
    fn load(chain: Bound<'py, PyAny>) -> PyResult<Self> {
        let (id, seq, head): (Bound<'py, PyString>, u64, Bound<'py, PyString>) =
            chain.call_method0(intern!(chain.py(), "state"))?.extract()?;
        Ok(ChainState { chain, id, seq, head })
    }

    fn store(&self) -> PyResult<()> {
        self.chain.call_method1(intern!(self.chain.py(), "set_head"), (self.seq, &self.head))?;
        Ok(())
    }
}

/// The hashed fields of chain.py's `_event_fields`, in its (RFC 8785) key order, between which the chain's
/// id, prev hash and seq go. Err(()) when a value is not plain.
struct Hashed<'a> {
    actor_type: Option<&'a str>,
    approval: Option<&'a str>,
    event_id: Option<&'a str>,
    impersonation: Option<&'a str>,
    impersonator: Option<&'a str>,
    outcome: Option<&'a str>,
    payload: Option<&'a str>,
    reason: Option<&'a str>,
    risk: Option<&'a str>,
    tenant: Option<&'a str>,
    source_ip: Option<&'a str>,
    actor: Option<&'a str>,
    event_name: Option<&'a str>,
    time: String,
}

fn hashed_json(out: &mut Vec<u8>, h: &Hashed<'_>, chain_id: &str, prev: &str, seq: u64) {
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
    field(out, "audit.actor.type", h.actor_type);
    field(out, "audit.approval.id", h.approval);
    field(out, "audit.chain.id", Some(chain_id));
    field(out, "audit.chain.prev_hash", Some(prev));
    out.extend_from_slice(b",\"audit.chain.seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    let field = |out: &mut Vec<u8>, key: &str, value: Option<&str>| {
        if let Some(value) = value {
            out.push(b',');
            json_string(out, key);
            out.push(b':');
            json_string(out, value);
        }
    };
    field(out, "audit.event_id", h.event_id);
    field(out, "audit.impersonation.id", h.impersonation);
    field(out, "audit.impersonator.id", h.impersonator);
    field(out, "audit.outcome", h.outcome);
    field(out, "audit.payload", h.payload);
    field(out, "audit.reason", h.reason);
    field(out, "audit.risk", h.risk);
    field(out, "audit.tenant_id", h.tenant);
    field(out, "client.address", h.source_ip);
    field(out, "enduser.id", h.actor);
    field(out, "event_name", h.event_name);
    field(out, "time_unix_nano", Some(&h.time));
    out.push(b'}');
}

fn hashed<'a>(values: &'a [Bound<'_, PyAny>; 14]) -> Result<Hashed<'a>, ()> {
    let time = values[13].cast::<PyInt>().map_err(|_| ())?.str().map_err(|_| ())?.to_string();
    Ok(Hashed {
        actor_type: opt_str(&values[0])?,
        approval: opt_str(&values[1])?,
        event_id: opt_str(&values[2])?,
        impersonation: opt_str(&values[3])?,
        impersonator: opt_str(&values[4])?,
        outcome: opt_str(&values[5])?,
        payload: opt_str(&values[6])?,
        reason: opt_str(&values[7])?,
        risk: opt_str(&values[8])?,
        tenant: opt_str(&values[9])?,
        source_ip: opt_str(&values[10])?,
        actor: opt_str(&values[11])?,
        event_name: opt_str(&values[12])?,
        time,
    })
}

/// Link `events` in order into the chains of their tenants: `chain_for(tenant)` gives the `Chain` (made on
/// the tenant's first event), `fallback(chain, event)` links an event that is not plain (True when it did).
/// Events that carry `audit.chain.hash` already are left as they are. Returns {tenant: events linked}.
/// Call it as the Python linker is called (under the append lock); the chains' state is read once and
/// written back (`Chain.set_head`) before any fallback and at the end.
#[pyfunction]
pub fn link_events<'py>(
    py: Python<'py>,
    events: &Bound<'py, PyList>,
    chain_for: &Bound<'py, PyAny>,
    fallback: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let counts = PyDict::new(py);
    let mut states: Vec<(Bound<'py, PyAny>, ChainState<'py>)> = Vec::new(); // (tenant, state)
    let keys = [
        intern!(py, "audit.chain.id"),
        intern!(py, "audit.chain.seq"),
        intern!(py, "audit.chain.prev_hash"),
        intern!(py, "audit.chain.hash"),
    ];
    let names = [
        intern!(py, "actor_type"), intern!(py, "approval_id"), intern!(py, "event_id"),
        intern!(py, "impersonation_id"), intern!(py, "impersonator"), intern!(py, "outcome"),
        intern!(py, "payload"), intern!(py, "reason"), intern!(py, "risk"), intern!(py, "tenant"),
        intern!(py, "source_ip"), intern!(py, "actor"), intern!(py, "event_type"), intern!(py, "time_unix_nano"),
    ];
    let extra_name = intern!(py, "extra");
    let mut json = Vec::with_capacity(1024);
    let result = (|| -> PyResult<()> {
        for event in events.iter() {
            let extra = event.getattr(extra_name)?;
            let extra = if extra.is_none() { None } else { Some(extra.cast_into::<PyDict>()) };
            if let Some(Ok(extra)) = &extra {
                if extra.contains(keys[3])? {
                    continue;
                }
            }
            let values: [Bound<'py, PyAny>; 14] = [
                event.getattr(names[0])?, event.getattr(names[1])?, event.getattr(names[2])?,
                event.getattr(names[3])?, event.getattr(names[4])?, event.getattr(names[5])?,
                event.getattr(names[6])?, event.getattr(names[7])?, event.getattr(names[8])?,
                event.getattr(names[9])?, event.getattr(names[10])?, event.getattr(names[11])?,
                event.getattr(names[12])?, event.getattr(names[13])?,
            ];
            let tenant = &values[9];
            let index = match states.iter().position(|(t, _)| t.eq(tenant).unwrap_or(false) && t.is_none() == tenant.is_none()) {
                Some(index) => index,
                None => {
                    let chain = chain_for.call1((tenant,))?;
                    states.push((tenant.clone(), ChainState::load(chain)?));
                    states.len() - 1
                }
            };
            let state = &mut states[index].1;
            // Not plain: a value the Python path must hash (or refuse), or an extra that is not a dict.
            let plain = hashed(&values).ok().filter(|_| state.seq < SAFE_INT && !matches!(extra, Some(Err(_))));
            let Some(fields) = plain else {
                state.store()?;
                let linked = fallback.call1((&state.chain, &event))?.is_truthy()?;
                *state = ChainState::load(state.chain.clone())?;
                if linked {
                    let n: usize = counts.get_item(tenant)?.map(|n| n.extract()).transpose()?.unwrap_or(0);
                    counts.set_item(tenant, n + 1)?;
                }
                continue;
            };
            let seq = state.seq + 1;
            hashed_json(&mut json, &fields, state.id.to_str()?, state.head.to_str()?, seq);
            let digest = Sha256::digest(&json);
            let mut hex = [0u8; 64];
            for (i, b) in digest.iter().enumerate() {
                hex[2 * i] = b"0123456789abcdef"[(b >> 4) as usize];
                hex[2 * i + 1] = b"0123456789abcdef"[(b & 15) as usize];
            }
            let digest = PyString::new(py, std::str::from_utf8(&hex).expect("hex is ASCII"));
            let extra = match extra {
                Some(extra) => extra.expect("checked above"),
                None => {
                    let extra = PyDict::new(py);
                    event.setattr(extra_name, &extra)?;
                    extra
                }
            };
            extra.set_item(keys[0], &state.id)?;
            extra.set_item(keys[1], seq)?;
            extra.set_item(keys[2], &state.head)?;
            extra.set_item(keys[3], &digest)?;
            state.seq = seq;
            state.head = digest;
            let n: usize = counts.get_item(tenant)?.map(|n| n.extract()).transpose()?.unwrap_or(0);
            counts.set_item(tenant, n + 1)?;
        }
        Ok(())
    })();
    for (_, state) in &states {
        state.store()?;
    }
    result.map(|_| counts)
}

// --- OTLP LogRecords -------------------------------------------------------------------------------------

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field: tag, length, payload.
fn field(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    out.push(tag);
    varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn varint_len(v: u64) -> usize {
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

/// An AnyValue's contents for a plain value (`encode_any_value`), None when the value is not plain.
fn any_value(value: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Option<()> {
    if let Ok(flag) = value.cast::<PyBool>() {
        out.extend_from_slice(if flag.is_true() { b"\x10\x01" } else { b"\x10\x00" });
    } else if let Ok(text) = value.cast::<PyString>() {
        field(out, 0x0a, text.to_str().ok()?.as_bytes());
    } else if let Ok(number) = value.cast::<PyInt>() {
        out.push(0x18);
        varint(out, number.extract::<i64>().ok()? as u64);
    } else if let Ok(number) = value.cast::<PyFloat>() {
        out.push(0x21);
        out.extend_from_slice(&number.value().to_le_bytes());
    } else if let Ok(raw) = value.cast::<PyBytes>() {
        field(out, 0x3a, raw.as_bytes());
    } else if !value.is_none() {
        return None;
    }
    Some(())
}

/// `0x32 len KeyValue` for any plain value: a str as `_string_attribute`, else as `_key_value` (whose key
/// is left out when empty: the caller sends empty keys to the fallback).
fn attribute(out: &mut Vec<u8>, scratch: &mut Vec<u8>, key: &[u8], value: &Bound<'_, PyAny>) -> Option<()> {
    if let Ok(text) = value.cast::<PyString>() {
        string_attribute(out, key, text.to_str().ok()?.as_bytes());
        return Some(());
    }
    scratch.clear();
    any_value(value, scratch)?;
    let kv = 1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(scratch.len() as u64) + scratch.len();
    out.push(0x32);
    varint(out, kv as u64);
    field(out, 0x0a, key);
    field(out, 0x12, scratch);
    Some(())
}

const WHO: [(&str, &str); 7] = [
    ("actor", "enduser.id"), ("tenant", "audit.tenant_id"), ("source_ip", "client.address"),
    ("reason", "audit.reason"), ("impersonator", "audit.impersonator.id"),
    ("impersonation_id", "audit.impersonation.id"), ("approval_id", "audit.approval.id"),
];

/// One LogRecord's fields (without the 0x12 and length), or None when the event is not plain.
fn record<'py>(event: &Bound<'py, PyAny>, rec: &mut Vec<u8>, scratch: &mut Vec<u8>) -> PyResult<Option<()>> {
    let py = event.py();
    rec.clear();
    let get = |name: &Bound<'py, PyString>| event.getattr(name);
    let time = get(intern!(py, "time_unix_nano"))?;
    let Ok(time) = time.extract::<u64>() else { return Ok(None) };
    let risk = get(intern!(py, "risk"))?;
    let event_type = get(intern!(py, "event_type"))?;
    let actor = get(intern!(py, "actor"))?;
    let impersonator = get(intern!(py, "impersonator"))?;
    let tenant = get(intern!(py, "tenant"))?;
    let outcome = get(intern!(py, "outcome"))?;
    let (Ok(risk_text), Ok(name), Ok(actor_text), Ok(impersonator_text), Ok(tenant_text), Ok(outcome_text)) = (
        opt_str(&risk), opt_str(&event_type), opt_str(&actor), opt_str(&impersonator), opt_str(&tenant), opt_str(&outcome),
    ) else {
        return Ok(None);
    };
    let Some(name) = name else { return Ok(None) };
    if time != 0 {
        rec.push(0x09);
        rec.extend_from_slice(&time.to_le_bytes());
    }
    let (number, severity) = if matches!(risk_text, Some("high" | "critical")) { (13, "WARN") } else { (9, "INFO") };
    rec.push(0x10);
    varint(rec, number);
    field(rec, 0x1a, severity.as_bytes());
    // AuditEvent.body(): "{event_type} by {who} on tenant {tenant or '?'}: {outcome}"
    scratch.clear();
    scratch.extend_from_slice(name.as_bytes());
    scratch.extend_from_slice(b" by ");
    scratch.extend_from_slice(actor_text.filter(|a| !a.is_empty()).unwrap_or("unknown").as_bytes());
    if let Some(by) = impersonator_text.filter(|i| !i.is_empty()) {
        scratch.extend_from_slice(b" (impersonated by ");
        scratch.extend_from_slice(by.as_bytes());
        scratch.push(b')');
    }
    scratch.extend_from_slice(b" on tenant ");
    scratch.extend_from_slice(tenant_text.filter(|t| !t.is_empty()).unwrap_or("?").as_bytes());
    scratch.extend_from_slice(b": ");
    scratch.extend_from_slice(outcome_text.unwrap_or("None").as_bytes());
    rec.push(0x2a);
    varint(rec, (1 + varint_len(scratch.len() as u64) + scratch.len()) as u64);
    field(rec, 0x0a, scratch);
    let event_id = get(intern!(py, "event_id"))?;
    let Ok(Some(event_id)) = opt_str(&event_id) else { return Ok(None) };
    string_attribute(rec, b"audit.event_id", event_id.as_bytes());
    for (slot, key) in WHO {
        let value = match slot {
            "actor" => actor.clone(),
            "tenant" => tenant.clone(),
            "impersonator" => impersonator.clone(),
            _ => event.getattr(slot)?,
        };
        if !value.is_none() && attribute(rec, scratch, key.as_bytes(), &value).is_none() {
            return Ok(None);
        }
    }
    for (value, key) in [
        (get(intern!(py, "actor_type"))?, "audit.actor.type"),
        (get(intern!(py, "payload"))?, "audit.payload"),
        (outcome, "audit.outcome"),
        (risk, "audit.risk"),
    ] {
        if attribute(rec, scratch, key.as_bytes(), &value).is_none() {
            return Ok(None);
        }
    }
    let extra = get(intern!(py, "extra"))?;
    if !extra.is_none() {
        let Ok(extra) = extra.cast::<PyDict>() else { return Ok(None) };
        for (key, value) in extra.iter() {
            let Ok(Some(key)) = opt_str(&key) else { return Ok(None) };
            if key.is_empty() || attribute(rec, scratch, key.as_bytes(), &value).is_none() {
                return Ok(None);
            }
        }
    }
    let Ok(flags) = get(intern!(py, "trace_flags"))?.extract::<u32>() else { return Ok(None) };
    let Ok(trace) = get(intern!(py, "trace_id"))?.extract::<u128>() else { return Ok(None) };
    let Ok(span) = get(intern!(py, "span_id"))?.extract::<u64>() else { return Ok(None) };
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
    Ok(Some(()))
}

thread_local! {
    /// The records of the last batch: kept, so a batch of ~2 MB does not fault in fresh pages each time.
    static RECORDS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `EventEncoder.encode(events)`: the serialized ExportLogsServiceRequest with one ResourceLogs and one
/// ScopeLogs, from the encoder's pre-encoded resource and scope fields (`resource_field` = ResourceLogs
/// field 1 with its tag and length, `scope_field` = ScopeLogs field 1, the schema fields or b""), the
/// records `0x12 len LogRecord` in order; `fallback(event)` gives the record bytes of an event that is not
/// plain (EventEncoder._record: its errors are the errors). b"" for no events.
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
    RECORDS.with_borrow_mut(|out| {
        out.clear();
        let mut rec = Vec::with_capacity(2048);
        let mut scratch = Vec::with_capacity(256);
        for event in events.iter() {
            if record(&event, &mut rec, &mut scratch)?.is_some() {
                out.push(0x12);
                varint(out, rec.len() as u64);
                out.extend_from_slice(&rec);
            } else {
                let encoded = fallback.call1((&event,))?;
                let encoded = encoded.cast::<PyBytes>().map_err(|_| PyValueError::new_err("fallback must return bytes"))?;
                out.extend_from_slice(encoded.as_bytes());
            }
        }
        // request = 0x0a len(RL) RL; RL = resource_field 0x12 len(SL) SL resource_schema;
        // SL = scope_field records scope_schema
        let scope_logs = scope_field.len() + out.len() + scope_schema.len();
        let resource_logs = resource_field.len() + 1 + varint_len(scope_logs as u64) + scope_logs + resource_schema.len();
        let total = 1 + varint_len(resource_logs as u64) + resource_logs;
        PyBytes::new_with(py, total, |buf| {
            let mut head = Vec::with_capacity(32 + resource_field.len() + scope_field.len());
            head.push(0x0a);
            varint(&mut head, resource_logs as u64);
            head.extend_from_slice(resource_field);
            head.push(0x12);
            varint(&mut head, scope_logs as u64);
            head.extend_from_slice(scope_field);
            let (start, rest) = buf.split_at_mut(head.len());
            start.copy_from_slice(&head);
            let (middle, end) = rest.split_at_mut(out.len());
            middle.copy_from_slice(out);
            let (first, second) = end.split_at_mut(scope_schema.len());
            first.copy_from_slice(scope_schema);
            second.copy_from_slice(resource_schema);
            Ok(())
        })
    })
}

/// The journal frame payload of `spool_file._journal_entries` + orjson.dumps: JSON
/// ``[[end, chain id, seq, prev hash, hash], ...]`` for (record end offset, linked event) pairs, the chain
/// fields read from each event's extra (null when absent). None when a value is not a str, int or None
/// (the caller then writes it with orjson).
#[pyfunction]
pub fn journal_payload<'py>(py: Python<'py>, records: &Bound<'py, PyList>) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let keys = [
        intern!(py, "audit.chain.id"),
        intern!(py, "audit.chain.seq"),
        intern!(py, "audit.chain.prev_hash"),
        intern!(py, "audit.chain.hash"),
    ];
    let extra_name = intern!(py, "extra");
    let mut out = Vec::with_capacity(records.len() * 190 + 2);
    out.push(b'[');
    for (i, item) in records.iter().enumerate() {
        let (end, event): (u64, Bound<'py, PyAny>) = item.extract()?;
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
