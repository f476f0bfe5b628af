//! `block`: the Busmaster block layer.
//!
//! * [`BlockDevice`] — what a disk driver implements: its name, sector size, capacity,
//!   [`QueueLimits`], one [`submit`](BlockDevice::submit) of a request that already
//!   fits the limits, and flush. The provided [`read`](BlockDevice::read) and
//!   [`write`](BlockDevice::write) check the request against the disk and split it
//!   with [`split_request`] before submitting.
//! * [`QueueLimits`] — Linux's `queue_limits` subset that matters for DMA: maximum
//!   segments, maximum segment size and segment boundary (the device's `dma_parms`,
//!   [`QueueLimits::from_dma`]), and the most sectors one command can move.
//! * [`split_request`] — Linux's `bio_split_rw` rule on a physical scatter list: no
//!   request has more than `max_segments` segments (physically contiguous pieces that
//!   merge, within the segment size and boundary) or more than `max_sectors` sectors,
//!   and every request is a whole number of sectors.
//! * [`sd_name`] / [`nvme_name`] — `sda`, …, `sdz`, `sdaa`, … and `nvme0n1`.
//! * [`pattern`] — the seeded byte pattern of `blk write`/`blk verify`.
//! * [`trace`] — the drivers' record of one command's segments and PRDT/PRP entries
//!   (`blk read --show-sg`).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod pattern;
pub mod trace;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use dma::{DmaParams, SgEntry, SgTable};
use hal::PhysAddr;

/// Direction of a block request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Disk → memory.
    Read,
    /// Memory → disk.
    Write,
}

/// Why a block request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// The request reaches past the end of the disk.
    OutOfRange {
        /// First sector asked for.
        lba: u64,
        /// Sectors asked for.
        count: u64,
        /// Sectors on the disk.
        capacity: u64,
    },
    /// The scatter list is not a whole number of sectors (or is empty).
    NotSectorMultiple {
        /// Bytes in the scatter list.
        len: usize,
        /// Sector size.
        sector: usize,
    },
    /// A scatter-list entry has length zero.
    EmptySegment,
    /// The limits cannot carry even one sector (e.g. one segment of 2 bytes at most
    /// with 512-byte sectors), or are zero.
    LimitsTooSmall(QueueLimits),
    /// Two pieces of the buffer meet with a gap that breaks the device's virtual
    /// boundary (an NVMe PRP: only the first piece may start, and only the last may
    /// end, inside a page) and the gap falls inside a sector, so no split can help:
    /// the buffer must be bounced.
    GapInSector {
        /// Byte offset of the gap in the transfer.
        offset: usize,
        /// The boundary mask (page size − 1).
        mask: u64,
    },
    /// The driver carries one request at a time: [`BlockDevice::start`] is not
    /// offered (queue depth 1).
    NotQueued {
        /// Disk name.
        disk: String,
    },
    /// [`BlockDevice::complete`] was called with nothing in flight.
    NothingInFlight,
    /// Every tag is in use: [`BlockDevice::queue_depth`] requests are in flight.
    QueueFull {
        /// The depth reached.
        depth: usize,
    },
    /// [`BlockDevice::start`] could not get DMA resources that requests in flight
    /// hold (bounce slots, IOVA space, pages): nothing was handed to the device.
    /// Retry once a request in flight completes (Linux's `BLK_STS_RESOURCE`); with
    /// none in flight the request does not fit at all.
    Busy {
        /// Disk name.
        disk: String,
        /// First sector of the request.
        lba: u64,
        /// What the DMA API said.
        detail: String,
    },
    /// The device failed the request (the driver's own error, rendered).
    Device {
        /// Disk name.
        disk: String,
        /// First sector of the failed request.
        lba: u64,
        /// What the driver said.
        detail: String,
    },
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::OutOfRange {
                lba,
                count,
                capacity,
            } => write!(
                f,
                "sectors {lba}+{count} beyond the end of the disk ({capacity} sectors)"
            ),
            BlockError::NotSectorMultiple { len, sector } => {
                write!(
                    f,
                    "{len} bytes is not a whole number of {sector}-byte sectors"
                )
            }
            BlockError::EmptySegment => f.write_str("zero-length scatter-list entry"),
            BlockError::LimitsTooSmall(l) => write!(f, "queue limits cannot carry a sector: {l:?}"),
            BlockError::GapInSector { offset, mask } => write!(
                f,
                "a gap at byte {offset} inside a sector breaks the {:#x}-byte virtual boundary: bounce the buffer",
                mask + 1
            ),
            BlockError::NotQueued { disk } => write!(
                f,
                "{disk}: the driver carries one request at a time (queue depth 1)"
            ),
            BlockError::NothingInFlight => f.write_str("no request in flight to complete"),
            BlockError::QueueFull { depth } => {
                write!(f, "{depth} requests already in flight (the queue depth)")
            }
            BlockError::Busy { disk, lba, detail } => write!(
                f,
                "{disk}: no DMA resources for the request at sector {lba} now ({detail}); retry after a request in flight completes"
            ),
            BlockError::Device { disk, lba, detail } => {
                write!(f, "{disk}: I/O error at sector {lba}: {detail}")
            }
        }
    }
}

