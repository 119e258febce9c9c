//! The store's chain verification at engine speed: a tenant's stored events, as the engine streams them in
//! `RowBinary`, hashed with chain.py's definition (drain.rs's `link_digest`, the one the SDK links with) and
//! folded into *runs*: maximal stretches of a chain whose events each hash to their stored hash, follow each
//! other seq by seq and link each to the one before, joined in whatever order the rows arrive (the export's
//! is the event ids', UUIDv7: time order, nearly a chain's seq order; memory holds the runs still apart). A
//! run is all `auditrail.verify.verify_records` needs of those events (it checks the run's first link against what precedes it, counts its events, and anchors or
//! reports its tail by seq), so Python holds a few runs per chain instead of an object per event.
//!
//! Every other row comes back whole, for Python to build the record verify_records judges itself: unchained
//! rows, checkpoints (their signatures), rows whose content does not hash to their stored hash (edited), rows
//! without a seq or prev_hash or with a seq beyond 2**53 (chain.py hashes those with the rfc8785 package) and
//! rows with text that is not UTF-8. Runs never cross a `cut` (the seqs that checkpoints cover: verify_records
//! needs the hash at each). Overlapping seqs (duplicates, conflicts) are left for the caller to detect: it then
//! re-reads the chain with `runs=False`, where each plain row is a run of one, in stream order with the rest.
//!
//! The columns, in the query's order (verify_scan.py's `_SCAN_COLUMNS`): the 13 hashed fields in drain.rs's
//! `SLOTS` order as Nullable(String) (the event type NULL when empty, as the export's reader takes it), the
//! time as Int64 ns, chain id Nullable(String), seq Nullable(UInt64), prev_hash and hash Nullable(String).
use std::collections::{BTreeMap, HashMap, HashSet};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::drain::{link_digest, HashedFields, SAFE_INT};

const FIELDS: usize = 13;
const EVENT_TYPE: usize = 0;
const EVENT_ID: usize = 12;
const CHECKPOINT: &str = "audit.checkpoint";

/// One row, its text borrowed from the stream's buffer (None: NULL).
struct Row<'a> {
    text: [Option<&'a [u8]>; FIELDS],
    time: i64,
    time_text: String,
    chain_id: Option<&'a [u8]>,
    seq: Option<u64>,
    prev: Option<&'a [u8]>,
    hash: Option<&'a [u8]>,
}

/// The same row once its text is known to be UTF-8 (the hashed form).
struct Utf8Row<'r, 'a> {
    row: &'r Row<'a>,
}

impl HashedFields for Utf8Row<'_, '_> {
    fn field(&self, i: usize) -> Option<&str> {
        // Checked by `utf8_ok` before a Utf8Row is made.
        self.row.text[i].map(|b| unsafe { std::str::from_utf8_unchecked(b) })
    }
    fn time(&self) -> &str {
        &self.row.time_text
    }
}

/// Reads RowBinary values; Err(()) when the buffer ends first (a row cut between two chunks).
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, ()> {
        let b = *self.data.get(self.at).ok_or(())?;
        self.at += 1;
        Ok(b)
    }

    fn fixed8(&mut self) -> Result<[u8; 8], ()> {
        let bytes = self.data.get(self.at..self.at + 8).ok_or(())?;
        self.at += 8;
        Ok(bytes.try_into().expect("8 bytes"))
    }

    fn varint(&mut self) -> Result<usize, ()> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return usize::try_from(value).map_err(|_| ());
            }
        }
        Err(())
    }

    fn text(&mut self) -> Result<Option<&'a [u8]>, ()> {
        if self.byte()? != 0 {
            return Ok(None);
        }
        let len = self.varint()?;
        let bytes = self.data.get(self.at..self.at + len).ok_or(())?;
        self.at += len;
        Ok(Some(bytes))
    }

    fn row(&mut self) -> Result<Row<'a>, ()> {
        let mut text: [Option<&'a [u8]>; FIELDS] = [None; FIELDS];
        for slot in text.iter_mut() {
            *slot = self.text()?;
        }
        let time = i64::from_le_bytes(self.fixed8()?);
        let chain_id = self.text()?;
        let seq = if self.byte()? != 0 { None } else { Some(u64::from_le_bytes(self.fixed8()?)) };
        let prev = self.text()?;
        let hash = self.text()?;
        Ok(Row { text, time, time_text: String::new(), chain_id, seq, prev, hash })
    }
}

/// A stretch of verified links: seqs `first..=last`, `prev` the prev_hash of `first`, `hash` the hash of `last`.
struct Run {
    first: u64,
    last: u64,
    prev: String,
    hash: String,
    event_id: Option<String>,
}

