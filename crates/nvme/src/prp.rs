//! PRP1/PRP2 and the PRP list built from mapped segments (`nvme_pci_setup_prps` in
//! Linux's nvme pci driver), and the `blk read --show-sg` trace of them.

use super::*;

/// PRPs for a command: PRP1, PRP2 and the list block PRP2 points to, if any.
pub struct Prps {
    /// PRP1.
    pub prp1: u64,
    /// PRP2 (0, a page, or the list).
    pub prp2: u64,
    /// The list's entries (empty without one).
    pub list: Vec<u64>,
    /// The list page, held until the command is over (then back to the pool).
    _block: Option<DmaPoolBlock>,
}

/// Builds the PRPs for mapped `segs` (see the crate doc for the rules); a list goes into
/// a block of `pool`.
pub fn build_prps(segs: &[DmaSegment], pool: &DmaPool) -> Result<Prps, NvmeError> {
    let n = segs.len();
    if n == 0 {
        return Err(NvmeError::BadRequest("no data segments"));
    }
    let mut pages: Vec<u64> = Vec::new();
    for (index, s) in segs.iter().enumerate() {
        let addr = s.addr.as_u64();
        let bad = |reason| NvmeError::BadSegment {
            index,
            addr,
            len: s.len,
            reason,
        };
        if s.len == 0 {
            return Err(bad("is empty"));
        }
        let end = addr
            .checked_add(s.len as u64)
            .ok_or(bad("wraps the address space"))?;
        if index == 0 && addr & 3 != 0 {
            return Err(bad("is not dword aligned (PRP1 bits 1:0)"));
        }
        if index > 0 && addr & (PAGE - 1) != 0 {
            return Err(bad("starts inside a page (only the first segment may)"));
        }
        if index + 1 < n && end & (PAGE - 1) != 0 {
            return Err(bad("ends inside a page (only the last segment may)"));
        }
        let mut p = addr;
        while p < end {
            pages.push(p);
            p = (p & !(PAGE - 1)) + PAGE;
        }
    }
    if pages.len() - 1 > MAX_PRP_LIST {
        return Err(NvmeError::BadRequest(
            "more pages than PRP1 and one PRP list page can carry",
        ));
    }
    let prp1 = pages[0];
    match pages.len() {
        1 => Ok(Prps {
            prp1,
            prp2: 0,
            list: Vec::new(),
            _block: None,
        }),
        2 => Ok(Prps {
            prp1,
            prp2: pages[1],
            list: Vec::new(),
            _block: None,
        }),
        _ => {
            let block = pool.alloc()?;
            for (i, &p) in pages[1..].iter().enumerate() {
                block.write::<u64>(8 * i, p);
            }
            Ok(Prps {
                prp1,
                prp2: block.dma_addr().as_u64(),
                list: pages[1..].to_vec(),
                _block: Some(block),
            })
        }
    }
}

/// `blk read --show-sg` (block::trace): the command's mapped segments, PRP1, PRP2
/// and the PRP list's entries.
pub(crate) fn trace_prps(segs: &[DmaSegment], prps: &Prps) {
    use block::trace::{self, Kind};
    if !trace::armed() {
        return;
    }
    for s in segs {
        trace::record(Kind::Segment, s.addr.as_u64(), s.len as u64);
    }
    trace::record(Kind::Prp1, prps.prp1, 0);
    trace::record(Kind::Prp2, prps.prp2, prps.list.len() as u64);
    for (i, &e) in prps.list.iter().enumerate() {
        trace::record(Kind::PrpList, e, i as u64);
    }
    trace::finish();
}