/// The limits a request must fit (Linux `struct queue_limits`, the DMA part).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    /// Bytes per logical sector.
    pub sector_size: usize,
    /// Most sectors in one request (`max_hw_sectors`).
    pub max_sectors: u64,
    /// Most DMA segments in one request (`max_segments`: the PRDT or PRP list size).
    pub max_segments: usize,
    /// Largest segment in bytes (`max_segment_size`, from `dma_parms`).
    pub max_segment_size: usize,
    /// A segment must not cross an address where bits above this mask change
    /// (`seg_boundary_mask`, from `dma_parms`).
    pub seg_boundary_mask: u64,
    /// Linux's `virt_boundary_mask` (0: none). With a mask `m`, pieces of one request
    /// that are not physically contiguous must meet at `m + 1` boundaries: the earlier
    /// one ends on one and the later one starts on one. NVMe's PRPs need this with
    /// the controller page size; a gap elsewhere ends the request there.
    pub virt_boundary_mask: u64,
}

impl QueueLimits {
    /// Limits from the device's DMA parameters (segment size and boundary) plus what
    /// only the driver knows: its segment table size and command size.
    pub fn from_dma(
        params: &DmaParams,
        sector_size: usize,
        max_segments: usize,
        max_sectors: u64,
    ) -> QueueLimits {
        QueueLimits {
            sector_size,
            max_sectors,
            max_segments,
            max_segment_size: params.max_segment_size,
            seg_boundary_mask: params.segment_boundary_mask,
            virt_boundary_mask: 0,
        }
    }

    /// The same limits with a virtual boundary of `mask` (page size − 1).
    pub fn with_virt_boundary(self, mask: u64) -> QueueLimits {
        QueueLimits {
            virt_boundary_mask: mask,
            ..self
        }
    }

    /// Whether a piece at `next` after a piece ending at `prev_end` breaks the
    /// virtual boundary (contiguous pieces never do).
    pub fn gap_breaks_virt_boundary(&self, prev_end: u64, next: u64) -> bool {
        let m = self.virt_boundary_mask;
        m != 0 && prev_end != next && (prev_end & m != 0 || next & m != 0)
    }

    fn max_bytes(&self) -> usize {
        let b = (self.max_sectors as u128) * (self.sector_size as u128);
        b.min(usize::MAX as u128) as usize
    }

    fn usable(&self) -> bool {
        self.sector_size > 0
            && self.max_sectors > 0
            && self.max_segments > 0
            && self.max_segment_size > 0
    }
}

/// One request that fits the queue limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// First sector.
    pub lba: u64,
    /// Sectors.
    pub sectors: u64,
    /// The memory, physically; the driver maps it through the DMA API.
    pub sg: SgTable,
    /// Segments this request counts as (contiguous pieces merged).
    pub segments: usize,
}