#[derive(Default)]
struct Chain {
    range: Option<(u64, u64)>,
    cuts: HashSet<u64>,
    open: BTreeMap<u64, Run>, // by first seq, disjoint: rows join them in whatever order they arrive
    strays: Vec<Run>,         // rows whose seq an open run holds already: left for verify_records to refuse
}

impl Chain {
    /// Join a verified row (a run of one) to the runs it links to: the one ending at seq - 1 if the row's
    /// prev_hash is that run's hash, the one starting at seq + 1 if that run's prev_hash is the row's hash; never
    /// across a cut (a seq a checkpoint covers ends a run).
    fn add(&mut self, mut run: Run) {
        let seq = run.first;
        if self.open.range(..=seq).next_back().is_some_and(|(_, b)| b.last >= seq) {
            self.strays.push(run); // a seq claimed twice
            return;
        }
        let joins_after = self.open.get(&(seq + 1)).is_some_and(|a| a.prev == run.hash && !self.cuts.contains(&seq));
        let after = if joins_after { self.open.remove(&(seq + 1)) } else { None };
        if let Some(after) = after {
            run.last = after.last;
            run.hash = after.hash;
        }
        let cuts = &self.cuts;
        if let Some(before) = self.open.range_mut(..seq).next_back().map(|(_, r)| r) {
            if before.last + 1 == seq && before.hash == run.prev && !cuts.contains(&before.last) {
                before.last = run.last;
                before.hash = run.hash;
                return;
            }
        }
        self.open.insert(seq, run);
    }
}

/// What a row became: returned to Python in stream order.
enum Item {
    Row(Vec<Option<String>>, i64, Option<String>, Option<u64>, Option<String>, Option<String>),
    Run(String, Run),
}

/// The scan of one stream (see the module docs).
#[pyclass(module = "auditrail_native")]
pub struct ChainScan {
    index: HashMap<Vec<u8>, usize>,
    ids: Vec<String>,
    chains: Vec<Chain>,
    order: Vec<usize>, // chains in the order their first seq passed (the export's order of chains)
    cuts: HashMap<String, Vec<u64>>,
    join: bool,
    buffer: Vec<u8>,
    rows: u64,
}

fn lossy(bytes: Option<&[u8]>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(b).into_owned())
}

fn utf8_ok(row: &Row<'_>) -> bool {
    row.text.iter().chain([&row.chain_id, &row.prev, &row.hash]).all(|t| t.is_none_or(|b| std::str::from_utf8(b).is_ok()))
}

impl ChainScan {
    fn chain(&mut self, id: &[u8]) -> usize {
        if let Some(&at) = self.index.get(id) {
            return at;
        }
        let name = String::from_utf8_lossy(id).into_owned();
        let mut chain = Chain::default();
        if let Some(cuts) = self.cuts.get(&name) {
            chain.cuts = cuts.iter().copied().collect();
        }
        self.index.insert(id.to_vec(), self.chains.len());
        self.ids.push(name);
        self.chains.push(chain);
        self.chains.len() - 1
    }

    /// Take one row: None when it joined a run, else what Python gets now.
    fn take(&mut self, row: &Row<'_>, json: &mut Vec<u8>) -> Option<Item> {
        let whole = |row: &Row<'_>| {
            Item::Row(row.text.iter().map(|t| lossy(*t)).collect(), row.time, lossy(row.chain_id), row.seq,
                      lossy(row.prev), lossy(row.hash))
        };
        let Some(id) = row.chain_id else { return Some(whole(row)) };
        let at = self.chain(id);
        let join = self.join;
        let chain = &mut self.chains[at];
        if let Some(seq) = row.seq {
            chain.range = Some(match chain.range {
                None => {
                    self.order.push(at);
                    (seq, seq)
                }
                Some((first, last)) => (first.min(seq), last.max(seq)),
            });
        }
        let (Some(seq), Some(prev), Some(hash)) = (row.seq, row.prev, row.hash) else { return Some(whole(row)) };
        if seq == 0 || seq > SAFE_INT || hash.len() != 64 || row.text[EVENT_TYPE] == Some(CHECKPOINT.as_bytes())
            || !utf8_ok(row)
        {
            return Some(whole(row));
        }
        let fields = Utf8Row { row };
        // SAFETY of the unchecked reads: utf8_ok above.
        let (id_text, prev_text) = unsafe { (std::str::from_utf8_unchecked(id), std::str::from_utf8_unchecked(prev)) };
        if link_digest(json, &fields, id_text, prev_text, seq) != hash[..] {
            return Some(whole(row));
        }
        let hash = unsafe { std::str::from_utf8_unchecked(hash) };
        let run = Run { first: seq, last: seq, prev: prev_text.to_owned(), hash: hash.to_owned(),
                        event_id: fields.field(EVENT_ID).map(str::to_owned) };
        if !join {
            return Some(Item::Run(self.ids[at].clone(), run));
        }
        chain.add(run);
        None
    }
    /// Parse and take every whole row in the buffer; keep a cut-off row's start for the next chunk.
    fn scan(&mut self) -> Vec<Item> {
        let buffer = std::mem::take(&mut self.buffer);
        let mut reader = Reader { data: &buffer, at: 0 };
        let mut items = Vec::new();
        let mut json = Vec::with_capacity(1024);
        loop {
            let start = reader.at;
            if start == buffer.len() {
                break;
            }
            match reader.row() {
                Ok(mut row) => {
                    row.time_text = row.time.to_string();
                    self.rows += 1;
                    if let Some(item) = self.take(&row, &mut json) {
                        items.push(item);
                    }
                }
                Err(()) => {
                    reader.at = start;
                    break;
                }
            }
        }
        self.buffer = buffer[reader.at..].to_vec();
        items
    }
}

