//! The DiskSpool's read-back, natively: `disk_spool.reader.SegmentReader.records` over a chunk of a segment.
//!
//! [`read_frames`] is `_scan` (length + CRC-32 framing) followed by `decode_event` for each frame, with the
//! framing checked and the records parsed with the GIL released. A record outside the plain case (extra
//! attributes of its own, an id or time out of range, anything the parser does not know) is decoded by the
//! `decode` callable it is given, disk_spool.records.decode_event, which stays the definition; what that refuses
//! (ValueError) is reported back, not raised.
use std::convert::Infallible;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::drain::{Number, Spooled};

const HEADER: usize = 8; // u32 little-endian length, u32 little-endian CRC-32 of the payload
const MAX_RECORD: usize = 64 * 1024 * 1024; // a length above this is corruption (disk_spool.records._MAX_RECORD)

/// A frame of the chunk: where its payload is, and its fields when they are plain.
struct Frame {
    start: usize,
    stop: usize,
    fields: Option<Spooled>,
}

/// Up to `max_frames` frames of `data` (a chunk read at offset `base` of a segment), as `_scan` finds them,
/// decoded as `decode_event` decodes them. Returns (records: [(event, base + end of its frame)],
/// errors: [(offset of the frame, message)] for the records `decode` refused, the end of the last frame
/// taken (relative to `data`), whether a bad frame (implausible length, CRC mismatch) stopped the scan).
#[pyfunction]
pub fn read_frames<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyBytes>,
    max_frames: usize,
    base: u64,
    event_cls: &Bound<'py, PyAny>,
    decode: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>, usize, bool)> {
    let bytes = data.as_bytes();
    let scanned = py.detach(|| {
        scan_frames(bytes, max_frames, |start, stop| {
            Ok::<_, Infallible>(Frame { start, stop, fields: plain(&bytes[start..stop]) })
        })
    });
    let (frames, pos, bad) = match scanned {
        Ok(scanned) => scanned,
        Err(never) => match never {},
    };
    let records = PyList::empty(py);
    let errors = PyList::empty(py);
    for frame in frames {
        let end = base + frame.stop as u64;
        let payload = &bytes[frame.start..frame.stop];
        let event = match frame.fields {
            Some(fields) => event_cls.call1(event_args(py, fields, payload)?)?,
            None => match decode.call1((PyBytes::new(py, payload),)) {
                Ok(event) => event,
                Err(err) if err.is_instance_of::<PyValueError>(py) => {
                    errors.append(((frame.start - HEADER) as u64 + base, err.value(py).str()?))?;
                    continue;
                }
                Err(err) => return Err(err),
            },
        };
        records.append((event, end))?;
    }
    Ok((records, errors, pos, bad))
}

/// `_scan`: up to `max_frames` frames of `data`, each made into a T by `take(payload start, payload end)`.
/// Returns them, the end of the last frame taken, and whether a bad frame (implausible length, CRC
/// mismatch) stopped the scan; a zero length (a segment's unwritten tail) or a frame cut off by the chunk
/// ends it too (the caller decides). An error of `take` ends it, and is returned.
pub(crate) fn scan_frames<T, E>(
    data: &[u8],
    max_frames: usize,
    mut take: impl FnMut(usize, usize) -> Result<T, E>,
) -> Result<(Vec<T>, usize, bool), E> {
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos + HEADER <= data.len() && frames.len() < max_frames {
        let length = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().expect("4 bytes"));
        if length == 0 {
            break; // the unwritten, zero-filled tail of a segment
        }
        if length > MAX_RECORD {
            return Ok((frames, pos, true));
        }
        let end = pos + HEADER + length;
        if end > data.len() {
            break; // cut off by the chunk: the caller decides
        }
        if crc32fast::hash(&data[pos + HEADER..end]) != crc {
            return Ok((frames, pos, true));
        }
        frames.push(take(pos + HEADER, end)?);
        pos = end;
    }
    Ok((frames, pos, false))
}

/// The fields of a record whose extra is null (the usual case: chain links live in the journal).
fn plain(payload: &[u8]) -> Option<Spooled> {
    let (fields, rest) = Spooled::parse(payload).ok()?;
    (rest.rest() == b"null]").then_some(fields)
}

/// AuditEvent's arguments as decode_event passes them: the record's 18 fields, then its bytes (spooled).
fn event_args<'py>(py: Python<'py>, fields: Spooled, payload: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
    let mut args: Vec<Bound<'py, PyAny>> = Vec::with_capacity(19);
    for text in fields.text {
        args.push(match text {
            Some(text) => PyString::new(py, &text).into_any(),
            None => py.None().into_bound(py),
        });
    }
    args.push(match fields.time {
        Number::U(n) => n.into_pyobject(py)?.into_any(),
        Number::I(n) => n.into_pyobject(py)?.into_any(),
    });
    args.push(fields.trace_id.into_pyobject(py)?.into_any());
    args.push(fields.span_id.into_pyobject(py)?.into_any());
    args.push(fields.trace_flags.into_pyobject(py)?.into_any());
    args.push(py.None().into_bound(py)); // extra
    args.push(PyBytes::new(py, payload).into_any());
    PyTuple::new(py, args)
}