/// First address after `a`'s boundary window (`None`: no boundary above `a`).
fn boundary_end(a: u64, mask: u64) -> Option<u64> {
    (a | mask).checked_add(1)
}

/// Cuts an entry at `max_seg` and at boundaries.
fn pieces(e: SgEntry, max_seg: usize, mask: u64, out: &mut VecDeque<SgEntry>) {
    let mut a = e.phys.as_u64();
    let mut rem = e.len;
    while rem > 0 {
        let to_boundary = boundary_end(a, mask).map_or(u64::MAX, |b| b - a);
        let take = (rem as u64).min(to_boundary).min(max_seg as u64) as usize;
        out.push_back(SgEntry {
            phys: PhysAddr::new(a),
            len: take,
        });
        a = a.wrapping_add(take as u64);
        rem -= take;
    }
}

/// Splits a transfer of `sg` at sector `lba` into requests that fit `limits`.
///
/// Pieces are cut at the segment size and boundary; physically contiguous pieces merge
/// into one segment while the merged segment stays within both. A request ends when
/// it has `max_segments` segments or `max_sectors` sectors; if it then ends inside a
/// sector, the partial sector's bytes move on to the next request (as Linux's
/// `bio_split_rw` rounds a split down to the logical block size).
pub fn split_request(
    lba: u64,
    sg: &SgTable,
    limits: &QueueLimits,
) -> Result<Vec<Request>, BlockError> {
    if !limits.usable() {
        return Err(BlockError::LimitsTooSmall(*limits));
    }
    let ss = limits.sector_size;
    let total: usize = sg.entries().iter().map(|e| e.len).sum();
    if sg.entries().iter().any(|e| e.len == 0) {
        return Err(BlockError::EmptySegment);
    }
    if total == 0 || !total.is_multiple_of(ss) {
        return Err(BlockError::NotSectorMultiple {
            len: total,
            sector: ss,
        });
    }
    let mut queue = VecDeque::new();
    for e in sg.entries() {
        pieces(
            *e,
            limits.max_segment_size,
            limits.seg_boundary_mask,
            &mut queue,
        );
    }
    let max_bytes = limits.max_bytes();
    let mut out = Vec::new();
    let mut cur: Vec<SgEntry> = Vec::new();
    let mut bytes = 0usize;
    let mut segs = 0usize;
    // The current (last) segment: start and length.
    let mut last: Option<(u64, usize)> = None;
    let mut next_lba = lba;

    let close = |cur: &mut Vec<SgEntry>,
                 bytes: &mut usize,
                 segs: &mut usize,
                 last: &mut Option<(u64, usize)>,
                 queue: &mut VecDeque<SgEntry>,
                 next_lba: &mut u64,
                 out: &mut Vec<Request>|
     -> Result<(), BlockError> {
        let mut excess = *bytes % ss;
        while excess > 0 {
            let Some(e) = cur.pop() else { break };
            if e.len <= excess {
                excess -= e.len;
                *bytes -= e.len;
                queue.push_front(e);
            } else {
                let keep = e.len - excess;
                queue.push_front(SgEntry {
                    phys: e.phys + keep as u64,
                    len: excess,
                });
                cur.push(SgEntry {
                    phys: e.phys,
                    len: keep,
                });
                *bytes -= excess;
                excess = 0;
            }
        }
        if cur.is_empty() || *bytes == 0 {
            return Err(BlockError::LimitsTooSmall(*limits));
        }
        let sectors = (*bytes / ss) as u64;
        // Trimming may have removed a segment: count what is left.
        let segments = count_segments(cur, limits);
        out.push(Request {
            lba: *next_lba,
            sectors,
            // SAFETY: every entry of `cur` is a sub-range of an entry of the caller's
            // table, whose unsafe constructor vouched for that memory.
            #[allow(unsafe_code)]
            sg: unsafe { SgTable::from_entries(core::mem::take(cur)) },
            segments,
        });
        *next_lba += sectors;
        *bytes = 0;
        *segs = 0;
        *last = None;
        Ok(())
    };

    while let Some(mut p) = queue.pop_front() {
        let room = max_bytes - bytes;
        if room == 0 {
            queue.push_front(p);
            close(
                &mut cur,
                &mut bytes,
                &mut segs,
                &mut last,
                &mut queue,
                &mut next_lba,
                &mut out,
            )?;
            continue;
        }
        if p.len > room {
            queue.push_front(SgEntry {
                phys: p.phys + room as u64,
                len: p.len - room,
            });
            p.len = room;
        }
        let a = p.phys.as_u64();
        let prev_end = cur.last().map(|e| e.phys.as_u64() + e.len as u64);
        if prev_end.is_some_and(|end| limits.gap_breaks_virt_boundary(end, a)) {
            if !bytes.is_multiple_of(ss) {
                return Err(BlockError::GapInSector {
                    offset: (next_lba - lba) as usize * ss + bytes,
                    mask: limits.virt_boundary_mask,
                });
            }
            queue.push_front(p);
            close(
                &mut cur,
                &mut bytes,
                &mut segs,
                &mut last,
                &mut queue,
                &mut next_lba,
                &mut out,
            )?;
            continue;
        }
        let merges = last.is_some_and(|(s, l)| {
            s.checked_add(l as u64) == Some(a)
                && l + p.len <= limits.max_segment_size
                && (s | limits.seg_boundary_mask)
                    == ((a + p.len as u64 - 1) | limits.seg_boundary_mask)
        });
        if !merges && segs == limits.max_segments {
            queue.push_front(p);
            close(
                &mut cur,
                &mut bytes,
                &mut segs,
                &mut last,
                &mut queue,
                &mut next_lba,
                &mut out,
            )?;
            continue;
        }
        if merges {
            if let Some((_, l)) = last.as_mut() {
                *l += p.len;
            }
        } else {
            segs += 1;
            last = Some((a, p.len));
        }
        bytes += p.len;
        cur.push(p);
    }
    if !cur.is_empty() {
        close(
            &mut cur,
            &mut bytes,
            &mut segs,
            &mut last,
            &mut queue,
            &mut next_lba,
            &mut out,
        )?;
        if !queue.is_empty() {
            // Only possible if the total was not a sector multiple (checked above).
            return Err(BlockError::NotSectorMultiple {
                len: total,
                sector: ss,
            });
        }
    }
    Ok(out)
}

