//! `blkbench`'s measurement: one mode's share of the reads, either one request at a
//! time (qd 1, each request TSC-timed on its own) or with `qd` reads kept in flight
//! through the block layer's `start`/`complete`.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ops::Range;

use super::super::{with_blk, BlkError};
use super::BenchError;
use crate::arch::tsc;
use block::pattern::mix;

/// What to read: the same for every mode and round.
pub(super) struct Plan<'a> {
    pub dev: &'a str,
    /// Bytes per request.
    pub bs: u64,
    /// Sectors per request.
    pub per: u64,
    /// Sector size.
    pub ss: u64,
    /// How many request-sized slots the disk has.
    pub slots: u64,
    pub random: bool,
    /// One scatter-list entry per request instead of one per page.
    pub contig: bool,
    /// Reads in flight at once (1: synchronous).
    pub qd: usize,
}

impl Plan<'_> {
    /// The first sector of request `i`: sequential, or a pseudo-random slot that is
    /// a function of `i` alone, so any range of requests reads the same sectors in
    /// every mode and round.
    pub fn lba_of(&self, i: u64) -> u64 {
        let slot = if self.random {
            mix(i ^ 0x2545_f491_4f6c_dd1d) % self.slots
        } else {
            i % self.slots
        };
        slot * self.per
    }
}

/// What one run of a range of requests measured.
#[derive(Default)]
pub(super) struct Sample {
    /// Each request's time from handing it to the driver to its completion.
    pub lat_ns: Vec<u64>,
    /// qd 1: the sum of the requests' times (the device is idle in between);
    /// qd > 1: from the first start to the last completion.
    pub busy_ns: u64,
    pub bytes: u64,
    /// Order-independent checksum of what was read: at qd 1 taken after each
    /// request's timed part; at qd > 1 from a second, untimed pass over the same
    /// requests at the same depth (taken in the timed pass, reading the words would
    /// hold up the starting of reads and cap the throughput measured).
    pub sum: u64,
    /// The request's scatter list mapped and unmapped on the mode's DMA device,
    /// no I/O: the DMA API's share of a request.
    pub dma_ns: Vec<u64>,
    /// qd > 1: starts refused for want of DMA resources that reads in flight held
    /// (bounce slots, IOVA space), each retried after the next completion.
    pub waited: u64,
}

impl Sample {
    pub fn merge(&mut self, o: Sample) {
        self.lat_ns.extend(o.lat_ns);
        self.dma_ns.extend(o.dma_ns);
        self.busy_ns += o.busy_ns;
        self.bytes += o.bytes;
        self.waited += o.waited;
        self.sum = self.sum.wrapping_add(o.sum);
    }
}

/// One request's share of the checksum: three words of every sector (its start,
/// middle and end), each mixed with its sector number and place. Requests add up,
/// so the order they complete in does not matter.
fn request_sum(buf: &dma::DmaBuf, lba: u64, per: u64, ss: u64) -> u64 {
    let mut sum = 0u64;
    for s in 0..per {
        for (k, off) in [0, ss / 2, ss - 8].into_iter().enumerate() {
            let mut w = [0u8; 8];
            buf.read((s * ss + off) as usize, &mut w);
            let v = u64::from_le_bytes(w) ^ (lba + s).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            sum = sum.wrapping_add(mix(v ^ k as u64));
        }
    }
    sum
}

/// A buffer of `len` bytes and its scatter list: one entry per page (as a page
/// cache's pages would come; the buffer is contiguous, so the DMA API may merge
/// them), or one entry with `contig`.
fn buffer(len: usize, contig: bool) -> Result<(dma::DmaBuf, dma::SgTable), BenchError> {
    let buf = dma::DmaBuf::alloc(&crate::dma::PLATFORM, len).map_err(BlkError::Alloc)?;
    let mut sg = dma::SgTable::new();
    let mut off = 0;
    while off < len {
        let n = if contig {
            len
        } else {
            (len - off).min(dma::PAGE_SIZE)
        };
        // SAFETY: a piece of `buf`, an owned DmaBuf that the caller keeps until
        // every request on `sg` has completed.
        unsafe { sg.push(buf.phys() + off as u64, n) };
        off += n;
    }
    Ok((buf, sg))
}

