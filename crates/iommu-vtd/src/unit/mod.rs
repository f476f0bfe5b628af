//! [`RemappingUnit`]: one DRHD (remapping hardware unit) driven end to end, laid
//! out as the hardware is:
//!
//! * `init` — bring-up and the global command register (GCMD/GSTS), the
//!   firmware hand-off ([`quiesce`]), translation on/off, write-buffer flush.
//! * `context` — the root and context tables: attach and detach a device, the
//!   software walk from the root ([`RemappingUnit::translate`]).
//! * `invalidate` — the invalidation interfaces: register-based (CCMD/IOTLB) and
//!   queued invalidation (the invalidation queue and its wait descriptors).
//! * `faults` — the fault recording registers.
//! * `domain` — domain IDs, create/destroy, identity domains, RMRRs, each
//!   domain's IOVA space.
//! * `pagetable` — second-level page tables: map, unmap, walk.
//! * `irq_remapping` — the interrupt remapping table and its IRTEs.
//!
//! The strict/lazy flush-queue policy is not here: [`crate::flush_queue`] calls
//! this unit (as Linux's dma-iommu calls the Intel driver).

mod context;
mod domain;
mod faults;
mod init;
mod invalidate;
mod irq_remapping;
mod pagetable;

pub use domain::{DomainId, DomainKind};
pub use init::{quiesce, Handoff};

use crate::frames::FrameAlloc;
use crate::intremap::IrteError;
use crate::inval::{InvalMode, IotlbInval};
use crate::iova::IovaError;
use crate::regs::{self, Cap, Ecap, Gsts};
use crate::tables::Perm;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use domain::{DomainTable, Rmrr};
use hal::Bdf;
use hal::{PhysAddr, PhysMemory, RegisterAccess, PAGE_SIZE};
use invalidate::Queue;
use irq_remapping::IntRemap;

/// Errors of the remapping unit. Each names what failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A status bit did not reach its expected value within the poll budget.
    Timeout(&'static str),
    /// No page for a table or the invalidation queue.
    NoMemory,
    /// SAGAW offers none of the requested page-table depths.
    UnsupportedLevels(u8),
    /// Pass-through requested but ECAP.PT = 0.
    NoPassThrough,
    /// Queued invalidation requested but ECAP.QI = 0.
    NoQueuedInvalidation,
    /// All domain ids in CAP.ND are in use.
    DomainIdsExhausted,
    /// No such domain.
    NoSuchDomain(DomainId),
    /// The domain still has devices attached.
    DomainBusy(DomainId),
    /// The device is not attached to any domain.
    NotAttached(Bdf),
    /// Operation needs a translated (page-table) domain.
    NotTranslated(DomainId),
    /// Something is already mapped at this IOVA.
    AlreadyMapped(u64),
    /// Nothing is mapped at this IOVA, or only part of a large page would be unmapped.
    NotMapped(u64),
    /// Address or length not 4 KiB aligned.
    Misaligned,
    /// IOVA range beyond what the domain's tables cover.
    BeyondAddressWidth(u64),
    /// The unit reported an invalidation queue error (FSTS.IQE) at this queue index.
    QueueError(u32),
    /// The unit refused an invalidation request (actual granularity 0).
    InvalidationRejected,
    /// IOVA allocator error.
    Iova(IovaError),
    /// Nothing answers at the register base: VER reads all zeros or all ones (a DMAR
    /// naming a unit the machine does not have, or one the firmware hid).
    NoUnit(u32),
    /// The mapped register window is smaller than CAP.FRO/ECAP.IRO need.
    WindowTooSmall {
        /// Bytes mapped.
        have: usize,
        /// Bytes [`regs::register_window_size`] asks for.
        need: usize,
    },
    /// A requester-ID alias of the device is attached to another domain: the
    /// devices sharing it must share one domain (see
    /// [`RemappingUnit::group_domain`]).
    AliasInOtherDomain(Bdf, DomainId),
    /// Interrupt remapping asked of a unit without ECAP.IR.
    NoInterruptRemapping,
    /// Interrupt remapping is not enabled on this unit.
    InterruptRemappingOff,
    /// IRTE allocation or ownership error.
    Irte(IrteError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout(w) => write!(f, "timed out waiting for {w}"),
            Error::NoMemory => write!(f, "out of memory for IOMMU tables"),
            Error::UnsupportedLevels(l) => write!(f, "{l}-level tables not in SAGAW"),
            Error::NoPassThrough => write!(f, "pass-through not supported (ECAP.PT = 0)"),
            Error::NoQueuedInvalidation => {
                write!(f, "queued invalidation not supported (ECAP.QI = 0)")
            }
            Error::DomainIdsExhausted => write!(f, "no free domain id"),
            Error::NoSuchDomain(d) => write!(f, "no {d}"),
            Error::DomainBusy(d) => write!(f, "{d} still has devices attached"),
            Error::NotAttached(b) => write!(f, "{} is not attached to a domain", b.short()),
            Error::NotTranslated(d) => write!(f, "{d} has no page tables"),
            Error::AlreadyMapped(a) => write!(f, "IOVA {a:#x} is already mapped"),
            Error::NotMapped(a) => {
                write!(f, "IOVA {a:#x} is not mapped (or is part of a large page)")
            }
            Error::Misaligned => write!(f, "address or length not 4 KiB aligned"),
            Error::BeyondAddressWidth(a) => write!(f, "IOVA {a:#x} beyond the address width"),
            Error::QueueError(i) => write!(f, "invalidation queue error at descriptor {i}"),
            Error::InvalidationRejected => write!(f, "invalidation request rejected"),
            Error::Iova(e) => write!(f, "{e}"),
            Error::WindowTooSmall { have, need } => write!(
                f,
                "register window of {have:#x} bytes, CAP/ECAP place registers up to {need:#x}"
            ),
            Error::NoUnit(v) => {
                write!(f, "no VT-d unit answers at this address (VER reads {v:#x})")
            }
            Error::AliasInOtherDomain(b, d) => write!(
                f,
                "requester ID {} is in {d}: devices sharing it must share its domain",
                b.short()
            ),
            Error::NoInterruptRemapping => {
                write!(f, "interrupt remapping not supported (ECAP.IR = 0)")
            }
            Error::InterruptRemappingOff => write!(f, "interrupt remapping is not enabled"),
            Error::Irte(e) => write!(f, "{e}"),
        }
    }
}