/// Segments a scatter list counts as under `limits`: contiguous entries merge while
/// the merged segment stays within the size and boundary.
pub fn count_segments(entries: &[SgEntry], limits: &QueueLimits) -> usize {
    let mut n = 0;
    let mut last: Option<(u64, usize)> = None;
    for e in entries {
        let a = e.phys.as_u64();
        let merges = last.is_some_and(|(s, l)| {
            s.checked_add(l as u64) == Some(a)
                && l + e.len <= limits.max_segment_size
                && (s | limits.seg_boundary_mask)
                    == ((a + e.len as u64 - 1) | limits.seg_boundary_mask)
        });
        if merges {
            if let Some((_, l)) = last.as_mut() {
                *l += e.len;
            }
        } else {
            n += 1;
            last = Some((a, e.len));
        }
    }
    n
}

/// Names one request in flight: what [`BlockDevice::start`] returned, given back by
/// [`BlockDevice::complete`] (the driver's command identifier or slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(pub u32);

/// A disk, as a driver exposes it to the block layer.
///
/// Requests run either one at a time ([`submit`](Self::submit): the call returns when
/// the device is done) or, where [`queue_depth`](Self::queue_depth) is above 1,
/// several at once: [`start`](Self::start) hands one to the device and returns, and
/// [`complete`](Self::complete) waits for whichever ends next. A driver that offers
/// `start` ends every started request exactly once through `complete`, also when a
/// timeout or a controller reset ends it (with an error), and unmaps a request's
/// memory only once the device can no longer reach it.
pub trait BlockDevice {
    /// The Linux-style name (`sda`, `nvme0n1`).
    fn name(&self) -> &str;
    /// Bytes per logical sector.
    fn sector_size(&self) -> usize;
    /// Size in sectors.
    fn capacity(&self) -> u64;
    /// What one request may carry.
    fn limits(&self) -> QueueLimits;
    /// Carries out one request that fits [`limits`](Self::limits) (the block layer
    /// split it) and gives the scatter list back.
    fn submit(&mut self, op: Op, req: Request) -> Result<SgTable, BlockError>;
    /// Writes the device's volatile cache to the medium.
    fn flush(&mut self) -> Result<(), BlockError>;