/// Reads requests `range` through the disk's current DMA device: one untimed
/// request first (the emulator translates the code path on first use), then the
/// range, then a few map/unmap rounds of the same list without I/O.
pub(super) fn run_range(p: &Plan<'_>, range: Range<u64>) -> Result<Sample, BenchError> {
    let len = p.bs as usize;
    let bufs = (0..p.qd)
        .map(|_| buffer(len, p.contig))
        .collect::<Result<Vec<_>, _>>()?;
    with_blk(p.dev, |d, _| d.read(0, &bufs[0].1))?.map_err(BlkError::Io)?;
    let mut s = if p.qd == 1 {
        run_sync(p, range.clone(), &bufs[0])?
    } else {
        let mut timed = run_queued(p, range.clone(), &bufs, false)?;
        timed.sum = run_queued(p, range.clone(), &bufs, true)?.sum;
        timed
    };
    s.bytes = p.bs * (range.end - range.start);
    let sg = &bufs[0].1;
    for _ in 0..16 {
        let (r, ticks) = with_blk(p.dev, |_, dev| {
            let t0 = tsc::rdtsc();
            let r = dev
                .map_sg(sg.clone(), dma::DmaDirection::FromDevice)
                .map(|m| drop(m.unmap()));
            (r, tsc::rdtsc() - t0)
        })?;
        r.map_err(BenchError::Dma)?;
        s.dma_ns.push(tsc::ticks_to_ns(ticks));
    }
    Ok(s)
}

fn run_sync(
    p: &Plan<'_>,
    range: Range<u64>,
    (buf, sg): &(dma::DmaBuf, dma::SgTable),
) -> Result<Sample, BenchError> {
    let mut s = Sample::default();
    for i in range {
        let lba = p.lba_of(i);
        let (r, ticks) = with_blk(p.dev, |d, _| {
            let t0 = tsc::rdtsc();
            let r = d.read(lba, sg);
            (r, tsc::rdtsc() - t0)
        })?;
        r.map_err(BlkError::Io)?;
        let ns = tsc::ticks_to_ns(ticks);
        s.lat_ns.push(ns);
        s.busy_ns += ns;
        s.sum = s.sum.wrapping_add(request_sum(buf, lba, p.per, p.ss));
    }
    Ok(s)
}

/// Keeps `bufs.len()` reads in flight: starts reads while a buffer is free, then
/// waits for whichever ends next; with `check`, each read's words are summed as it
/// ends. A start refused as busy (the DMA API short of bounce slots or IOVA space
/// that reads in flight hold) is retried after the next completion, as Linux
/// requeues a request on `BLK_STS_RESOURCE`; with nothing in flight it is an error.
/// On any error it still waits for every started read before returning (the
/// buffers are freed after), and reports the first error.
fn run_queued(
    p: &Plan<'_>,
    range: Range<u64>,
    bufs: &[(dma::DmaBuf, dma::SgTable)],
    check: bool,
) -> Result<Sample, BenchError> {
    let limits = with_blk(p.dev, |d, _| d.limits())?;
    // Each read must be one command: the block layer's split is for `submit`.
    let pieces = block::split_request(0, &bufs[0].1, &limits).map_err(BlkError::Io)?;
    if pieces.len() != 1 {
        return Err(BenchError::MoreThanOneCommand {
            bs: p.bs,
            pieces: pieces.len(),
        });
    }
    let segments = pieces[0].segments;
    with_blk(p.dev, |d, _| {
        let mut s = Sample::default();
        let mut free: Vec<usize> = (0..bufs.len()).rev().collect();
        // tag -> (buffer, lba, start tsc)
        let mut inflight: BTreeMap<block::Tag, (usize, u64, u64)> = BTreeMap::new();
        let mut next = range.start;
        let mut first_err: Option<BenchError> = None;
        let t_start = tsc::rdtsc();
        loop {
            while first_err.is_none() && next < range.end {
                let Some(b) = free.pop() else { break };
                let lba = p.lba_of(next);
                let req = block::Request {
                    lba,
                    sectors: p.per,
                    sg: bufs[b].1.clone(),
                    segments,
                };
                let t0 = tsc::rdtsc();
                match d.start(block::Op::Read, req) {
                    Ok(tag) => {
                        inflight.insert(tag, (b, lba, t0));
                        next += 1;
                    }
                    Err(block::BlockError::Busy { .. }) if !inflight.is_empty() => {
                        free.push(b);
                        s.waited += 1;
                        break;
                    }
                    Err(e) => {
                        free.push(b);
                        first_err = Some(BlkError::Io(e).into());
                    }
                }
            }
            if inflight.is_empty() {
                break;
            }
            let (tag, r) = match d.complete() {
                Ok(done) => done,
                Err(e) => {
                    // The driver lost track of what is in flight: nothing more
                    // can be waited for.
                    return Err(first_err.unwrap_or(BlkError::Io(e).into()));
                }
            };
            let t1 = tsc::rdtsc();
            let Some((b, lba, t0)) = inflight.remove(&tag) else {
                first_err.get_or_insert(BenchError::UnknownTag(tag.0));
                continue;
            };
            free.push(b);
            match r {
                Ok(_) => {
                    s.lat_ns.push(tsc::ticks_to_ns(t1 - t0));
                    if check {
                        let part = request_sum(&bufs[b].0, lba, p.per, p.ss);
                        s.sum = s.sum.wrapping_add(part);
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(BlkError::Io(e).into());
                }
            }
        }
        s.busy_ns = tsc::ticks_to_ns(tsc::rdtsc() - t_start).max(1);
        match first_err {
            Some(e) => Err(e),
            None => Ok(s),
        }
    })?
}
