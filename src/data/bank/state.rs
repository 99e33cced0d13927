//! The bank's content ([`BankState`]: entries and counters per tail class) and its file
//! format ([`BankState::save`], [`BankState::load`]).

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::entry::{Entry, BYTES_PER_PIXEL};
use crate::data::folder::Fnv;
use crate::data::{bad, io_err};
use crate::error::Result;

/// Counters of one tail class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(super) struct Counters {
    pub(super) updates: u64,
    pub(super) pastes: u64,
    pub(super) skipped: u64,
    pub(super) pixels: u64,
}

/// The bank's content: per tail class its entries (behind `Arc`, so a clone is cheap) and
/// counters. Carried by each [`Batch`](crate::data::Batch) of a loader with a bank; saved
/// with a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct BankState {
    pub(super) tail: Vec<u8>,
    pub(super) entries: Vec<Vec<Arc<Entry>>>,
    pub(super) counters: Vec<Counters>,
}

/// Magic bytes of a saved bank.
const MAGIC: &[u8; 8] = b"WGSEGBNK";
/// Version of the file format.
const VERSION: u32 = 1;

/// The JSON header of a saved bank.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    tail: Vec<u8>,
    counters: Vec<Counters>,
    entries: Vec<EntryHeader>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryHeader {
    class: u8,
    crop: (usize, usize),
    origin: (usize, usize),
    size: (usize, usize),
}

impl BankState {
    /// The tail classes, in the bank's order.
    pub fn tail(&self) -> &[u8] {
        &self.tail
    }

    /// The entries of class `class` (empty for a class not in the tail).
    pub fn entries(&self, class: u8) -> &[Arc<Entry>] {
        self.tail
            .iter()
            .position(|&c| c == class)
            .map(|t| self.entries[t].as_slice())
            .unwrap_or(&[])
    }

    /// Payload bytes (values and masks of every entry).
    pub fn bytes(&self) -> usize {
        self.entries.iter().flatten().map(|e| e.bytes()).sum()
    }

    /// Writes the state to `path` atomically (a temporary file in the same directory, then
    /// a rename). Format: `WGSEGBNK`, version (u32 LE), header length (u32 LE), a JSON
    /// header (tail classes, counters, each entry's class / crop / origin / size), then per
    /// entry its values (f32 LE) and mask bytes, then an FNV-1a 64 checksum (u64 LE) of
    /// everything before it.
    pub fn save(&self, path: &Path) -> Result<()> {
        let header = Header {
            tail: self.tail.clone(),
            counters: self.counters.clone(),
            entries: self
                .entries
                .iter()
                .flatten()
                .map(|e| EntryHeader {
                    class: e.class,
                    crop: e.crop,
                    origin: e.origin,
                    size: e.size,
                })
                .collect(),
        };
        let head = serde_json::to_vec(&header).map_err(|e| bad(path, e.to_string()))?;
        let mut bytes = Vec::with_capacity(24 + head.len() + self.bytes());
        bytes.extend_from_slice(MAGIC);
        bytes.extend(VERSION.to_le_bytes());
        bytes.extend((head.len() as u32).to_le_bytes());
        bytes.extend(head);
        for e in self.entries.iter().flatten() {
            bytes.extend(e.pixels.iter().flat_map(|v| v.to_le_bytes()));
            bytes.extend_from_slice(&e.mask);
        }
        let mut h = Fnv::new();
        h.bytes(&bytes);
        bytes.extend(h.0.to_le_bytes());
        crate::fsio::atomic_write(path, &bytes)
    }

    /// Reads a state written by [`save`](Self::save). Every problem (missing file, bad
    /// magic or version, checksum mismatch, inconsistent entries) is an error naming `path`.
    pub fn load(path: &Path) -> Result<BankState> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let err = |msg: String| bad(path, format!("not a valid memory-bank file: {msg}"));
        if bytes.len() < 24 || &bytes[..8] != MAGIC {
            return Err(err("no WGSEGBNK header".into()));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let mut h = Fnv::new();
        h.bytes(body);
        if h.0.to_le_bytes() != sum {
            return Err(err("checksum mismatch (truncated or corrupt)".into()));
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
        let version = u32_at(8);
        if version != VERSION {
            return Err(err(format!(
                "format version {version}, this build reads {VERSION}"
            )));
        }
        let hl = u32_at(12) as usize;
        if body.len() < 16 + hl {
            return Err(err("header longer than the file".into()));
        }
        let header: Header =
            serde_json::from_slice(&body[16..16 + hl]).map_err(|e| err(e.to_string()))?;
        if header.counters.len() != header.tail.len() {
            return Err(err(format!(
                "{} counters for {} tail classes",
                header.counters.len(),
                header.tail.len()
            )));
        }
        let mut entries: Vec<Vec<Arc<Entry>>> = vec![Vec::new(); header.tail.len()];
        let mut at = 16 + hl;
        for (i, eh) in header.entries.iter().enumerate() {
            let e = read_entry(eh, body, &mut at).map_err(|m| err(format!("entry {i}: {m}")))?;
            let t = header
                .tail
                .iter()
                .position(|&c| c == e.class)
                .ok_or_else(|| {
                    err(format!(
                        "entry {i} is of class {}, not a tail class",
                        e.class
                    ))
                })?;
            entries[t].push(Arc::new(e));
        }
        if at != body.len() {
            return Err(err(format!(
                "{} bytes after the last entry",
                body.len() - at
            )));
        }
        Ok(BankState {
            tail: header.tail,
            entries,
            counters: header.counters,
        })
    }
}

/// Reads one entry's data at `*at` and checks it against its header.
fn read_entry(eh: &EntryHeader, body: &[u8], at: &mut usize) -> std::result::Result<Entry, String> {
    let (ch, cw) = eh.crop;
    let (rh, rw) = eh.size;
    let (oy, ox) = eh.origin;
    if ch == 0 || cw == 0 || rh == 0 || rw == 0 || oy + rh > ch || ox + rw > cw {
        return Err(format!(
            "region {:?} + {:?} does not fit its crop {:?}",
            eh.origin, eh.size, eh.crop
        ));
    }
    let n = rh * rw;
    let len = n * BYTES_PER_PIXEL;
    if body.len() < *at + len {
        return Err("data past the end of the file".into());
    }
    let data = &body[*at..*at + len];
    *at += len;
    let pixels: Vec<f32> = data[..12 * n]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mask = data[12 * n..].to_vec();
    if mask.iter().any(|&m| m > 1) {
        return Err("mask values other than 0 and 1".into());
    }
    let mut bbox: Option<[usize; 4]> = None;
    for y in 0..rh {
        for x in 0..rw {
            if mask[y * rw + x] != 0 {
                let b = bbox.get_or_insert([oy + y, ox + x, oy + y, ox + x]);
                b[1] = b[1].min(ox + x);
                b[2] = oy + y;
                b[3] = b[3].max(ox + x);
            }
        }
    }
    let bbox = bbox.ok_or("an empty mask")?;
    if Entry::region(bbox, eh.crop) != (eh.origin, eh.size) {
        return Err("the region is not the mask's bounding box grown by one pixel".into());
    }
    Ok(Entry {
        class: eh.class,
        crop: eh.crop,
        origin: eh.origin,
        size: eh.size,
        bbox,
        pixels,
        mask,
    })
}