    /// Most requests [`start`](Self::start) may have in flight together (1: the
    /// driver carries one request at a time and does not offer `start`).
    fn queue_depth(&self) -> usize {
        1
    }

    /// Hands one request that fits [`limits`](Self::limits) to the device without
    /// waiting for it. The memory in `req.sg` must stay allocated until
    /// [`complete`](Self::complete) returns this request's tag.
    /// [`BlockError::Busy`] when the DMA mapping ran short of what requests in
    /// flight hold: nothing was started, and the same request can be started
    /// again after a [`complete`](Self::complete).
    fn start(&mut self, op: Op, req: Request) -> Result<Tag, BlockError> {
        let _ = (op, req);
        Err(BlockError::NotQueued {
            disk: self.name().into(),
        })
    }

    /// Waits (bounded by the driver's command timeout) for the next started request
    /// to end and returns its tag, and its scatter list or why it failed.
    /// `Err(NothingInFlight)` if none was started.
    fn complete(&mut self) -> Result<(Tag, Result<SgTable, BlockError>), BlockError> {
        Err(BlockError::NothingInFlight)
    }

    /// Reads `sg`'s length in sectors from sector `lba` into `sg`.
    fn read(&mut self, lba: u64, sg: &SgTable) -> Result<(), BlockError> {
        transfer(self, Op::Read, lba, sg)
    }

    /// Writes `sg` to the disk from sector `lba`.
    fn write(&mut self, lba: u64, sg: &SgTable) -> Result<(), BlockError> {
        transfer(self, Op::Write, lba, sg)
    }
}

/// Checks a transfer against the disk, splits it and submits the pieces in order;
/// stops at the first error.
pub fn transfer<D: BlockDevice + ?Sized>(
    dev: &mut D,
    op: Op,
    lba: u64,
    sg: &SgTable,
) -> Result<(), BlockError> {
    let limits = dev.limits();
    let ss = limits.sector_size;
    let total: usize = sg.entries().iter().map(|e| e.len).sum();
    if ss == 0 || total == 0 || !total.is_multiple_of(ss) {
        return Err(BlockError::NotSectorMultiple {
            len: total,
            sector: ss,
        });
    }
    let count = (total / ss) as u64;
    let cap = dev.capacity();
    if lba.checked_add(count).is_none_or(|end| end > cap) {
        return Err(BlockError::OutOfRange {
            lba,
            count,
            capacity: cap,
        });
    }
    for req in split_request(lba, sg, &limits)? {
        dev.submit(op, req)?;
    }
    Ok(())
}

/// Linux's SCSI disk name for the `index`-th disk (0 → `sda`, 25 → `sdz`, 26 → `sdaa`,
/// 701 → `sdzz`, 702 → `sdaaa`): bijective base 26, as `sd_format_disk_name`.
pub fn sd_name(index: usize) -> String {
    let mut letters = Vec::new();
    let mut n = index + 1;
    while n > 0 {
        n -= 1;
        letters.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    let mut s = String::from("sd");
    for &c in letters.iter().rev() {
        s.push(c as char);
    }
    s
}

/// Linux's NVMe namespace name: controller instance and namespace id (`nvme0n1`).
pub fn nvme_name(controller: usize, nsid: u32) -> String {
    alloc::format!("nvme{controller}n{nsid}")
}

#[cfg(test)]
mod tests;