fn item_to_py<'py>(py: Python<'py>, item: Item) -> PyResult<Bound<'py, PyTuple>> {
    match item {
        Item::Row(text, time, chain_id, seq, prev, hash) => {
            PyTuple::new(py, [PyTuple::new(py, text)?.into_any(), time.into_pyobject(py)?.into_any(),
                              chain_id.into_pyobject(py)?.into_any(), seq.into_pyobject(py)?.into_any(),
                              prev.into_pyobject(py)?.into_any(), hash.into_pyobject(py)?.into_any()])
        }
        Item::Run(chain_id, run) => run_to_py(py, &chain_id, &run),
    }
}

/// (chain id, first seq, last seq, prev_hash of the first, hash of the last, event id of the first).
fn run_to_py<'py>(py: Python<'py>, chain_id: &str, run: &Run) -> PyResult<Bound<'py, PyTuple>> {
    (chain_id, run.first, run.last, run.prev.as_str(), run.hash.as_str(), run.event_id.as_deref()).into_pyobject(py)
}

#[pymethods]
impl ChainScan {
    /// `cuts`: chain id -> seqs a run must end at;
    /// `runs`: False makes every plain row a run of its own.
    #[new]
    #[pyo3(signature = (cuts, runs = true))]
    fn new(cuts: HashMap<String, Vec<u64>>, runs: bool) -> Self {
        ChainScan { index: HashMap::new(), ids: Vec::new(), chains: Vec::new(), order: Vec::new(), cuts,
                    join: runs, buffer: Vec::new(), rows: 0 }
    }

    /// Take a chunk of the RowBinary stream; returns, in stream order, the rows Python must see whole, as
    /// ((13 fields), time ns, chain id, seq, prev_hash, hash), and with runs=False each plain row's run (the
    /// 6-tuple of `finish`). Parsing and hashing run without the GIL.
    fn feed<'py>(&mut self, py: Python<'py>, chunk: &Bound<'py, PyBytes>) -> PyResult<Bound<'py, PyList>> {
        let bytes = chunk.as_bytes();
        let items = py.detach(|| {
            self.buffer.extend_from_slice(bytes);
            self.scan()
        });
        let list = PyList::empty(py);
        for item in items {
            list.append(item_to_py(py, item)?)?;
        }
        Ok(list)
    }

    /// The end of the stream: (rows read, chain ids in the order their first seq passed, {chain id: (first seq,
    /// last seq)}, runs as (chain id, first seq, last seq, prev_hash, hash, event id) tuples). Raises
    /// ValueError when the stream stopped inside a row.
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        if !self.buffer.is_empty() {
            return Err(PyValueError::new_err(format!("the event stream ended inside a row ({} bytes left)",
                                                     self.buffer.len())));
        }
        let order = PyList::empty(py);
        let ranges = PyDict::new(py);
        for &at in &self.order {
            order.append(&self.ids[at])?;
            ranges.set_item(&self.ids[at], self.chains[at].range)?;
        }
        let runs = PyList::empty(py);
        for (at, chain) in self.chains.iter_mut().enumerate() {
            for run in chain.open.values().chain(&chain.strays) {
                runs.append(run_to_py(py, &self.ids[at], run)?)?;
            }
        }
        (self.rows, order, ranges, runs).into_pyobject(py)
    }
}
