//! Scatter-gather (Linux `dma_map_sgtable`, hw-facts §3.6).
//!
//! Each table entry is cut into pieces that respect the device's `max_segment_size`
//! and segment boundary (and the swiotlb's 256 KiB limit, so any piece can bounce), each
//! piece goes through the choke point (direct, bounce or IOMMU), and the resulting bus
//! ranges are merged where they are contiguous, again within the segment limits. Unlike
//! Linux's dma-direct (which never merges) contiguous direct entries merge too; the rules
//! are the ones dma-iommu applies.
//!
//! Behind an IOMMU the whole list gets **one** IOVA range (Linux's
//! `iommu_dma_map_sg`): each entry is widened to whole granules (its offset in
//! the first page kept, its last page filled up), the widened entries are laid
//! out back to back in a single allocation, mapped, and unmapped, flushed and
//! freed as one. Where an entry ends on a page boundary and the next starts at
//! offset 0 (the usual case: page-sized pieces) the device sees one contiguous
//! run and the segments merge. An *unaligned interior* piece (one ending inside
//! a page, or a later one starting inside a page) cannot be glued to its
//! neighbour in bus space without exposing the neighbouring bytes of the page,
//! so the range stays one allocation but the device gets a new segment at that
//! break, exactly where Linux breaks it too.

use crate::debug::MapType;
use crate::iommu::{IommuPerm, SharedDomain};
use crate::mapping::Place;
use crate::swiotlb::MAX_MAPPING;
use crate::{DmaBackend, DmaDevice, DmaDirection, DmaError};
use alloc::sync::Arc;
use alloc::vec::Vec;
use hal::{DmaAddr, PhysAddr};

/// One entry of a scatter list: a physically contiguous range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgEntry {
    /// Start.
    pub phys: PhysAddr,
    /// Length in bytes.
    pub len: usize,
}

/// A scatter list. Every entry was vouched for by an `unsafe` caller
/// ([`push`](Self::push), [`from_entries`](Self::from_entries)), which keeps the
/// memory alive while it is mapped; mapping a table is then safe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SgTable {
    entries: Vec<SgEntry>,
}

impl SgTable {
    /// An empty table.
    pub fn new() -> Self {
        SgTable::default()
    }

    /// Appends an entry.
    ///
    /// # Safety
    ///
    /// [`DmaDevice::map_sg`] of this table lets the device read or write
    /// `[phys, phys+len)`. The caller must own that memory (RAM the platform handed
    /// out, not MMIO or another owner's) and keep it allocated, and not touched by the
    /// CPU outside the syncs, for as long as any mapping of this table lives.
    #[allow(unsafe_code)]
    pub unsafe fn push(&mut self, phys: PhysAddr, len: usize) {
        self.entries.push(SgEntry { phys, len });
    }

    /// A table of `entries`, in order.
    ///
    /// # Safety
    ///
    /// As for [`push`](Self::push), for every entry.
    #[allow(unsafe_code)]
    pub unsafe fn from_entries<I: IntoIterator<Item = SgEntry>>(entries: I) -> Self {
        SgTable {
            entries: entries.into_iter().collect(),
        }
    }

    /// The entries (`orig_nents` of them).
    pub fn entries(&self) -> &[SgEntry] {
        &self.entries
    }
}

/// One DMA segment to program into the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaSegment {
    /// Bus address.
    pub addr: DmaAddr,
    /// Length in bytes.
    pub len: usize,
}

/// First address after `a`'s boundary window (`None`: no boundary above `a`).
fn boundary_end(a: u64, boundary_mask: u64) -> Option<u64> {
    (a | boundary_mask).checked_add(1)
}

/// Bytes from `a` to the next boundary, capped at `cap`.
fn room_to_boundary(a: u64, boundary_mask: u64, cap: usize) -> usize {
    match boundary_end(a, boundary_mask) {
        Some(e) => ((e - a).min(cap as u64)) as usize,
        None => cap,
    }
}