impl From<IovaError> for Error {
    fn from(e: IovaError) -> Self {
        Error::Iova(e)
    }
}

/// Bring-up options.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Invalidation interface; `None` picks queued when ECAP.QI, else register.
    pub inval: Option<InvalMode>,
    /// Page-table depth; `None` picks from SAGAW/MGAW ([`Cap::preferred_levels`]).
    pub levels: Option<u8>,
    /// How many times a status bit is polled before [`Error::Timeout`].
    pub poll_budget: u32,
    /// Called between polls (a short delay in the kernel; nothing on the host).
    pub relax: fn(),
    /// Fault event MSI (FEADDR, FEDATA); `None` leaves the fault interrupt masked.
    pub fault_msi: Option<(u32, u32)>,
    /// Lazy-flush bounds for each domain's IOVA allocator: pending ranges...
    pub flush_queue_len: usize,
    /// ...and maximum age in the caller's time unit.
    pub flush_queue_delay: u64,
    /// Bytes of register window the caller mapped; `Some` makes bring-up refuse a
    /// window smaller than [`regs::register_window_size`] (CAP.FRO/ECAP.IRO place
    /// registers beyond it) instead of touching unmapped registers.
    pub window_size: Option<usize>,
    /// Leave translation on if firmware left it on (Linux's skip-TE-disable
    /// quirk for the graphics-dedicated unit of Ice Lake and later integrated
    /// graphics, see [`crate::policy::igfx_skip_te_disable`]): turning TE off
    /// under a running display engine can hang it.
    pub keep_translation: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            inval: None,
            levels: None,
            poll_budget: 100_000,
            relax: core::hint::spin_loop,
            fault_msi: None,
            flush_queue_len: 256,
            flush_queue_delay: 10,
            window_size: None,
            keep_translation: false,
        }
    }
}

/// Counters for tests and the shell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Cache-line flushes of table memory issued because ECAP.C = 0.
    pub cache_flushes: u64,
    /// Write-buffer flushes (CAP.RWBF).
    pub write_buffer_flushes: u64,
    /// Context-cache invalidations issued.
    pub context_invalidations: u64,
    /// IOTLB invalidations issued.
    pub iotlb_invalidations: u64,
    /// Wait descriptors completed on the queue.
    pub qi_waits: u64,
    /// Interrupt-entry-cache invalidations issued.
    pub iec_invalidations: u64,
}

