//! The store's per-request limits, checked on an OTLP `ExportLogsServiceRequest` before anything decodes it.
//!
//! A scan of the wire that allocates nothing: it counts LogRecords, measures each one's encoded size and
//! counts every protobuf message the request holds (the thing upb and the Python decoder spend memory on:
//! 60-140 bytes each, whatever its size on the wire). It stops at the first limit exceeded, so a request of
//! eight million empty records costs the first hundred thousand. It reads the schema as upb does (unknown
//! fields and known numbers with another wire type skipped, groups skipped whole); where the wire stops
//! being readable it stops too: the decoders then refuse the body (400), and read no further than it did.
//! For a tenant-scoped token it also stops at the first record whose tenant attribute is plainly another
//! tenant's, so that 403 costs no decoding either; what it cannot judge is left to the decoders' check.
//! It also counts the distinct keys of resource, scope and record attributes (the one set it keeps, bounded by
//! its limit): each distinct key is an entry of the engine's LowCardinality dictionaries of the three Map
//! columns, ~100 bytes of the insert's memory whatever its size on the wire. And the map entries of the rows:
//! every row holds its resource's and its scope's attributes besides its own, so a resource of 1,000
//! attributes over 20,000 one-line records (257 KB) made 20 million entries (a 221 MB Native block).
use std::collections::HashSet;

use pyo3::prelude::*;

use super::{Wire, FIXED32, FIXED64, LEN, VARINT};

const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
/// upb's nesting limit: what lies deeper is refused by the decoders anyway.
const MAX_DEPTH: u32 = 100;

/// The message kinds whose fields hold messages.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Request,
    ResourceLogs,
    Resource,
    ScopeLogs,
    Scope,
    Record,
    KeyValue,
    AnyValue,
    ArrayValue,
    KvList,
    Leaf, // EntityRef: strings only
}

/// The kind of a length-delimited field `number` of a `kind` message, None when it is not a message.
fn child(kind: Kind, number: u32) -> Option<Kind> {
    use Kind::*;
    match (kind, number) {
        (Request, 1) => Some(ResourceLogs),
        (ResourceLogs, 1) => Some(Resource),
        (ResourceLogs, 2) => Some(ScopeLogs),
        (Resource, 1) | (Scope, 3) | (Record, 6) | (KvList, 1) => Some(KeyValue),
        (Resource, 3) => Some(Leaf),
        (ScopeLogs, 1) => Some(Scope),
        (ScopeLogs, 2) => Some(Record),
        (Record, 5) | (KeyValue, 2) | (ArrayValue, 1) => Some(AnyValue),
        (AnyValue, 5) => Some(ArrayValue),
        (AnyValue, 6) => Some(KvList),
        _ => None,
    }
}

/// Why the scan stopped.
enum Stop {
    Records,
    RecordBytes { index: usize, size: usize },
    Messages,
    Foreign { index: usize, tenant: Vec<u8> },
    Keys,
    Entries,
    Unreadable,
}

const TENANT_KEY: &[u8] = b"audit.tenant_id";

struct Scan<'t> {
    max_records: usize,
    max_record_bytes: usize,
    max_messages: usize,
    max_keys: usize,
    max_entries: usize,
    /// KeyValues of resources, scopes and records seen; map entries of the rows counted so far.
    attributes: usize,
    entries: usize,
    /// The distinct attribute keys seen (of Resource, Scope and LogRecord attributes), at most max_keys.
    keys: HashSet<&'t [u8]>,
    /// The token's tenant, for a tenant-scoped token: a record plainly of another tenant stops the scan.
    tenant: Option<&'t [u8]>,
    records: usize,
    messages: usize,
}

/// (key, string value) of a KeyValue in its plain shape (one key, one value holding one string_value), None
/// for any other: merged or repeated fields are read by the decoders, whose tenant check decides.
fn plain_pair(seg: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut w = Wire::new(seg);
    let Ok((1, LEN)) = w.tag() else { return None };
    let key = w.bytes().ok()?;
    let Ok((2, LEN)) = w.tag() else { return None };
    let value = w.bytes().ok()?;
    if w.more() {
        return None;
    }
    let mut v = Wire::new(value);
    let Ok((1, LEN)) = v.tag() else { return None };
    let text = v.bytes().ok()?;
    if v.more() {
        return None;
    }
    Some((key, text))
}

/// The key of a KeyValue as upb reads it (the last `key` field; "" when none), None where the wire is not
/// readable (the scan then stops there anyway).
fn key_of(seg: &[u8]) -> Option<&[u8]> {
    let mut w = Wire::new(seg);
    let mut key: &[u8] = b"";
    while w.more() {
        match w.tag().ok()? {
            (1, LEN) => key = w.bytes().ok()?,
            (_, wire) if wire != START_GROUP => w.skip(wire).ok()?,
            _ => return None,
        }
    }
    Some(key)
}

