//! The drain's whole per-batch work over spool bytes, natively (DiskSpool.take_encoded's batch mode).
//!
//! [`drain_records`] takes a chunk of a spool segment and does, for up to `max_records` records, what the
//! Python drain does with AuditEvent objects: the framing and CRC-32 (`_scan`), the records (`decode_event`),
//! their chain links (a journalled link as `_apply_links` gives it, else `Chain.link` in order), the journal
//! frame of the newly linked ones (`journal_payload`), and the OTLP request (`EventEncoder.encode`). No
//! Python object is made per record: the GIL is held to read the journal and the chains' state, and to write
//! them back; everything else runs without it. A chunk with a record outside the plain case gives None
//! before any chain moved, and the caller takes the Python path for it.
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use crate::drain::{
    chain_index, heads_of, json_string, link_digest, record, request_heads, ChainState, Ev, Spooled, XVal, SAFE_INT,
};
use crate::spool::scan_frames;
use crate::varint_to as varint;

const CHAIN_ID: &str = "audit.chain.id";
const CHAIN_SEQ: &str = "audit.chain.seq";
const CHAIN_PREV: &str = "audit.chain.prev_hash";
const CHAIN_HASH: &str = "audit.chain.hash";

/// One record of the chunk.
struct Item {
    end: u64,                  // its end offset in the segment (the journal's key)
    ev: Ev,                    // its fields (its tenant: the chain it belongs to)
    extras: Vec<(String, XVal)>, // its extra attributes, chain links included once known
    link: Link,
}

enum Link {
    Journalled, // links from the journal, set into extras already
    Prelinked,  // its extra carries audit.chain.hash (a checkpoint): left as it is
    New,        // to be linked here
}

/// Set the four chain attributes in `extras`, in Chain.link's order.
fn set_links(extras: &mut Vec<(String, XVal)>, id: String, seq: i64, prev: String, hash: String) {
    set(extras, CHAIN_ID, XVal::Str(id));
    set(extras, CHAIN_SEQ, XVal::Int(seq));
    set(extras, CHAIN_PREV, XVal::Str(prev));
    set(extras, CHAIN_HASH, XVal::Str(hash));
}

/// Set `key` in `extras` as a dict assignment does: in place when present, else appended.
fn set(extras: &mut Vec<(String, XVal)>, key: &str, value: XVal) {
    match extras.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => extras.push((key.to_owned(), value)),
    }
}