/// Result of a software walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// Physical address the IOVA lands on.
    pub pa: PhysAddr,
    /// Permissions (AND over all levels).
    pub perm: Perm,
    /// Size of the page that maps it (0 for pass-through).
    pub page_size: u64,
    /// Domain id from the context entry.
    pub did: u16,
}

/// What [`RemappingUnit::unmap`] cleared and what must be invalidated before the IOVA
/// range may be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnmapInfo {
    /// Domain.
    pub did: DomainId,
    /// Unmapped range.
    pub iova: u64,
    /// Bytes unmapped.
    pub len: u64,
    /// The IOTLB invalidation to issue (page-selective when possible).
    pub inval: IotlbInval,
}

/// The remapping unit for one DRHD register block.
pub struct RemappingUnit<R: RegisterAccess, M: PhysMemory, A: FrameAlloc> {
    regs: R,
    mem: M,
    frames: A,
    cap: Cap,
    ecap: Ecap,
    cfg: Config,
    levels: u8,
    mode: InvalMode,
    root: PhysAddr,
    context_tables: BTreeMap<u8, PhysAddr>,
    queue: Option<Queue>,
    domains: DomainTable,
    attached: BTreeMap<u16, u16>,
    rmrrs: Vec<Rmrr>,
    stats: Stats,
    /// The last level-1 table a map or unmap walked to: (domain, IOVA >> 21,
    /// table). A level-1 table, once linked, is never replaced or freed while
    /// its domain lives (unmap clears leaves only; a 2 MiB page is never put
    /// over a table), so consecutive 4 KiB maps and unmaps in the same 2 MiB
    /// skip the walk from the top. Cleared when a domain is destroyed.
    leaf_cache: Option<(u16, u64, PhysAddr)>,
    /// Interrupt remapping state, once enabled.
    ir: Option<IntRemap>,
    /// IOVA windows no domain may hand out (PCI host-bridge windows: a DMA to
    /// an address a bridge decodes goes peer-to-peer, never reaching the unit).
    iova_windows: Vec<(u64, u64)>,
    /// What bring-up found left on.
    handoff: Handoff,
}

/// The interrupt address window, never usable as IOVA (spec §3.14: requests to
/// 0xFEEx_xxxx are interrupt requests).
pub const INTERRUPT_WINDOW: (u64, u64) = (0xfee0_0000, 0x10_0000);

impl<R: RegisterAccess, M: PhysMemory, A: FrameAlloc> RemappingUnit<R, M, A> {
    /// Decoded CAP.
    pub fn cap(&self) -> &Cap {
        &self.cap
    }

    /// Decoded ECAP.
    pub fn ecap(&self) -> &Ecap {
        &self.ecap
    }

    /// Page-table depth in use (3 or 4).
    pub fn levels(&self) -> u8 {
        self.levels
    }

    /// Invalidation interface in use.
    pub fn inval_mode(&self) -> InvalMode {
        self.mode
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Physical address of the root table.
    pub fn root_table(&self) -> PhysAddr {
        self.root
    }

    /// The register block (for the shell's register dump).
    pub fn registers(&self) -> &R {
        &self.regs
    }

    /// Current GSTS.
    pub fn gsts(&self) -> Gsts {
        Gsts::from_bits_retain(self.regs.read32(regs::GSTS))
    }

    /// §6.8 (ECAP.C = 0): paging-structure writes must be flushed from CPU caches
    /// before the unit can see them.
    #[inline]
    fn flush_cache(&mut self, pa: PhysAddr, len: usize) {
        if self.ecap.c {
            return;
        }
        self.stats.cache_flushes += 1;
        if let Some(v) = self.mem.phys_to_virt(pa) {
            hal::clflush_range(v, len);
        }
    }

    fn zero_page(&mut self, pa: PhysAddr) {
        self.mem.fill(pa, 0, PAGE_SIZE as usize);
        self.flush_cache(pa, PAGE_SIZE as usize);
    }

    fn new_table(&mut self) -> Result<PhysAddr, Error> {
        let pa = self.frames.alloc_page().ok_or(Error::NoMemory)?;
        self.zero_page(pa);
        Ok(pa)
    }

    #[inline]
    fn write_entry(&mut self, pa: PhysAddr, v: u64) {
        self.mem.write_u64(pa, v);
        self.flush_cache(pa, 8);
    }
}
