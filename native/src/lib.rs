//! auditrail's native core: an OTLP `ExportLogsServiceRequest` (protobuf) as one ClickHouse `Native` block of
//! the rows the collector's clickhouse exporter (v0.161.0) writes into `otel_logs` (the 16 columns it inserts),
//! the same rows `auditrail_store.ingest` computes in Python (pdata's AsString for every AnyValue kind, Go's
//! float and JSON rules included). A trace or span id of another length makes it return None: pdata refuses
//! those, and the caller's Python path answers 400.
use base64::Engine as _;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use prost::Message;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

mod drain;

/// The columns, in the block's order, with the types the block declares (the insert converts to the table's).
pub const COLUMNS: [(&str, &str); 16] = [
    ("Timestamp", "DateTime64(9)"), ("TraceId", "String"), ("SpanId", "String"), ("TraceFlags", "UInt8"),
    ("SeverityText", "String"), ("SeverityNumber", "UInt8"), ("ServiceName", "String"), ("Body", "String"),
    ("ResourceSchemaUrl", "String"), ("ResourceAttributes", "Map(String, String)"), ("ScopeSchemaUrl", "String"),
    ("ScopeName", "String"), ("ScopeVersion", "String"), ("ScopeAttributes", "Map(String, String)"),
    ("LogAttributes", "Map(String, String)"), ("EventName", "String"),
];

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

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
    let m = x.abs();
    if (1e-6..1e21).contains(&m) {
        return format!("{x}"); // Display: shortest round-trip digits, never an exponent
    }
    let text = format!("{x:e}"); // e.g. 1.5e-7, 1e21
    let (mantissa, exponent) = text.split_once('e').unwrap();
    match exponent.strip_prefix('-') {
        Some(digits) => format!("{mantissa}e-{digits}"),
        None => format!("{mantissa}e+{exponent:0>2}"),
    }
}

