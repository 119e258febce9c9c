//! The drain's whole per-batch work over spool bytes, natively (DiskSpool.take_encoded's batch mode).
//!
//! [`drain_segment`] reads a chunk of a spool segment and does, for up to `max_records` records, what the
//! Python drain does with AuditEvent objects: the framing and CRC-32 (`_scan`), the records (`decode_event`),
//! their chain links (a journalled link as `LinkJournal.apply` gives it, else `Chain.link` in order), the
//! journal frame of the newly linked ones (`journal_payload`, appended to the segment's journal and
//! fdatasynced as `LinkJournal.append_frame` does), and the OTLP request (`EventEncoder.encode`). No Python
//! object is made per record: the GIL is held to read the journal and the chains' state, and to write them
//! back; the reading, parsing,
//! linking, encoding and the journal's write and sync run in two stretches without it. (Each time the drain
//! gives the GIL up, it waits a switch interval or more to get it back while app threads run.) A chunk with a
//! record outside the plain case gives None before any chain moved or anything was written, and the caller
//! takes the Python path for it.
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::FileExt;

use pyo3::exceptions::PyOSError;
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

/// What drain_segment returns: ([(request bytes, its records, the end offset of its last one)], journal
/// payload or None, records taken, end of the last one in the chunk, a bad frame stopped the scan, {tenant:
/// records linked}, the OSError writing the journal met or None).
type Drained<'py> =
    (Bound<'py, PyList>, Option<Bound<'py, PyBytes>>, usize, usize, bool, Bound<'py, PyDict>, Option<Bound<'py, PyAny>>);

/// The journal the new links' frame is appended to (O_APPEND), and its size before (truncated back to it
/// when the write fails, so no torn frame precedes the next ones).
struct Sink {
    fd: RawFd,
    size: u64,
}

thread_local! {
    // The drain thread's chunk and records buffers, kept between batches: a fresh 4 MiB buffer a batch is
    // a page fault per 4 KiB.
    static CHUNK: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static RECORDS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A file descriptor the caller owns, as a File that does not close it.
fn borrowed(fd: RawFd) -> ManuallyDrop<File> {
    // SAFETY: the caller keeps `fd` open for the call; ManuallyDrop never closes it.
    ManuallyDrop::new(unsafe { File::from_raw_fd(fd) })
}

/// `len` bytes of the file at `offset` (fewer at its end) into `buf`.
fn read_chunk(fd: RawFd, offset: u64, len: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    let file = borrowed(fd);
    buf.clear();
    buf.resize(len, 0);
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    buf.truncate(got);
    Ok(())
}

/// Append `payload` as one frame (disk_spool.records._HEADER: length, CRC-32) and fdatasync; on a failed write the
/// journal is cut back to its size before.
fn write_frame(sink: &Sink, payload: &[u8]) -> io::Result<()> {
    let file = borrowed(sink.fd);
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    if let Err(err) = (&*file).write_all(&frame) {
        let _ = file.set_len(sink.size);
        return Err(err);
    }
    file.sync_data()
}

/// `err` as Python raises it: OSError(errno, strerror), of the subclass its errno maps to. A write that
/// stopped short (nothing written, no errno) is ENOSPC, as LinkJournal.append_frame has it.
fn os_error<'py>(py: Python<'py>, err: &io::Error) -> PyResult<Bound<'py, PyAny>> {
    const ENOSPC: i32 = 28;
    let errno = match err.raw_os_error() {
        Some(errno) => errno,
        None if err.kind() == io::ErrorKind::WriteZero => ENOSPC,
        None => return Ok(PyOSError::new_err(err.to_string()).into_value(py).into_bound(py).into_any()),
    };
    let text = io::Error::from_raw_os_error(errno).to_string();
    let strerror = text.strip_suffix(&format!(" (os error {errno})")).unwrap_or(&text).to_owned();
    py.get_type::<PyOSError>().call1((errno, strerror))
}