/// Merges bus ranges into segments: contiguous ranges join, no segment is longer than
/// `max_seg` or crosses a `boundary_mask + 1` boundary, and a range that breaks a rule is
/// split. Greedy from the front, so a segment only ends early at a rule.
pub fn merge_segments(
    ranges: &[(u64, usize)],
    max_seg: usize,
    boundary_mask: u64,
) -> Vec<DmaSegment> {
    // Walk the ranges in order and keep `rem` bytes of the current one to place:
    // - if the last output segment ends exactly at `a`, grow it by as much as its
    //   rules allow: up to `max_seg` bytes in all and not past the boundary window
    //   the segment *starts* in (`room_to_boundary(last.addr, ...)`);
    // - otherwise (or when it is full) start a new segment at `a`, as long as the
    //   rules allow from `a`.
    // A `max_seg` of 0 counts as 1. Addresses near 2^64 must not overflow.
    // exercise(sg-merge): begin
    let max_seg = max_seg.max(1);
    let mut out: Vec<DmaSegment> = Vec::new();
    for &(start, len) in ranges {
        let mut a = start;
        let mut rem = len;
        while rem > 0 {
            if let Some(last) = out.last_mut() {
                let last_end = last.addr.as_u64().checked_add(last.len as u64);
                if last_end == Some(a) {
                    let room = room_to_boundary(last.addr.as_u64(), boundary_mask, max_seg)
                        .saturating_sub(last.len);
                    if room > 0 {
                        let take = room.min(rem);
                        last.len += take;
                        a = a.wrapping_add(take as u64);
                        rem -= take;
                        continue;
                    }
                }
            }
            let take = room_to_boundary(a, boundary_mask, max_seg).min(rem);
            out.push(DmaSegment {
                addr: DmaAddr::new(a),
                len: take,
            });
            // Wraps only after the last byte of the address space (then `rem` is 0).
            a = a.wrapping_add(take as u64);
            rem -= take;
        }
    }
    out
    // exercise(sg-merge): stub
    // let _ = (ranges, max_seg, boundary_mask);
    // todo!("exercise sg-merge: merge contiguous ranges under max_seg and the boundary")
    // exercise(sg-merge): end
}

/// Cuts `[phys, phys+len)` at `max_piece` and at boundaries (physical addresses).
fn split_entry(e: SgEntry, max_piece: usize, boundary_mask: u64) -> impl Iterator<Item = SgEntry> {
    let mut a = e.phys.as_u64();
    let mut rem = e.len;
    core::iter::from_fn(move || {
        if rem == 0 {
            return None;
        }
        let take = room_to_boundary(a, boundary_mask, max_piece).min(rem);
        let piece = SgEntry {
            phys: PhysAddr::new(a),
            len: take,
        };
        a = a.wrapping_add(take as u64);
        rem -= take;
        Some(piece)
    })
}

/// A mapped scatter list. Drop unmaps every piece (copying back per direction).
pub struct SgMapping {
    dev: Arc<DmaDevice>,
    table: SgTable,
    dir: DmaDirection,
    pieces: Vec<(DmaAddr, usize)>,
    segments: Vec<DmaSegment>,
    /// Behind an IOMMU: the one IOVA range all pieces live in (domain, start,
    /// length), unmapped as one after the pieces' records are released.
    iova: Option<(SharedDomain, DmaAddr, u64)>,
}

impl DmaDevice {
    /// `dma_map_sgtable`: maps every entry and returns the merged DMA segments.
    /// On failure nothing stays mapped.
    pub fn map_sg(
        self: &Arc<Self>,
        table: SgTable,
        dir: DmaDirection,
    ) -> Result<SgMapping, DmaError> {
        let p = self.params();
        let max_piece = p.max_segment_size.clamp(1, MAX_MAPPING);
        let mut m = SgMapping {
            dev: self.clone(),
            table: SgTable::new(),
            dir,
            pieces: Vec::new(),
            segments: Vec::new(),
            iova: None,
        };
        // An untrusted device's pieces are mapped one by one below, so that
        // each sub-page piece is bounced (Linux `iommu_dma_map_sg_swiotlb`):
        // its list is then not one contiguous IOVA range.
        if let (DmaBackend::Iommu(domain), false) = (self.backend(), self.is_untrusted()) {
            self.map_sg_iommu(&mut m, domain, &table)?;
            let ranges: Vec<(u64, usize)> =
                m.pieces.iter().map(|&(a, l)| (a.as_u64(), l)).collect();
            m.segments = merge_segments(&ranges, p.max_segment_size, p.segment_boundary_mask);
            m.table = table;
            return Ok(m);
        }
        for e in table.entries() {
            if e.len == 0 {
                return Err(DmaError::ZeroLength {
                    device: self.name.clone(),
                });
            }
            for piece in split_entry(*e, max_piece, p.segment_boundary_mask) {
                // On error `m` drops and unmaps what was mapped so far.
                let dma = self.map_phys(piece.phys, piece.len, dir, MapType::Sg, Place::Backend)?;
                m.pieces.push((dma, piece.len));
            }
        }
        let ranges: Vec<(u64, usize)> = m.pieces.iter().map(|&(a, l)| (a.as_u64(), l)).collect();
        m.segments = merge_segments(&ranges, p.max_segment_size, p.segment_boundary_mask);
        m.table = table;
        Ok(m)
    }
}