impl<'t> Scan<'t> {
    fn message(&mut self, kind: Kind, seg: &'t [u8], depth: u32) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Unreadable);
        }
        self.messages += 1;
        if self.messages > self.max_messages {
            return Err(Stop::Messages);
        }
        if kind == Kind::Record {
            self.records += 1;
            if self.records > self.max_records {
                return Err(Stop::Records);
            }
            if seg.len() > self.max_record_bytes {
                return Err(Stop::RecordBytes { index: self.records - 1, size: seg.len() });
            }
        }
        // The record's tenant as the decoders read it: the first attribute with the key (None: none seen yet);
        // `unsure` once an attribute not in the plain shape came before it (its key is not known here).
        let mut tenant: Option<&[u8]> = None;
        let mut unsure = false;
        // a ResourceLogs' or ScopeLogs': the attributes of its resource or scope, which each of its rows repeats
        let records = self.records;
        let mut head = 0;
        let mut w = Wire::new(seg);
        while w.more() {
            let (number, wire) = w.tag().map_err(|_| Stop::Unreadable)?;
            match (wire, child(kind, number)) {
                (LEN, Some(inner)) => {
                    let s = w.bytes().map_err(|_| Stop::Unreadable)?;
                    if kind == Kind::Record && inner == Kind::KeyValue && self.tenant.is_some()
                        && tenant.is_none() && !unsure {
                        match plain_pair(s) {
                            Some((key, value)) if key == TENANT_KEY => tenant = Some(value),
                            Some(_) => {}
                            None => unsure = true,
                        }
                    }
                    if inner == Kind::KeyValue && kind != Kind::KvList {
                        self.attributes += 1;
                        if kind == Kind::Record {
                            self.entries += 1;
                        }
                        if let Some(key) = key_of(s) {
                            if self.keys.len() < self.max_keys || self.keys.contains(key) {
                                self.keys.insert(key);
                            } else {
                                return Err(Stop::Keys);
                            }
                        }
                    }
                    let before = self.attributes;
                    self.message(inner, s, depth + 1)?;
                    if inner == Kind::Resource || inner == Kind::Scope {
                        head += self.attributes - before;
                    }
                }
                (START_GROUP, _) => skip_group(&mut w, number, depth + 1)?,
                (wire, _) => w.skip(wire).map_err(|_| Stop::Unreadable)?,
            }
        }
        self.entries += head * (self.records - records);
        if self.entries > self.max_entries {
            return Err(Stop::Entries);
        }
        if let (Some(found), Some(allowed)) = (tenant, self.tenant) {
            if found != allowed {
                return Err(Stop::Foreign { index: self.records - 1, tenant: found.to_vec() });
            }
        }
        Ok(())
    }
}

/// Skip a group (upb keeps it as unknown bytes: no message of ours).
fn skip_group(w: &mut Wire, number: u32, depth: u32) -> Result<(), Stop> {
    if depth > MAX_DEPTH {
        return Err(Stop::Unreadable);
    }
    loop {
        let (inner, wire) = w.tag().map_err(|_| Stop::Unreadable)?;
        match wire {
            END_GROUP if inner == number => return Ok(()),
            START_GROUP => skip_group(w, inner, depth + 1)?,
            VARINT | FIXED64 | LEN | FIXED32 => w.skip(wire).map_err(|_| Stop::Unreadable)?,
            _ => return Err(Stop::Unreadable),
        }
    }
}

/// Scan a protobuf ExportLogsServiceRequest against the limits: (verdict, records, messages, record index,
/// record size, foreign tenant). The verdict is "ok", "records" (more than max_records), "record_bytes"
/// (record `index` is `size` bytes), "messages" (more than max_messages), "tenant" (record `index` is plainly
/// of the tenant returned, not of `tenant`, the token's: None for an all-tenant token), "keys" (more than
/// max_keys distinct attribute keys), "entries" (the rows would hold more than max_entries map entries: their
/// own attributes and their resource's and scope's) or "unreadable" (the wire stops being readable: the
/// decoders refuse it). Counts are those seen when the scan stopped.
#[pyfunction]
#[pyo3(signature = (body, max_records, max_record_bytes, max_messages, tenant=None, max_keys=usize::MAX,
                    max_entries=usize::MAX))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn otlp_logs_scan(py: Python<'_>, body: &[u8], max_records: usize, max_record_bytes: usize,
                             max_messages: usize, tenant: Option<&str>, max_keys: usize, max_entries: usize)
                             -> (&'static str, usize, usize, usize, usize, Option<String>) {
    py.detach(|| {
        let mut scan = Scan { max_records, max_record_bytes, max_messages, max_keys, max_entries, attributes: 0,
                              entries: 0, keys: HashSet::new(), tenant: tenant.map(str::as_bytes), records: 0,
                              messages: 0 };
        // the request itself is counted as a message too: one more than its fields
        let (verdict, index, size, foreign) = match scan.message(Kind::Request, body, 0) {
            Ok(()) => ("ok", 0, 0, None),
            Err(Stop::Records) => ("records", 0, 0, None),
            Err(Stop::RecordBytes { index, size }) => ("record_bytes", index, size, None),
            Err(Stop::Messages) => ("messages", 0, 0, None),
            Err(Stop::Foreign { index, tenant }) => {
                ("tenant", index, 0, Some(String::from_utf8_lossy(&tenant).into_owned()))
            }
            Err(Stop::Keys) => ("keys", 0, 0, None),
            Err(Stop::Entries) => ("entries", 0, 0, None),
            Err(Stop::Unreadable) => ("unreadable", 0, 0, None),
        };
        (verdict, scan.records, scan.messages.saturating_sub(1), index, size, foreign)
    })
}