/// Up to `max_records` records in `len` bytes of a segment's file (`fd`) at `offset`, as OTLP requests of
/// `per_request` records at most, the new links' frame appended to the journal `journal_fd` (of
/// `journal_size` bytes; -1: none, the caller writes the payload) and synced before it returns. Returns None (nothing changed or written) when a record is not plain, or a chain
/// would pass 2**53; else what [`Drained`] says. A journal that cannot be written does not stop the batch:
/// the error is returned for the caller to report (LinkJournal.appended). A failed read raises OSError.
#[pyfunction]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn drain_segment<'py>(
    py: Python<'py>,
    fd: RawFd,
    offset: u64,
    len: usize,
    max_records: usize,
    per_request: usize,
    journal: &Bound<'py, PyDict>,
    chain_for: &Bound<'py, PyAny>,
    resource_field: &[u8],
    resource_schema: &[u8],
    scope_field: &[u8],
    scope_schema: &[u8],
    journal_fd: RawFd,
    journal_size: u64,
) -> PyResult<Option<Drained<'py>>> {
    let sink = (journal_fd >= 0).then_some(Sink { fd: journal_fd, size: journal_size });
    let per_request = per_request.max(1);
    // 1. (no GIL) the chunk, its frames and records
    let parsed = py.detach(|| {
        CHUNK.with_borrow_mut(|bytes| -> io::Result<_> {
            read_chunk(fd, offset, len, bytes)?;
            Ok(scan_frames(bytes, max_records, |start, stop| -> Result<Item, ()> {
                let (fields, mut rest) = Spooled::parse(&bytes[start..stop])?;
                let extras = rest.flat_extra()?.unwrap_or_default();
                let prelinked = extras.iter().any(|(k, _)| k == CHAIN_HASH);
                Ok(Item {
                    end: offset + stop as u64,
                    ev: Ev::from_fields(fields),
                    extras,
                    link: if prelinked { Link::Prelinked } else { Link::New },
                })
            }))
        })
    })?;
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
    // 3. (no GIL) link, journal frame (written and synced when there is a sink), LogRecords
    let done = py.detach(|| -> Option<(Option<Vec<u8>>, Vec<usize>, Vec<usize>, io::Result<()>)> {
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
        let cuts = RECORDS.with_borrow_mut(|records| -> Option<Vec<usize>> {
            records.clear();
            let mut cuts = Vec::new(); // where each request's records end in `records`
            let mut rec = Vec::with_capacity(2048);
            let mut scratch = Vec::with_capacity(256);
            for (i, item) in items.iter().enumerate() {
                record(&item.ev, &item.extras, &mut rec, &mut scratch)?;
                records.push(0x12);
                varint(records, rec.len() as u64);
                records.extend_from_slice(&rec);
                if (i + 1) % per_request == 0 || i + 1 == items.len() {
                    cuts.push(records.len());
                }
            }
            Some(cuts)
        })?;
        let journal_out = if journal_out.is_empty() { None } else { Some(journal_out) };
        let written = match (&sink, &journal_out) {
            (Some(sink), Some(payload)) => write_frame(sink, payload),
            _ => Ok(()),
        };
        Some((journal_out, linked, cuts, written))
    });
    let Some((journal_out, linked, cuts, written)) = done else { return Ok(None) };
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
    let requests = PyList::empty(py);
    RECORDS.with_borrow(|records| -> PyResult<()> {
        let mut from = 0;
        for (n, &cut) in cuts.iter().enumerate() {
            let part = &records[from..cut];
            let (resource_head, scope_head, total) =
                request_heads(resource_field, resource_schema, scope_field, scope_schema, part.len());
            let request = PyBytes::new_with(py, total, |out| {
                let mut at = 0;
                for piece in [&resource_head[..], resource_field, &scope_head, scope_field, part, scope_schema,
                              resource_schema] {
                    out[at..at + piece.len()].copy_from_slice(piece);
                    at += piece.len();
                }
                Ok(())
            })?;
            let first = n * per_request;
            let last = (first + per_request).min(items.len()) - 1;
            requests.append((request, last + 1 - first, items[last].end))?;
            from = cut;
        }
        Ok(())
    })?;
    let journal_out = journal_out.map(|j| PyBytes::new(py, &j));
    let error = match written {
        Ok(()) => None,
        Err(err) => Some(os_error(py, &err)?),
    };
    Ok(Some((requests, journal_out, items.len(), pos, bad, counts, error)))
}