/// Returns None (nothing changed) when a record is not plain, or a chain would pass 2**53; else
/// (request bytes, journal payload or None, records taken, end of the last one in `data`, a bad frame
/// stopped the scan, {tenant: records linked}).
#[pyfunction]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn drain_records<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyBytes>,
    base: u64,
    max_records: usize,
    journal: &Bound<'py, PyDict>,
    chain_for: &Bound<'py, PyAny>,
    resource_field: &[u8],
    resource_schema: &[u8],
    scope_field: &[u8],
    scope_schema: &[u8],
) -> PyResult<Option<(Bound<'py, PyBytes>, Option<Bound<'py, PyBytes>>, usize, usize, bool, Bound<'py, PyDict>)>> {
    let bytes = data.as_bytes();
    // 1. (no GIL) frames and records
    let parsed = py.detach(|| {
        scan_frames(bytes, max_records, |start, stop| -> Result<Item, ()> {
            let (fields, mut rest) = Spooled::parse(&bytes[start..stop])?;
            let extras = rest.flat_extra()?.unwrap_or_default();
            let prelinked = extras.iter().any(|(k, _)| k == CHAIN_HASH);
            Ok(Item {
                end: base + stop as u64,
                ev: Ev::from_fields(fields),
                extras,
                link: if prelinked { Link::Prelinked } else { Link::New },
            })
        })
    });
    let Ok((mut items, pos, bad)) = parsed else { return Ok(None) };
    // 2. (GIL) journalled links, and the chains of the records to link
    let mut states: Vec<(Option<String>, ChainState<'py>)> = Vec::new();
    let mut chain_of = vec![usize::MAX; items.len()];
    for (i, item) in items.iter_mut().enumerate() {
        if let Some(link) = journal.get_item(item.end)? {
            let link = link.cast_into::<PyList>().map_err(PyErr::from)?;
            if link.len() != 4 {
                return Ok(None);
            }
            let text = |i: usize| -> PyResult<Option<String>> {
                let value = link.get_item(i)?;
                Ok(value.cast::<PyString>().ok().and_then(|s| s.to_str().ok().map(str::to_owned)))
            };
            let (Some(id), Ok(seq), Some(prev), Some(hash)) =
                (text(0)?, link.get_item(1)?.extract::<i64>(), text(2)?, text(3)?)
            else {
                return Ok(None);
            };
            set_links(&mut item.extras, id, seq, prev, hash);
            item.link = Link::Journalled;
            continue;
        }
        if matches!(item.link, Link::Prelinked) {
            continue;
        }
        chain_of[i] = chain_index(&mut states, chain_for, item.ev.tenant())?;
    }
    let mut heads = heads_of(&states)?;
    // 3. (no GIL) link, journal frame, LogRecords
    let done = py.detach(|| -> Option<(Vec<u8>, Option<Vec<u8>>, Vec<usize>)> {
        let mut json = Vec::with_capacity(1024);
        let mut journal_out = Vec::new();
        let mut linked = vec![0usize; heads.len()];
        for (item, &index) in items.iter_mut().zip(&chain_of) {
            if !matches!(item.link, Link::New) {
                continue;
            }
            let (id, seq, head) = &mut heads[index];
            if *seq >= SAFE_INT {
                return None;
            }
            *seq += 1;
            let digest = link_digest(&mut json, &item.ev, id, head, *seq);
            let digest = std::str::from_utf8(&digest).expect("hex is ASCII").to_owned();
            journal_out.push(if journal_out.is_empty() { b'[' } else { b',' });
            journal_out.push(b'[');
            journal_out.extend_from_slice(item.end.to_string().as_bytes());
            journal_out.push(b',');
            json_string(&mut journal_out, id);
            journal_out.push(b',');
            journal_out.extend_from_slice(seq.to_string().as_bytes());
            journal_out.push(b',');
            json_string(&mut journal_out, head);
            journal_out.push(b',');
            json_string(&mut journal_out, &digest);
            journal_out.push(b']');
            set_links(&mut item.extras, id.clone(), *seq as i64, head.clone(), digest.clone());
            *head = digest;
            linked[index] += 1;
        }
        if !journal_out.is_empty() {
            journal_out.push(b']');
        }
        let mut records = Vec::with_capacity(items.len() * 700);
        let mut rec = Vec::with_capacity(2048);
        let mut scratch = Vec::with_capacity(256);
        for item in &items {
            record(&item.ev, &item.extras, &mut rec, &mut scratch)?;
            records.push(0x12);
            varint(&mut records, rec.len() as u64);
            records.extend_from_slice(&rec);
        }
        let journal_out = if journal_out.is_empty() { None } else { Some(journal_out) };
        Some((records, journal_out, linked))
    });
    let Some((records, journal_out, linked)) = done else { return Ok(None) };
    // 4. (GIL) the chains move on; the request
    let counts = PyDict::new(py);
    for ((tenant, state), ((_, seq, head), n)) in states.iter_mut().zip(heads.iter().zip(&linked)) {
        if *n > 0 {
            state.seq = *seq;
            state.head = PyString::new(py, head);
            state.store()?;
            counts.set_item(tenant.as_deref(), n)?;
        }
    }
    let request = if items.is_empty() {
        PyBytes::new(py, b"")
    } else {
        let (resource_head, scope_head, total) =
            request_heads(resource_field, resource_schema, scope_field, scope_schema, records.len());
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&resource_head);
        out.extend_from_slice(resource_field);
        out.extend_from_slice(&scope_head);
        out.extend_from_slice(scope_field);
        out.extend_from_slice(&records);
        out.extend_from_slice(scope_schema);
        out.extend_from_slice(resource_schema);
        PyBytes::new(py, &out)
    };
    let journal_out = journal_out.map(|j| PyBytes::new(py, &j));
    Ok(Some((request, journal_out, items.len(), pos, bad, counts)))
}