impl DmaDevice {
    /// The IOMMU path of [`DmaDevice::map_sg`]: one IOVA range for the whole
    /// list (see the module notes), then each piece recorded through the map path.
    /// On error nothing stays mapped or allocated.
    fn map_sg_iommu(
        &self,
        m: &mut SgMapping,
        domain: SharedDomain,
        table: &SgTable,
    ) -> Result<(), DmaError> {
        let p = self.params();
        let dir = m.dir;
        let granule = domain.lock().granule().max(1);
        // Each entry widened to whole granules: (page, span), and its offset.
        let mut runs = Vec::with_capacity(table.entries().len());
        for e in table.entries() {
            if e.len == 0 {
                return Err(DmaError::ZeroLength {
                    device: self.name.clone(),
                });
            }
            let off = e.phys.as_u64() % granule;
            let span = (off + e.len as u64)
                .checked_next_multiple_of(granule)
                .ok_or(DmaError::AddressOverflow {
                    phys: e.phys,
                    len: e.len,
                })?;
            runs.push((PhysAddr::new(e.phys.as_u64() - off), span));
        }
        if runs.is_empty() {
            return Ok(());
        }
        let perm = IommuPerm::for_direction(dir);
        let (iova, total) = self.iommu_map_runs(&domain, &runs, p.dma_mask, perm)?;
        // From here `m` owns the range: on error its drop unmaps the pieces recorded
        // so far and then the range.
        m.iova = Some((domain, iova, total));
        let mut at = 0u64;
        for (e, &(page, span)) in table.entries().iter().zip(&runs) {
            let dma = DmaAddr::new(iova.as_u64() + at + (e.phys.as_u64() - page.as_u64()));
            self.map_phys(e.phys, e.len, dir, MapType::Sg, Place::InSgRange(dma))?;
            m.pieces.push((dma, e.len));
            at += span;
        }
        Ok(())
    }
}

impl SgMapping {
    /// The one IOVA range behind the segments when the device is behind an
    /// IOMMU: (start, length in bytes, granule-rounded).
    pub fn iova_range(&self) -> Option<(DmaAddr, u64)> {
        self.iova.as_ref().map(|(_, a, l)| (*a, *l))
    }

    /// The DMA segments (`nents`), in order.
    pub fn segments(&self) -> &[DmaSegment] {
        &self.segments
    }

    /// The original table.
    pub fn table(&self) -> &SgTable {
        &self.table
    }

    /// Direction mapped.
    pub fn direction(&self) -> DmaDirection {
        self.dir
    }

    /// `dma_sync_sgtable_for_cpu`.
    pub fn sync_for_cpu(&mut self) -> Result<(), DmaError> {
        for &(a, l) in &self.pieces {
            self.dev.sync_single_for_cpu(a, l, self.dir)?;
        }
        Ok(())
    }

    /// `dma_sync_sgtable_for_device`.
    pub fn sync_for_device(&mut self) -> Result<(), DmaError> {
        for &(a, l) in &self.pieces {
            self.dev.sync_single_for_device(a, l, self.dir)?;
        }
        Ok(())
    }

    /// Unmaps and gives the table back.
    pub fn unmap(mut self) -> SgTable {
        self.do_unmap();
        core::mem::take(&mut self.table)
    }

    fn do_unmap(&mut self) {
        for (a, l) in self.pieces.drain(..) {
            if let Err(e) = self.dev.unmap_phys(a, l, self.dir, MapType::Sg) {
                log::error!("dma_unmap_sg: {e}");
            }
        }
        self.segments.clear();
        if let Some((domain, iova, len)) = self.iova.take() {
            // One range: unmap, invalidate, and only then free the IOVA (a
            // failure leaks it, since the device might still reach the pages).
            self.dev.iommu_unmap_range(&domain, iova, len);
        }
    }
}

impl Drop for SgMapping {
    fn drop(&mut self) {
        self.do_unmap();
    }
}

impl core::fmt::Debug for SgMapping {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SgMapping")
            .field("dir", &self.dir)
            .field("segments", &self.segments)
            .finish()
    }
}