/// A JSON string as Go's json.Encoder writes it with SetEscapeHTML(false).
fn go_json_string(text: &str, out: &mut String) {
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
fn go_json(value: Option<&AnyValue>, out: &mut String) -> Result<(), ()> {
    match value.and_then(|v| v.value.as_ref()) {
        None => out.push_str("null"),
        Some(Value::StringValue(s)) => go_json_string(s, out),
        Some(Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => out.push_str(&i.to_string()),
        Some(Value::DoubleValue(d)) => {
            if !d.is_finite() {
                return Err(());
            }
            out.push_str(&go_float_digits(*d));
        }
        Some(Value::BytesValue(b)) => {
            if b.is_empty() {
                out.push_str("null");
            } else {
                out.push('"');
                out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
                out.push('"');
            }
        }
        Some(Value::ArrayValue(a)) => {
            out.push('[');
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(Some(v), out)?;
            }
            out.push(']');
        }
        Some(Value::KvlistValue(kv)) => {
            // AsRaw: a map, the last of a repeated key wins; Go sorts map keys by their bytes.
            let mut last: std::collections::BTreeMap<&[u8], Option<&AnyValue>> = std::collections::BTreeMap::new();
            for pair in &kv.values {
                last.insert(pair.key.as_bytes(), pair.value.as_ref());
            }
            out.push('{');
            for (i, (key, v)) in last.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(std::str::from_utf8(key).unwrap(), out);
                out.push(':');
                go_json(*v, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// pdata `AsString`.
fn as_string(value: &Option<AnyValue>) -> Option<String> {
    Some(match value.as_ref().and_then(|v| v.value.as_ref()) {
        None => String::new(), // (string_value_strindex: a field prost skips, as pdata's empty value)
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => (if *b { "true" } else { "false" }).to_string(),
        Some(Value::BytesValue(b)) => base64::engine::general_purpose::STANDARD.encode(b),
        Some(Value::DoubleValue(d)) => go_float(*d),
        Some(_) => {
            let mut out = String::new();
            if go_json(value.as_ref(), &mut out).is_err() {
                out.clear();
            }
            out
        }
    })
}

/// A map column value: (key, AsString) pairs sorted by key bytes, ties in request order.
fn pairs(kvs: &[KeyValue]) -> Option<Vec<(&str, String)>> {
    let mut out = Vec::with_capacity(kvs.len());
    for kv in kvs {
        out.push((kv.key.as_str(), as_string(&kv.value)?));
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Some(out)
}

/// traceutil.*ToHexOrEmptyString; None for another length (pdata refuses it).
fn hex_id(raw: &[u8], size: usize) -> Option<String> {
    if raw.is_empty() || raw.iter().all(|b| *b == 0) {
        return if raw.is_empty() || raw.len() == size { Some(String::new()) } else { None };
    }
    if raw.len() != size {
        return None;
    }
    const H: &[u8; 16] = b"0123456789abcdef";
    Some(raw.iter().flat_map(|b| [H[(b >> 4) as usize] as char, H[(b & 15) as usize] as char]).collect())
}

#[derive(Default)]
struct Block {
    rows: usize,
    timestamp: Vec<u8>,
    strings: [Vec<u8>; 16],
    bytes: [Vec<u8>; 16],
    offsets: [Vec<u8>; 16],
    keys: [Vec<u8>; 16],
    values: [Vec<u8>; 16],
    totals: [u64; 16],
}

impl Block {
    fn text(&mut self, column: usize, s: &str) {
        string(&mut self.strings[column], s.as_bytes());
    }
    fn map(&mut self, column: usize, pairs: &[(&str, String)]) {
        for (k, v) in pairs {
            string(&mut self.keys[column], k.as_bytes());
            string(&mut self.values[column], v.as_bytes());
        }
        self.totals[column] += pairs.len() as u64;
        self.offsets[column].extend_from_slice(&self.totals[column].to_le_bytes());
    }
    fn finish(self) -> Vec<u8> {
        let mut out = Vec::new();
        varint(&mut out, COLUMNS.len() as u64);
        varint(&mut out, self.rows as u64);
        for (i, (name, kind)) in COLUMNS.iter().enumerate() {
            string(&mut out, name.as_bytes());
            string(&mut out, kind.as_bytes());
            match *kind {
                "DateTime64(9)" => out.extend_from_slice(&self.timestamp),
                "UInt8" => out.extend_from_slice(&self.bytes[i]),
                "String" => out.extend_from_slice(&self.strings[i]),
                _ => {
                    out.extend_from_slice(&self.offsets[i]);
                    out.extend_from_slice(&self.keys[i]);
                    out.extend_from_slice(&self.values[i]);
                }
            }
        }
        out
    }
}

fn encode(request: &ExportLogsServiceRequest) -> Option<Block> {
    let mut block = Block::default();
    for rl in &request.resource_logs {
        let resource: &[KeyValue] = rl.resource.as_ref().map(|r| &r.attributes[..]).unwrap_or(&[]);
        let service = match resource.iter().find(|kv| kv.key == "service.name") {
            Some(kv) => as_string(&kv.value)?,
            None => String::new(),
        };
        let resource_pairs = pairs(resource)?;
        for sl in &rl.scope_logs {
            let (name, version, scope_attrs) = match &sl.scope {
                Some(s) => (s.name.as_str(), s.version.as_str(), &s.attributes[..]),
                None => ("", "", &[][..]),
            };
            let scope_pairs = pairs(scope_attrs)?;
            for r in &sl.log_records {
                let t = if r.time_unix_nano != 0 { r.time_unix_nano } else { r.observed_time_unix_nano };
                block.timestamp.extend_from_slice(&(t as i64).to_le_bytes());
                block.text(1, &hex_id(&r.trace_id, 16)?);
                block.text(2, &hex_id(&r.span_id, 8)?);
                block.bytes[3].push((r.flags & 255) as u8);
                block.text(4, &r.severity_text);
                block.bytes[5].push((r.severity_number & 255) as u8);
                block.text(6, &service);
                block.text(7, &as_string(&r.body)?);
                block.text(8, &rl.schema_url);
                block.map(9, &resource_pairs);
                block.text(10, &sl.schema_url);
                block.text(11, name);
                block.text(12, version);
                block.map(13, &scope_pairs);
                block.map(14, &pairs(&r.attributes)?);
                block.text(15, &r.event_name);
                block.rows += 1;
            }
        }
    }
    Some(block)
}

/// (rows, the Native block) of a protobuf ExportLogsServiceRequest, or None when a value needs the Python
/// path's formatting. ValueError when the body is not a valid request.
#[pyfunction]
fn otlp_logs_native<'py>(py: Python<'py>, body: &[u8]) -> PyResult<Option<(usize, Bound<'py, PyBytes>)>> {
    let encoded = py.detach(|| {
        let request = ExportLogsServiceRequest::decode(body).map_err(|e| e.to_string())?;
        Ok::<_, String>(encode(&request).map(|block| (block.rows, block.finish())))
    });
    match encoded {
        Ok(Some((rows, data))) => Ok(Some((rows, PyBytes::new(py, &data)))),
        Ok(None) => Ok(None),
        Err(message) => Err(PyValueError::new_err(format!("malformed protobuf ExportLogsServiceRequest: {message}"))),
    }
}

#[pymodule]
fn auditrail_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(otlp_logs_native, m)?)?;
    m.add_function(wrap_pyfunction!(drain::link_events, m)?)?;
    m.add_function(wrap_pyfunction!(drain::encode_request, m)?)?;
    m.add_function(wrap_pyfunction!(drain::journal_payload, m)?)?;
    m.add("COLUMNS", COLUMNS.iter().map(|(n, _)| *n).collect::<Vec<_>>())?;
    Ok(())
}
