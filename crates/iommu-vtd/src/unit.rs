//! [`RemappingUnit`]: one DRHD driven end to end.

use crate::fault::{FaultReason, FaultRecord, FRCD_HI_F};
use crate::frames::FrameAlloc;
use crate::intremap::{self, IecInval, Irte, IrteAllocator, IrteError};
use crate::inval::{wait_descriptor, ContextInval, InvalMode, IotlbInval};
use crate::iova::{IovaAllocator, IovaError};
use crate::regs::{self, Cap, Ecap, Fsts, Gcmd, Gsts, ECTL_IM};
use crate::tables::{self, Bdf, Perm};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use hal::{PhysAddr, PhysMemory, RegisterAccess, PAGE_SIZE};

/// A domain id (the DID tag in context entries and invalidations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(pub u16);

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "domain {}", self.0)
    }
}

/// What a domain does with a device's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainKind {
    /// Second-level translation through our page tables (per-device DMA domains).
    Translated,
    /// Second-level tables mapping RAM 1:1 (for devices that must see physical
    /// addresses but should still be confined to RAM).
    Identity,
    /// Context TT=10: no translation at all (needs ECAP.PT).
    PassThrough,
}

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
            Error::NotAttached(b) => write!(f, "{b} is not attached to a domain"),
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
                "requester ID {b} is in {d}: devices sharing it must share its domain"
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

/// What firmware (pre-boot DMA protection, or a kernel before kexec) had left
/// on, as [`quiesce`] (or bring-up, which starts with it) found it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Handoff {
    /// GSTS.TES was set.
    pub translation: bool,
    /// GSTS.QIES was set.
    pub queued_invalidation: bool,
    /// GSTS.IRES was set.
    pub interrupt_remapping: bool,
    /// PMEN.EPM was set (protected memory regions).
    pub protected_memory: bool,
    /// Translation was found on and left on ([`Config::keep_translation`]).
    pub translation_kept: bool,
}

impl Handoff {
    /// Whether anything was found on.
    pub fn any(&self) -> bool {
        self.translation
            || self.queued_invalidation
            || self.interrupt_remapping
            || self.protected_memory
    }
}

impl fmt::Display for Handoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.any() {
            return write!(f, "nothing left on");
        }
        let mut sep = "";
        for (on, name) in [
            (self.translation, "translation"),
            (self.queued_invalidation, "queued invalidation"),
            (self.interrupt_remapping, "interrupt remapping"),
            (self.protected_memory, "protected memory regions"),
        ] {
            if on {
                write!(f, "{sep}{name}")?;
                sep = ", ";
            }
        }
        write!(f, " left on")?;
        if self.translation_kept {
            write!(f, " (translation kept on: graphics quirk)")?;
        }
        Ok(())
    }
}

fn poll_regs<R: RegisterAccess>(
    regs: &R,
    cfg: &Config,
    what: &'static str,
    mut done: impl FnMut(&R) -> bool,
) -> Result<(), Error> {
    for _ in 0..cfg.poll_budget.max(1) {
        if done(regs) {
            return Ok(());
        }
        (cfg.relax)();
    }
    if done(regs) {
        Ok(())
    } else {
        log::error!("DMAR: timeout waiting for {what}");
        Err(Error::Timeout(what))
    }
}

/// Turns one persistent GCMD state on or off: GCMD is write-only, so the
/// command is GSTS's persistent states with this one bit changed (§10.4.4,
/// never a one-shot bit: those would run again), then waits for `status`.
fn gcmd_set<R: RegisterAccess>(
    regs: &R,
    cfg: &Config,
    bit: Gcmd,
    on: bool,
    status: Gsts,
    what: &'static str,
) -> Result<(), Error> {
    let mut cmd = Gsts::from_bits_retain(regs.read32(regs::GSTS)).persistent_cmd();
    cmd.set(bit, on);
    regs.write32(regs::GCMD, cmd.bits());
    poll_regs(regs, cfg, what, |r| {
        Gsts::from_bits_retain(r.read32(regs::GSTS)).contains(status) == on
    })
}

/// Turns off what firmware left on in a unit's registers, cleanly and in
/// order: interrupt remapping (its table is firmware's, and it blocks the
/// compatibility-format MSIs the kernel uses), translation (unless
/// [`Config::keep_translation`]), then queued invalidation once the queue has
/// drained (IQH = IQT: §10.4.4, QIE may only be cleared with the queue idle),
/// then protected memory regions (§3.16). Needs only the registers: for a
/// unit the kernel will not use (`iommu=off`, an ignored graphics unit) as
/// much as at the start of bring-up. Returns what it found.
pub fn quiesce<R: RegisterAccess>(regs: &R, cfg: &Config) -> Result<Handoff, Error> {
    let ver = regs.read32(regs::VER);
    if ver == 0 || ver == u32::MAX {
        return Err(Error::NoUnit(ver));
    }
    let cap = Cap::decode(regs.read64(regs::CAP));
    let gsts = Gsts::from_bits_retain(regs.read32(regs::GSTS));
    let mut found = Handoff {
        translation: gsts.contains(Gsts::TES),
        queued_invalidation: gsts.contains(Gsts::QIES),
        interrupt_remapping: gsts.contains(Gsts::IRES),
        protected_memory: (cap.plmr || cap.phmr) && regs.read32(regs::PMEN) & regs::PMEN_EPM != 0,
        translation_kept: false,
    };
    if found.interrupt_remapping {
        gcmd_set(regs, cfg, Gcmd::IRE, false, Gsts::IRES, "GSTS.IRES clear")?;
    }
    if found.translation {
        if cfg.keep_translation {
            found.translation_kept = true;
        } else {
            gcmd_set(regs, cfg, Gcmd::TE, false, Gsts::TES, "GSTS.TES clear")?;
        }
    }
    if found.queued_invalidation {
        poll_regs(regs, cfg, "invalidation queue drained (IQH = IQT)", |r| {
            r.read64(regs::IQH) & 0x7fff0 == r.read64(regs::IQT) & 0x7fff0
        })?;
        gcmd_set(regs, cfg, Gcmd::QIE, false, Gsts::QIES, "GSTS.QIES clear")?;
    }
    if found.protected_memory {
        regs.write32(regs::PMEN, 0);
        poll_regs(regs, cfg, "PMEN.PRS clear", |r| {
            r.read32(regs::PMEN) & regs::PMEN_PRS == 0
        })?;
    }
    if found.any() {
        log::warn!("DMAR: firmware hand-off: {found}; turned off");
    }
    Ok(found)
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

struct Domain {
    kind: DomainKind,
    pgd: Option<PhysAddr>,
    iova: IovaAllocator,
    devices: u32,
}

/// Domains indexed by id (ids are small and allocated lowest first): the
/// map and unmap paths look their domain up several times per call, and an
/// index is cheaper than a tree search, which matters under emulation.
struct DomainTable(Vec<Option<Domain>>);

impl DomainTable {
    #[inline]
    fn get(&self, id: &u16) -> Option<&Domain> {
        self.0.get(*id as usize).and_then(Option::as_ref)
    }
    #[inline]
    fn get_mut(&mut self, id: &u16) -> Option<&mut Domain> {
        self.0.get_mut(*id as usize).and_then(Option::as_mut)
    }
    fn contains_key(&self, id: &u16) -> bool {
        self.get(id).is_some()
    }
    fn insert(&mut self, id: u16, d: Domain) {
        let i = id as usize;
        if self.0.len() <= i {
            self.0.resize_with(i + 1, || None);
        }
        self.0[i] = Some(d);
    }
    fn remove(&mut self, id: &u16) {
        if let Some(slot) = self.0.get_mut(*id as usize) {
            *slot = None;
        }
    }
}

struct Queue {
    base: PhysAddr,
    entries: u32,
    tail: u32,
    status: PhysAddr,
    seq: u32,
}

struct Rmrr {
    devices: Vec<Bdf>,
    base: u64,
    len: u64,
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

/// The interrupt remapping table of a unit.
struct IntRemap {
    table: PhysAddr,
    alloc: IrteAllocator,
}

/// The interrupt address window, never usable as IOVA (spec §3.14: requests to
/// 0xFEEx_xxxx are interrupt requests).
pub const INTERRUPT_WINDOW: (u64, u64) = (0xfee0_0000, 0x10_0000);

impl<R: RegisterAccess, M: PhysMemory, A: FrameAlloc> RemappingUnit<R, M, A> {
    /// Brings up the unit whose registers are `regs`, in the order of hw-facts 4.15:
    /// root table → RTADDR → SRTP → global invalidation (register) → fault event
    /// registers → (QI enable → global invalidation through the queue). Translation
    /// stays off until [`RemappingUnit::enable_translation`], so the caller can attach
    /// devices (and identity domains) first.
    pub fn new(regs: R, mem: M, mut frames: A, cfg: Config) -> Result<Self, Error> {
        let ver = regs.read32(regs::VER);
        if ver == 0 || ver == u32::MAX {
            return Err(Error::NoUnit(ver));
        }
        let cap = Cap::decode(regs.read64(regs::CAP));
        let ecap = Ecap::decode(regs.read64(regs::ECAP));
        let need = regs::register_window_size(&cap, &ecap);
        if let Some(have) = cfg.window_size.filter(|&h| h < need) {
            return Err(Error::WindowTooSmall { have, need });
        }
        let levels = match cfg.levels {
            Some(l) if cap.supports_levels(l) => l,
            Some(l) => return Err(Error::UnsupportedLevels(l)),
            None => cap.preferred_levels().ok_or(Error::UnsupportedLevels(0))?,
        };
        let mode = match cfg.inval {
            Some(InvalMode::Queued) if !ecap.qi => return Err(Error::NoQueuedInvalidation),
            Some(m) => m,
            None if ecap.qi => InvalMode::Queued,
            None => InvalMode::Register,
        };
        let root = frames.alloc_page().ok_or(Error::NoMemory)?;
        let mut u = RemappingUnit {
            regs,
            mem,
            frames,
            cap,
            ecap,
            cfg,
            levels,
            mode,
            root,
            context_tables: BTreeMap::new(),
            queue: None,
            domains: DomainTable(Vec::new()),
            attached: BTreeMap::new(),
            rmrrs: Vec::new(),
            stats: Stats::default(),
            leaf_cache: None,
            ir: None,
            iova_windows: Vec::new(),
            handoff: Handoff::default(),
        };
        u.zero_page(root);
        log::info!("DMAR: {}", u.cap);
        log::info!("DMAR: {}", u.ecap);

        // Firmware may have left translation, QI or interrupt remapping on (and
        // IRE would survive every later GCMD write, which carries GSTS's
        // persistent states): start from a known state, everything off.
        u.handoff = quiesce(&u.regs, &u.cfg)?;

        // §10.4.6: RTADDR, then SRTP; hardware latches the pointer and sets RTPS.
        u.regs.write64(regs::RTADDR, root.as_u64()); // TTM = 00, legacy mode
        u.gcmd_oneshot(Gcmd::SRTP, |s| s.contains(Gsts::RTPS), "GSTS.RTPS")?;

        // §6.5: caches may hold entries from before; invalidate globally. Register
        // interface here, since QI (if chosen) is not on yet.
        if mode == InvalMode::Register {
            u.flush_context(ContextInval::Global)?;
            u.flush_iotlb(IotlbInval::Global)?;
        }

        // §7.4: fault event MSI, then unmask. 32-bit accesses only (hw-facts 4.2).
        u.clear_faults();
        if let Some((addr, data)) = u.cfg.fault_msi {
            u.regs.write32(regs::FEDATA, data);
            u.regs.write32(regs::FEADDR, addr);
            u.regs.write32(regs::FEUADDR, 0);
            u.regs.write32(regs::FECTL, 0);
        } else {
            u.regs.write32(regs::FECTL, ECTL_IM);
        }

        if mode == InvalMode::Queued {
            u.enable_queue()?;
            u.flush_context(ContextInval::Global)?;
            u.flush_iotlb(IotlbInval::Global)?;
        }
        Ok(u)
    }

    /// What firmware had left on when bring-up started (all of it is off now,
    /// translation excepted under [`Config::keep_translation`]).
    pub fn handoff(&self) -> Handoff {
        self.handoff
    }

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

    fn poll(&self, what: &'static str, mut done: impl FnMut(&Self) -> bool) -> Result<(), Error> {
        for _ in 0..self.cfg.poll_budget.max(1) {
            if done(self) {
                return Ok(());
            }
            (self.cfg.relax)();
        }
        if done(self) {
            Ok(())
        } else {
            log::error!("DMAR: timeout waiting for {what}");
            Err(Error::Timeout(what))
        }
    }

    /// A one-shot GCMD command (SRTP, WBF, SIRTP): §10.4.4 says to write the
    /// persistent states read from GSTS plus exactly one command, then poll.
    fn gcmd_oneshot(
        &mut self,
        cmd: Gcmd,
        done: impl Fn(Gsts) -> bool,
        what: &'static str,
    ) -> Result<(), Error> {
        let cur = self.gsts().persistent_cmd();
        self.regs.write32(regs::GCMD, (cur | cmd).bits());
        self.poll(what, |u| done(u.gsts()))
    }

    /// Turns a persistent GCMD state (TE, QIE, IRE) on or off and waits for `status`.
    fn gcmd_persistent(
        &mut self,
        bit: Gcmd,
        on: bool,
        status: Gsts,
        what: &'static str,
    ) -> Result<(), Error> {
        let mut cmd = self.gsts().persistent_cmd();
        cmd.set(bit, on);
        self.regs.write32(regs::GCMD, cmd.bits());
        self.poll(what, |u| u.gsts().contains(status) == on)
    }

    /// GCMD.TE → GSTS.TES (§10.4.4). Do this after attaching devices: with
    /// translation on, an unattached device's DMA faults.
    pub fn enable_translation(&mut self) -> Result<(), Error> {
        self.gcmd_persistent(Gcmd::TE, true, Gsts::TES, "GSTS.TES set")
    }

    /// Clears TE and waits for TES to clear.
    pub fn disable_translation(&mut self) -> Result<(), Error> {
        self.gcmd_persistent(Gcmd::TE, false, Gsts::TES, "GSTS.TES clear")
    }

    /// Write-buffer flush (§6.8) if CAP.RWBF says the unit needs it: GCMD.WBF, then
    /// wait for GSTS.WBFS to clear.
    #[inline]
    pub fn flush_write_buffer(&mut self) -> Result<(), Error> {
        if !self.cap.rwbf {
            return Ok(());
        }
        self.stats.write_buffer_flushes += 1;
        self.gcmd_oneshot(Gcmd::WBF, |s| !s.contains(Gsts::WBFS), "GSTS.WBFS clear")
    }

    // ----- memory helpers -----

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

    // ----- invalidation -----

    fn enable_queue(&mut self) -> Result<(), Error> {
        let base = self.new_table()?;
        let status = self.new_table()?;
        // §10.4.23: IQT must be 0 before enabling; QS = 0 → 256 128-bit descriptors.
        self.regs.write64(regs::IQT, 0);
        self.regs.write64(regs::IQA, base.as_u64());
        self.queue = Some(Queue {
            base,
            entries: 256,
            tail: 0,
            status,
            seq: 0,
        });
        self.gcmd_persistent(Gcmd::QIE, true, Gsts::QIES, "GSTS.QIES set")
    }

    /// Submits descriptors followed by a wait descriptor with status write, and waits
    /// for the status (§6.5.2.8).
    fn qi_submit(&mut self, descs: &[[u64; 2]]) -> Result<(), Error> {
        let Some(q) = self.queue.as_mut() else {
            return Err(Error::NoQueuedInvalidation);
        };
        q.seq = q.seq.wrapping_add(1).max(1);
        let seq = q.seq;
        let status = q.status;
        self.mem.write_u32(status, 0);
        // No heap allocation here: this runs for every strict unmap.
        let wait = [wait_descriptor(status.as_u64(), seq)];
        // The queue is full when tail + 1 == head (§6.5.2); wait for room.
        let need = descs.len() as u32 + 1;
        self.poll("invalidation queue space", |u| {
            let Some(q) = u.queue.as_ref() else {
                return true;
            };
            let head = ((u.regs.read64(regs::IQH) >> 4) & 0x7fff) as u32;
            let used = (q.tail + q.entries - head) % q.entries;
            q.entries - 1 - used >= need
        })?;
        for d in descs.iter().chain(wait.iter()) {
            let (pa, next) = {
                let q = self.queue.as_ref().ok_or(Error::NoQueuedInvalidation)?;
                (q.base + q.tail as u64 * 16, (q.tail + 1) % q.entries)
            };
            self.mem.write_u64(pa, d[0]);
            self.mem.write_u64(pa + 8u64, d[1]);
            self.flush_cache(pa, 16);
            if let Some(q) = self.queue.as_mut() {
                q.tail = next;
            }
        }
        hal::wmb();
        let tail = self.queue.as_ref().map_or(0, |q| q.tail);
        self.regs.write64(regs::IQT, (tail as u64) << 4);
        let r = self.poll("invalidation wait descriptor", |u| {
            u.mem.read_u32(status) == seq
                || Fsts::from_bits_retain(u.regs.read32(regs::FSTS)).contains(Fsts::IQE)
        });
        let fsts = Fsts::from_bits_retain(self.regs.read32(regs::FSTS));
        if fsts.contains(Fsts::IQE) {
            // §6.5.2.10: hardware stopped with IQH on the bad descriptor and fetches
            // nothing until IQE is cleared; clearing it resumes fetching at IQH. So the
            // bad descriptor is fixed first: overwritten with a copy of our wait
            // descriptor (harmless, as Linux's qi_check_fault does), then IQE cleared;
            // the rest of the batch and the real wait descriptor then run, and the queue
            // ends empty (head == tail) with no register rewritten behind its back.
            let head = ((self.regs.read64(regs::IQH) >> 4) & 0x7fff) as u32;
            if let Some(q) = self.queue.as_ref() {
                let pa = q.base + (head % q.entries) as u64 * 16;
                self.mem.write_u64(pa, wait[0][0]);
                self.mem.write_u64(pa + 8u64, wait[0][1]);
                self.flush_cache(pa, 16);
            }
            hal::wmb();
            self.regs.write32(regs::FSTS, Fsts::IQE.bits());
            let drained = self.poll("invalidation queue after an error", |u| {
                u.mem.read_u32(status) == seq
                    || Fsts::from_bits_retain(u.regs.read32(regs::FSTS)).contains(Fsts::IQE)
            });
            if drained.is_err()
                || Fsts::from_bits_retain(self.regs.read32(regs::FSTS)).contains(Fsts::IQE)
            {
                log::error!("DMAR: invalidation queue did not recover from an error at {head}");
            }
            return Err(Error::QueueError(head));
        }
        r?;
        self.stats.qi_waits += 1;
        Ok(())
    }

    /// Invalidates context-cache entries through the chosen interface.
    pub fn flush_context(&mut self, req: ContextInval) -> Result<(), Error> {
        self.stats.context_invalidations += 1;
        match self.mode {
            InvalMode::Queued => self.qi_submit(&[req.descriptor()]),
            InvalMode::Register => {
                // §6.5.1.1: write with ICC = 1, hardware clears ICC when done.
                self.regs.write64(regs::CCMD, req.ccmd_value());
                self.poll("CCMD.ICC clear", |u| {
                    u.regs.read64(regs::CCMD) & regs::ccmd::ICC == 0
                })?;
                let caig = (self.regs.read64(regs::CCMD) >> regs::ccmd::CAIG_SHIFT) & 3;
                if caig == 0 {
                    return Err(Error::InvalidationRejected);
                }
                Ok(())
            }
        }
    }

    /// Invalidates IOTLB entries through the chosen interface. Page-selective requests
    /// fall back to domain-selective when CAP.PSI = 0 or the mask exceeds CAP.MAMV.
    pub fn flush_iotlb(&mut self, req: IotlbInval) -> Result<(), Error> {
        let req = match req {
            IotlbInval::Page { did, am, .. } if !self.cap.psi || am > self.cap.mamv => {
                IotlbInval::Domain(did)
            }
            r => r,
        };
        self.stats.iotlb_invalidations += 1;
        let (dr, dw) = (self.cap.drd, self.cap.dwd);
        match self.mode {
            InvalMode::Queued => self.qi_submit(&[req.descriptor(dr, dw)]),
            InvalMode::Register => {
                if let IotlbInval::Page { .. } = req {
                    self.regs.write64(self.ecap.iva_offset(), req.iva_value());
                }
                let off = self.ecap.iotlb_offset();
                self.regs.write64(off, req.iotlb_value(dr, dw));
                self.poll("IOTLB.IVT clear", |u| {
                    u.regs.read64(off) & regs::iotlb::IVT == 0
                })?;
                if (self.regs.read64(off) >> regs::iotlb::IAIG_SHIFT) & 3 == 0 {
                    return Err(Error::InvalidationRejected);
                }
                Ok(())
            }
        }
    }

    /// Issues the IOTLB invalidation an [`RemappingUnit::unmap`] asked for. (IOVA
    /// ranges are released separately: [`RemappingUnit::unmap_dma`] does both.)
    pub fn flush_unmap(&mut self, info: &UnmapInfo) -> Result<(), Error> {
        self.flush_iotlb(info.inval)
    }

    // ----- domains -----

    fn alloc_did(&self) -> Result<u16, Error> {
        // DID 0 is reserved when CAP.CM = 1 (§6.2.3.1); Linux never uses it, nor do we.
        let max = self.cap.domain_count().min(1 << 16);
        (1..max)
            .map(|d| d as u16)
            .find(|d| !self.domains.contains_key(d))
            .ok_or(Error::DomainIdsExhausted)
    }

    /// IOVA space covered by the tables: 2^min(AGAW, MGAW).
    #[inline]
    pub fn address_limit(&self) -> u64 {
        1u64 << tables::agaw_bits(self.levels).min(self.cap.mgaw as u32)
    }

    /// The highest free domain ID below min(CAP.ND's count, 256), for the
    /// unit's default domain.
    fn alloc_did_top(&self) -> Result<u16, Error> {
        let max = self.cap.domain_count().min(256);
        (1..max)
            .rev()
            .map(|d| d as u16)
            .find(|d| !self.domains.contains_key(d))
            .ok_or(Error::DomainIdsExhausted)
    }

    /// Creates an empty domain of `kind` (use [`RemappingUnit::create_identity_domain`]
    /// to get the RAM mapped for [`DomainKind::Identity`]).
    pub fn create_domain(&mut self, kind: DomainKind) -> Result<DomainId, Error> {
        if kind == DomainKind::PassThrough && !self.ecap.pt {
            return Err(Error::NoPassThrough);
        }
        let did = self.alloc_did()?;
        self.create_domain_with(kind, did)
    }

    /// The unit's default domain, for the devices no driver has claimed:
    /// pass-through when ECAP.PT, else an identity domain over `ram`. It is
    /// made before any driver binds, and takes the highest free ID below 256
    /// (not the lowest), so drivers' domains get IDs 1, 2, ... in bind order
    /// whether it exists or not.
    pub fn create_default_domain(&mut self, ram: &[(PhysAddr, u64)]) -> Result<DomainId, Error> {
        let did = self.alloc_did_top()?;
        if self.ecap.pt {
            return self.create_domain_with(DomainKind::PassThrough, did);
        }
        let d = self.create_domain_with(DomainKind::Identity, did)?;
        if let Err(e) = self.map_identity(d, ram) {
            let _ = self.destroy_domain(d);
            return Err(e);
        }
        Ok(d)
    }

    /// A domain of `kind` with the highest free ID below 256, for the default
    /// domains made before any driver binds (see
    /// [`create_default_domain`](Self::create_default_domain)).
    pub fn create_domain_top(&mut self, kind: DomainKind) -> Result<DomainId, Error> {
        let did = self.alloc_did_top()?;
        self.create_domain_with(kind, did)
    }

    fn create_domain_with(&mut self, kind: DomainKind, did: u16) -> Result<DomainId, Error> {
        if kind == DomainKind::PassThrough && !self.ecap.pt {
            return Err(Error::NoPassThrough);
        }
        let pgd = match kind {
            DomainKind::PassThrough => None,
            _ => Some(self.new_table()?),
        };
        let mut iova = IovaAllocator::new(
            PAGE_SIZE,
            self.cfg.flush_queue_len,
            self.cfg.flush_queue_delay,
        );
        let _ = iova.reserve(INTERRUPT_WINDOW.0, INTERRUPT_WINDOW.1);
        for &(s, l) in &self.iova_windows {
            // A fresh allocator holds only reservations: this cannot overlap.
            let _ = iova.reserve_window(s, l);
        }
        self.domains.insert(
            did,
            Domain {
                kind,
                pgd,
                iova,
                devices: 0,
            },
        );
        log::debug!("DMAR: created domain {did} ({kind:?})");
        Ok(DomainId(did))
    }

    /// An identity domain mapping each `(start, len)` RAM range 1:1, read/write, with
    /// 2 MiB pages where aligned and supported.
    pub fn create_identity_domain(&mut self, ram: &[(PhysAddr, u64)]) -> Result<DomainId, Error> {
        let d = self.create_domain(DomainKind::Identity)?;
        self.map_identity(d, ram)?;
        Ok(d)
    }

    fn map_identity(&mut self, d: DomainId, ram: &[(PhysAddr, u64)]) -> Result<(), Error> {
        for &(start, len) in ram {
            let s = start.as_u64() & !(PAGE_SIZE - 1);
            let e = (start.as_u64() + len).next_multiple_of(PAGE_SIZE);
            self.map(d, s, PhysAddr::new(s), e - s, Perm::READ | Perm::WRITE)?;
            let _ = self.domain_mut(d)?.iova.reserve(s, e - s);
        }
        Ok(())
    }

    #[inline]
    fn domain_mut(&mut self, d: DomainId) -> Result<&mut Domain, Error> {
        self.domains.get_mut(&d.0).ok_or(Error::NoSuchDomain(d))
    }

    /// Keeps `[start, start + len)` out of every domain's IOVA space, now and
    /// for domains created later (Linux's `iova_reserve_pci_windows`: the PCI
    /// host bridge's memory windows, where a device's DMA would be claimed by
    /// a bridge or another device and never reach the unit). An identity
    /// domain maps RAM only, so a window never collides with its maps. Returns
    /// the first domain whose IOVAs already in use overlap the window (that
    /// domain keeps them; every other domain gets the window).
    pub fn reserve_iova_window(&mut self, start: u64, len: u64) -> Result<(), Error> {
        self.iova_windows.push((start, len));
        let mut first_err = None;
        for dom in self.domains.0.iter_mut().flatten() {
            if let Err(e) = dom.iova.reserve_window(start, len) {
                first_err.get_or_insert(Error::Iova(e));
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The IOVA windows [`RemappingUnit::reserve_iova_window`] keeps out.
    pub fn iova_windows(&self) -> &[(u64, u64)] {
        &self.iova_windows
    }

    /// Kind of a domain.
    pub fn domain_kind(&self, d: DomainId) -> Option<DomainKind> {
        self.domains.get(&d.0).map(|x| x.kind)
    }

    /// The domain's IOVA allocator (for the DMA API backend).
    pub fn iova_allocator(&mut self, d: DomainId) -> Result<&mut IovaAllocator, Error> {
        Ok(&mut self.domain_mut(d)?.iova)
    }

    /// Allocates an IOVA range of `size` bytes below `dma_mask` (inclusive mask, e.g.
    /// `(1 << 28) - 1`) and below the tables' address width.
    #[inline]
    pub fn alloc_iova(&mut self, d: DomainId, size: u64, dma_mask: u64) -> Result<u64, Error> {
        let limit = dma_mask.saturating_add(1).min(self.address_limit());
        Ok(self.domain_mut(d)?.iova.alloc(size, limit)?.as_u64())
    }

    /// Frees an IOVA range: it stays unusable until [`RemappingUnit::iova_flushed`]
    /// (after the IOTLB invalidation for it completed). Returns its size.
    #[inline]
    pub fn free_iova(&mut self, d: DomainId, iova: u64, now: u64) -> Result<u64, Error> {
        Ok(self
            .domain_mut(d)?
            .iova
            .free(hal::DmaAddr::new(iova), now)?)
    }

    /// Frees an IOVA range whose translations the caller has already removed *and*
    /// invalidated (the `crates/dma` backend order: unmap → flush_iotlb → free_iova):
    /// it is reusable at once.
    pub fn free_iova_flushed(&mut self, d: DomainId, iova: u64) -> Result<(), Error> {
        Ok(self.domain_mut(d)?.iova.cancel(hal::DmaAddr::new(iova))?)
    }

    /// Invalidates the IOTLB for `[iova, iova + len)` of domain `d` (page-selective
    /// with the smallest covering mask, or domain-selective) and waits for completion.
    pub fn flush_iotlb_range(&mut self, d: DomainId, iova: u64, len: u64) -> Result<(), Error> {
        self.flush_iotlb(IotlbInval::for_range(
            d.0,
            iova,
            len,
            self.cap.psi,
            self.cap.mamv,
        ))
    }

    /// Lazy mode: flushes the domain's IOTLB and releases its pending IOVAs if the
    /// flush queue is full or old at `now`; returns whether it flushed.
    #[inline]
    pub fn flush_queue_tick(&mut self, d: DomainId, now: u64) -> Result<bool, Error> {
        if !self.domain_mut(d)?.iova.flush_needed(now) {
            return Ok(false);
        }
        self.flush_iotlb(IotlbInval::Domain(d.0))?;
        self.domain_mut(d)?.iova.flush_done();
        Ok(true)
    }

    /// Lazy mode's delay bound without waiting for the next unmap (a timer calls
    /// it): every domain whose flush queue is full or old at `now` gets its
    /// domain-selective invalidation and its queued IOVAs back. Returns how many
    /// domains were flushed.
    pub fn flush_queues_due(&mut self, now: u64) -> Result<usize, Error> {
        let mut n = 0;
        for id in 0..self.domains.0.len() {
            let due = self.domains.0[id]
                .as_ref()
                .is_some_and(|dom| dom.iova.pending() > 0 && dom.iova.flush_needed(now));
            if due && self.flush_queue_tick(DomainId(id as u16), now)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Tells the domain's allocator that an IOTLB flush covering its pending ranges
    /// has completed.
    pub fn iova_flushed(&mut self, d: DomainId) -> Result<usize, Error> {
        Ok(self.domain_mut(d)?.iova.flush_done())
    }

    /// The DMA API's map path in one call: allocates an IOVA range below `dma_mask`
    /// for `[pa, pa + size)` (any alignment) and maps it with `perm`. Returns the IOVA
    /// of `pa` itself (with its offset in the page).
    #[inline]
    pub fn map_dma(
        &mut self,
        d: DomainId,
        pa: PhysAddr,
        size: u64,
        perm: Perm,
        dma_mask: u64,
    ) -> Result<u64, Error> {
        let off = pa.as_u64() & (PAGE_SIZE - 1);
        let len = (off + size.max(1)).next_multiple_of(PAGE_SIZE);
        let iova = self.alloc_iova(d, len, dma_mask)?;
        if let Err(e) = self.map(d, iova, PhysAddr::new(pa.as_u64() - off), len, perm) {
            // Never mapped, so nothing can be cached: free at once.
            let _ = self.domain_mut(d)?.iova.cancel(hal::DmaAddr::new(iova));
            return Err(e);
        }
        Ok(iova + off)
    }

    /// The DMA API's unmap path: unmaps what [`RemappingUnit::map_dma`] mapped for
    /// `size` bytes at `iova`, and frees the IOVA range. `strict`: invalidate the IOTLB
    /// for this range now and release just this range; otherwise (lazy) the range
    /// waits in the domain's flush queue, and a domain-wide flush happens when the
    /// queue is full or old at `now` (Linux's flush queue, spec §6.5 still obeyed:
    /// no reuse before invalidation).
    #[inline]
    pub fn unmap_dma(
        &mut self,
        d: DomainId,
        iova: u64,
        size: u64,
        now: u64,
        strict: bool,
    ) -> Result<(), Error> {
        let base = iova & !(PAGE_SIZE - 1);
        let len = (iova - base + size.max(1)).next_multiple_of(PAGE_SIZE);
        if strict {
            let info = self.unmap(d, base, len)?;
            self.free_iova(d, base, now)?;
            self.flush_unmap(&info)?;
            self.domain_mut(d)?
                .iova
                .flush_done_range(hal::DmaAddr::new(base));
        } else {
            // Lazy: no invalidation request to build; free and queue check on
            // one domain lookup.
            let pgd = self.pgd(d)?;
            self.clear_range(d, pgd, base, len)?;
            let dom = self.domain_mut(d)?;
            dom.iova.free(hal::DmaAddr::new(base), now)?;
            if dom.iova.flush_needed(now) {
                self.flush_iotlb(IotlbInval::Domain(d.0))?;
                self.domain_mut(d)?.iova.flush_done();
            }
        }
        Ok(())
    }

    /// Destroys a domain without devices: frees its tables and flushes its IOTLB
    /// entries so the id can be reused.
    pub fn destroy_domain(&mut self, d: DomainId) -> Result<(), Error> {
        let dom = self.domains.get(&d.0).ok_or(Error::NoSuchDomain(d))?;
        if dom.devices != 0 {
            return Err(Error::DomainBusy(d));
        }
        let pgd = dom.pgd;
        if dom.kind != DomainKind::PassThrough {
            self.flush_iotlb(IotlbInval::Domain(d.0))?;
        }
        if let Some(p) = pgd {
            self.free_tables(p, self.levels);
        }
        if self.leaf_cache.is_some_and(|(did, _, _)| did == d.0) {
            self.leaf_cache = None;
        }
        self.domains.remove(&d.0);
        Ok(())
    }

    fn free_tables(&mut self, table: PhysAddr, level: u8) {
        if level > 1 {
            for i in 0..512u64 {
                let e = self.mem.read_u64(table + i * 8);
                if e & (tables::SL_R | tables::SL_W) != 0 && e & tables::SL_PS == 0 {
                    self.free_tables(PhysAddr::new(e & tables::ADDR_MASK), level - 1);
                }
            }
        }
        self.frames.free_page(table);
    }

    /// Registers an RMRR (from the DMAR table): `[base, base + len)` must stay
    /// identity-mapped for `devices` in whatever translated domain they are attached
    /// to (spec §8.4).
    pub fn add_rmrr(&mut self, devices: &[Bdf], base: u64, len: u64) {
        self.rmrrs.push(Rmrr {
            devices: devices.to_vec(),
            base,
            len,
        });
    }

    /// Whether an RMRR names `bdf` (its firmware keeps using that memory, so it
    /// cannot be left with nothing mapped).
    pub fn has_rmrr(&self, bdf: Bdf) -> bool {
        self.rmrrs.iter().any(|r| r.devices.contains(&bdf))
    }

    fn apply_rmrrs(&mut self, bdf: Bdf, d: DomainId) -> Result<(), Error> {
        let ranges: Vec<(u64, u64)> = self
            .rmrrs
            .iter()
            .filter(|r| r.devices.contains(&bdf))
            .map(|r| (r.base, r.len))
            .collect();
        for (base, len) in ranges {
            let s = base & !(PAGE_SIZE - 1);
            let e = (base + len).next_multiple_of(PAGE_SIZE);
            for p in (s..e).step_by(PAGE_SIZE as usize) {
                match self.translate_domain(d, p) {
                    Some(t) if t.pa.as_u64() == p => continue,
                    Some(_) => return Err(Error::AlreadyMapped(p)),
                    None => {
                        self.map(d, p, PhysAddr::new(p), PAGE_SIZE, Perm::READ | Perm::WRITE)?
                    }
                }
            }
            let _ = self.domain_mut(d)?.iova.reserve(s, e - s);
        }
        Ok(())
    }

    fn context_table(&mut self, bus: u8) -> Result<PhysAddr, Error> {
        if let Some(&t) = self.context_tables.get(&bus) {
            return Ok(t);
        }
        let t = self.new_table()?;
        // §9.1: root entry lo = CTP | P; hi reserved (0) in legacy mode.
        let re = self.root + bus as u64 * 16;
        self.write_entry(re + 8u64, 0);
        self.write_entry(re, t.as_u64() | tables::ROOT_P);
        self.context_tables.insert(bus, t);
        Ok(t)
    }

    /// Attaches `bdf` to domain `d`: writes its context entry (detaching it from a
    /// previous domain first), identity-maps its RMRRs into translated domains, and
    /// performs the invalidations §6.5.3.3 asks for.
    pub fn attach(&mut self, bdf: Bdf, d: DomainId) -> Result<(), Error> {
        let dom = self.domains.get(&d.0).ok_or(Error::NoSuchDomain(d))?;
        let (kind, pgd) = (dom.kind, dom.pgd);
        if self.attached.get(&bdf.sid()) == Some(&d.0) {
            return Ok(());
        }
        if self.attached.contains_key(&bdf.sid()) {
            self.detach(bdf)?;
        }
        if kind != DomainKind::PassThrough {
            self.apply_rmrrs(bdf, d)?;
        }
        let ct = self.context_table(bdf.bus)?;
        // AW: the domain's depth for translated entries; for pass-through the largest
        // AGAW the unit supports (§9.3, Linux's msagaw), not the domain's depth.
        let (tt, ptr, aw) = match kind {
            DomainKind::PassThrough => (
                tables::TT_PASS_THROUGH,
                0,
                self.cap.max_levels().unwrap_or(self.levels),
            ),
            _ => (
                tables::TT_SECOND_LEVEL,
                pgd.map_or(0, |p| p.as_u64()),
                self.levels,
            ),
        };
        let (lo, hi) = tables::context_entry(ptr, tt, aw, d.0);
        let ce = ct + bdf.devfn as u64 * 16;
        // High qword first, then the low one with P: the unit never sees a present
        // entry with a stale DID/AW.
        self.write_entry(ce + 8u64, hi);
        self.write_entry(ce, lo);
        self.attached.insert(bdf.sid(), d.0);
        if let Some(x) = self.domains.get_mut(&d.0) {
            x.devices += 1;
        }
        if self.cap.cm {
            // §6.1 caching mode: not-present entries may be cached (tagged DID 0).
            self.flush_context(ContextInval::Device {
                did: 0,
                sid: bdf.sid(),
                fm: 0,
            })?;
            self.flush_iotlb(IotlbInval::Domain(d.0))?;
        } else {
            // A not-present → present change needs no invalidation, only the write
            // buffer flush when CAP.RWBF (§6.8).
            self.flush_write_buffer()?;
        }
        log::info!("DMAR: {bdf} attached to domain {} ({kind:?})", d.0);
        Ok(())
    }

    /// Detaches `bdf`: clears its context entry, then device-selective context-cache
    /// and domain-selective IOTLB invalidation (§6.5.3.3).
    pub fn detach(&mut self, bdf: Bdf) -> Result<DomainId, Error> {
        let did = self
            .attached
            .remove(&bdf.sid())
            .ok_or(Error::NotAttached(bdf))?;
        if let Some(ct) = self.context_tables.get(&bdf.bus).copied() {
            let ce = ct + bdf.devfn as u64 * 16;
            self.write_entry(ce, 0);
            self.write_entry(ce + 8u64, 0);
        }
        if let Some(x) = self.domains.get_mut(&did) {
            x.devices = x.devices.saturating_sub(1);
        }
        self.flush_context(ContextInval::Device {
            did,
            sid: bdf.sid(),
            fm: 0,
        })?;
        self.flush_iotlb(IotlbInval::Domain(did))?;
        Ok(DomainId(did))
    }

    /// The domain one of `aliases` (the requester IDs a device's DMA can carry,
    /// see `pci::Topology::dma_aliases`) is already attached to. The unit tells
    /// requests apart by source-id alone (§3.4), so a device sharing an ID with
    /// an attached device must join that device's domain: no isolation between
    /// them is possible.
    pub fn group_domain(&self, aliases: &[Bdf]) -> Option<DomainId> {
        aliases.iter().find_map(|a| self.domain_of(*a))
    }

    /// Attaches a device to `d` under every requester ID its DMA can carry:
    /// `aliases[0]` is its own (moved from a previous domain, as
    /// [`RemappingUnit::attach`] does), the others are those bridges substitute
    /// for it, one context entry each. An alias already in another domain is
    /// refused before anything is written ([`Error::AliasInOtherDomain`]):
    /// taking it would silently move the devices that share it.
    pub fn attach_aliases(&mut self, aliases: &[Bdf], d: DomainId) -> Result<(), Error> {
        if !self.domains.contains_key(&d.0) {
            return Err(Error::NoSuchDomain(d));
        }
        for a in aliases.iter().skip(1) {
            match self.domain_of(*a) {
                Some(other) if other != d => {
                    return Err(Error::AliasInOtherDomain(*a, other));
                }
                _ => {}
            }
        }
        for a in aliases {
            self.attach(*a, d)?;
        }
        Ok(())
    }

    /// Domain a device is attached to.
    pub fn domain_of(&self, bdf: Bdf) -> Option<DomainId> {
        self.attached.get(&bdf.sid()).map(|&d| DomainId(d))
    }

    // ----- mapping -----

    #[inline]
    fn pgd(&self, d: DomainId) -> Result<PhysAddr, Error> {
        let dom = self.domains.get(&d.0).ok_or(Error::NoSuchDomain(d))?;
        dom.pgd.ok_or(Error::NotTranslated(d))
    }

    /// Entry slot at `target` level for `iova`, allocating intermediate tables.
    fn walk_alloc(&mut self, pgd: PhysAddr, iova: u64, target: u8) -> Result<PhysAddr, Error> {
        // From the top table (`pgd`, level `self.levels`) down to `target`: the slot
        // for `iova` at each level is `table + tables::level_index(iova, level) * 8`.
        // An entry with neither R nor W is not present: get a zeroed table from
        // `self.new_table()?` and point the entry at it with R and W set (the hardware
        // ANDs the permissions of every level, so the leaf decides) through
        // `self.write_entry` (which also flushes the cache line for a non-coherent
        // unit). A present entry with PS set is
        // a large page in the way: `Error::AlreadyMapped(iova)`. Return the slot at
        // `target` (level 1: a 4 KiB leaf, level 2: a 2 MiB leaf).
        // exercise(vtd-pagetables): begin
        let mut table = pgd;
        let mut level = self.levels;
        while level > target {
            let slot = table + tables::level_index(iova, level) * 8;
            let e = self.mem.read_u64(slot);
            if e & (tables::SL_R | tables::SL_W) == 0 {
                let t = self.new_table()?;
                // Non-leaf entries carry R|W: QEMU ANDs permissions over all levels.
                self.write_entry(slot, t.as_u64() | tables::SL_R | tables::SL_W);
                table = t;
            } else if e & tables::SL_PS != 0 {
                return Err(Error::AlreadyMapped(iova));
            } else {
                table = PhysAddr::new(e & tables::ADDR_MASK);
            }
            level -= 1;
        }
        Ok(table + tables::level_index(iova, target) * 8)
        // exercise(vtd-pagetables): stub
        // let _ = (pgd, iova, target);
        // todo!("exercise vtd-pagetables: walk down to `target`, allocating tables")
        // exercise(vtd-pagetables): end
    }

    /// The level-1 slot for `iova` in domain `d`, allocating tables on the way;
    /// through [`RemappingUnit::leaf_cache`] when the last walk ended in the same
    /// 2 MiB.
    #[inline]
    fn leaf_slot_alloc(
        &mut self,
        d: DomainId,
        pgd: PhysAddr,
        iova: u64,
    ) -> Result<PhysAddr, Error> {
        let region = iova >> 21;
        if let Some((did, r, table)) = self.leaf_cache {
            if did == d.0 && r == region {
                return Ok(table + tables::level_index(iova, 1) * 8);
            }
        }
        let slot = self.walk_alloc(pgd, iova, 1)?;
        let table = PhysAddr::new(slot.as_u64() & !(PAGE_SIZE - 1));
        self.leaf_cache = Some((d.0, region, table));
        Ok(slot)
    }

    /// The leaf slot, level and entry for `iova` like [`RemappingUnit::find_leaf`],
    /// through the leaf cache when it covers `iova` (and filling it otherwise).
    #[inline]
    fn find_leaf_cached(
        &mut self,
        d: DomainId,
        pgd: PhysAddr,
        iova: u64,
    ) -> Option<(PhysAddr, u8, u64)> {
        let region = iova >> 21;
        if let Some((did, r, table)) = self.leaf_cache {
            if did == d.0 && r == region {
                let slot = table + tables::level_index(iova, 1) * 8;
                let e = self.mem.read_u64(slot);
                return (e & (tables::SL_R | tables::SL_W) != 0).then_some((slot, 1, e));
            }
        }
        let found = self.find_leaf(pgd, iova);
        if let Some((slot, 1, _)) = found {
            let table = PhysAddr::new(slot.as_u64() & !(PAGE_SIZE - 1));
            self.leaf_cache = Some((d.0, region, table));
        }
        found
    }

    /// Maps `[iova, iova + len)` to `[pa, pa + len)` in domain `d` with `perm`, using
    /// 2 MiB pages where both addresses are 2 MiB aligned and CAP.SLLPS allows. On
    /// error nothing stays mapped. A new mapping needs no IOTLB invalidation (only
    /// present entries are cached), but a write-buffer flush when CAP.RWBF, and an
    /// IOTLB flush when CAP.CM (§6.1).
    pub fn map(
        &mut self,
        d: DomainId,
        iova: u64,
        pa: PhysAddr,
        len: u64,
        perm: Perm,
    ) -> Result<(), Error> {
        let pgd = self.pgd(d)?;
        if !iova.is_multiple_of(PAGE_SIZE)
            || !pa.as_u64().is_multiple_of(PAGE_SIZE)
            || !len.is_multiple_of(PAGE_SIZE)
            || len == 0
        {
            return Err(Error::Misaligned);
        }
        let end = iova
            .checked_add(len)
            .ok_or(Error::BeyondAddressWidth(iova))?;
        if end > self.address_limit() {
            return Err(Error::BeyondAddressWidth(end - 1));
        }
        let mut off = 0;
        while off < len {
            let (v, p) = (iova + off, pa.as_u64() + off);
            let big = tables::level_size(2);
            // A level-1 table left behind by earlier 4 KiB mappings stays (replacing it
            // would need a paging-structure invalidation first), so the range is then
            // mapped with 4 KiB pages.
            let large = self.cap.has_2m()
                && v % big == 0
                && p % big == 0
                && len - off >= big
                && !self.has_table_at_level2(pgd, v);
            let size = if large { big } else { PAGE_SIZE };
            let slot = if large {
                self.walk_alloc(pgd, v, 2)
            } else {
                self.leaf_slot_alloc(d, pgd, v)
            };
            let r = slot.and_then(|slot| {
                if self.mem.read_u64(slot) & (tables::SL_R | tables::SL_W) != 0 {
                    Err(Error::AlreadyMapped(v))
                } else {
                    self.write_entry(slot, tables::sl_entry(p, perm, large));
                    Ok(())
                }
            });
            if let Err(e) = r {
                if off > 0 {
                    let _ = self.clear_range(d, pgd, iova, off);
                }
                return Err(e);
            }
            off += size;
        }
        self.flush_write_buffer()?;
        if self.cap.cm {
            self.flush_iotlb(IotlbInval::for_range(
                d.0,
                iova,
                len,
                self.cap.psi,
                self.cap.mamv,
            ))?;
        }
        Ok(())
    }

    /// True if the level-2 entry for `iova` points to a level-1 table.
    fn has_table_at_level2(&self, pgd: PhysAddr, iova: u64) -> bool {
        let mut table = pgd;
        let mut level = self.levels;
        loop {
            let e = self
                .mem
                .read_u64(table + tables::level_index(iova, level) * 8);
            if e & (tables::SL_R | tables::SL_W) == 0 || e & tables::SL_PS != 0 {
                return false;
            }
            if level == 2 {
                return true;
            }
            table = PhysAddr::new(e & tables::ADDR_MASK);
            level -= 1;
        }
    }

    /// Leaf slot and its level for `iova`, without allocating.
    fn find_leaf(&self, pgd: PhysAddr, iova: u64) -> Option<(PhysAddr, u8, u64)> {
        // The walk the hardware does: from the top level down, stop with `None` at an
        // entry that is not present, and with (slot, level, entry) at a leaf: level 1,
        // or an entry with PS set (a 2 MiB or 1 GiB page).
        // exercise(vtd-pagetables): begin
        let mut table = pgd;
        let mut level = self.levels;
        loop {
            let slot = table + tables::level_index(iova, level) * 8;
            let e = self.mem.read_u64(slot);
            if e & (tables::SL_R | tables::SL_W) == 0 {
                return None;
            }
            if level == 1 || e & tables::SL_PS != 0 {
                return Some((slot, level, e));
            }
            table = PhysAddr::new(e & tables::ADDR_MASK);
            level -= 1;
        }
        // exercise(vtd-pagetables): stub
        // let _ = (pgd, iova);
        // todo!("exercise vtd-pagetables: find the leaf entry for `iova`")
        // exercise(vtd-pagetables): end
    }

    #[inline]
    fn clear_range(
        &mut self,
        d: DomainId,
        pgd: PhysAddr,
        iova: u64,
        len: u64,
    ) -> Result<(), Error> {
        // Check first, so a failed unmap changes nothing; then walk again to
        // clear (no list of slots on the heap: this runs for every unmap, and
        // the second walk of each 2 MiB hits the leaf cache).
        if len == PAGE_SIZE {
            // The common single page: one lookup, nothing to check beyond it.
            return match self.find_leaf_cached(d, pgd, iova) {
                Some((slot, 1, _)) => {
                    self.write_entry(slot, 0);
                    Ok(())
                }
                _ => Err(Error::NotMapped(iova)),
            };
        }
        let mut off = 0;
        while off < len {
            let v = iova + off;
            let (_, level, _) = self
                .find_leaf_cached(d, pgd, v)
                .ok_or(Error::NotMapped(v))?;
            let size = tables::level_size(level);
            if !v.is_multiple_of(size) || len - off < size {
                return Err(Error::NotMapped(v));
            }
            off += size;
        }
        off = 0;
        while off < len {
            let v = iova + off;
            let (slot, level, _) = self
                .find_leaf_cached(d, pgd, v)
                .ok_or(Error::NotMapped(v))?;
            self.write_entry(slot, 0);
            off += tables::level_size(level);
        }
        Ok(())
    }

    /// Unmaps `[iova, iova + len)` (whole pages; a 2 MiB page only as a whole). The
    /// IOTLB still holds the old translations: issue `inval` of the returned
    /// [`UnmapInfo`] ([`RemappingUnit::flush_unmap`]) before reusing the range.
    /// Intermediate tables are kept (they are reused by later maps and freed with the
    /// domain).
    pub fn unmap(&mut self, d: DomainId, iova: u64, len: u64) -> Result<UnmapInfo, Error> {
        let pgd = self.pgd(d)?;
        if !iova.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) || len == 0 {
            return Err(Error::Misaligned);
        }
        self.clear_range(d, pgd, iova, len)?;
        Ok(UnmapInfo {
            did: d,
            iova,
            len,
            inval: IotlbInval::for_range(d.0, iova, len, self.cap.psi, self.cap.mamv),
        })
    }

    /// Software walk of the domain's page tables.
    pub fn translate_domain(&self, d: DomainId, iova: u64) -> Option<Translation> {
        let dom = self.domains.get(&d.0)?;
        let Some(pgd) = dom.pgd else {
            return Some(Translation {
                pa: PhysAddr::new(iova),
                perm: Perm::READ | Perm::WRITE,
                page_size: 0,
                did: d.0,
            });
        };
        let (_, level, e) = self.find_leaf(pgd, iova)?;
        let size = tables::level_size(level);
        let mut perm = Perm::empty();
        perm.set(Perm::READ, e & tables::SL_R != 0);
        perm.set(Perm::WRITE, e & tables::SL_W != 0);
        Some(Translation {
            pa: PhysAddr::new((e & tables::ADDR_MASK & !(size - 1)) | (iova & (size - 1))),
            perm,
            page_size: size,
            did: d.0,
        })
    }

    /// Software walk from the root table in memory, for `iommu translate`: where would
    /// `iova` from `bus:devfn` land? Mirrors the hardware walk of §3.4-§3.7 and reports
    /// what would fault with the fault reason the unit would record. (Tests use the
    /// device model's independent walk as the oracle, not this.)
    pub fn translate(&self, bdf: Bdf, iova: u64) -> Result<Translation, FaultReason> {
        let re = self.mem.read_u64(self.root + bdf.bus as u64 * 16);
        if re & tables::ROOT_P == 0 {
            return Err(FaultReason::ROOT_NOT_PRESENT);
        }
        let ce = PhysAddr::new(re & tables::ADDR_MASK) + bdf.devfn as u64 * 16;
        let (lo, hi) = (self.mem.read_u64(ce), self.mem.read_u64(ce + 8u64));
        if lo & tables::CTX_P == 0 {
            return Err(FaultReason::CONTEXT_NOT_PRESENT);
        }
        let did = (hi >> tables::CTX_DID_SHIFT) as u16;
        let levels = (hi & 7) as u8 + 2;
        if !self.cap.supports_levels(levels) {
            return Err(FaultReason::CONTEXT_INVALID);
        }
        match (lo >> tables::CTX_TT_SHIFT) & 3 {
            tables::TT_PASS_THROUGH if self.ecap.pt => {
                return Ok(Translation {
                    pa: PhysAddr::new(iova),
                    perm: Perm::READ | Perm::WRITE,
                    page_size: 0,
                    did,
                })
            }
            tables::TT_SECOND_LEVEL => {}
            _ => return Err(FaultReason::CONTEXT_INVALID),
        }
        if iova >> tables::agaw_bits(levels).min(self.cap.mgaw as u32) != 0 {
            return Err(FaultReason::ADDRESS_BEYOND_AGAW);
        }
        let mut table = lo & tables::ADDR_MASK;
        let mut level = levels;
        let mut perm = Perm::READ | Perm::WRITE;
        loop {
            let e = self
                .mem
                .read_u64(PhysAddr::new(table + tables::level_index(iova, level) * 8));
            if e & tables::SL_R == 0 {
                perm.remove(Perm::READ);
            }
            if e & tables::SL_W == 0 {
                perm.remove(Perm::WRITE);
            }
            if perm.is_empty() {
                return Err(FaultReason::READ_DENIED);
            }
            if level == 1 || e & tables::SL_PS != 0 {
                let size = tables::level_size(level);
                return Ok(Translation {
                    pa: PhysAddr::new((e & tables::ADDR_MASK & !(size - 1)) | (iova & (size - 1))),
                    perm,
                    page_size: size,
                    did,
                });
            }
            table = e & tables::ADDR_MASK;
            level -= 1;
        }
    }

    // ----- faults -----

    /// Current fault status.
    pub fn fault_status(&self) -> Fsts {
        Fsts::from_bits_retain(self.regs.read32(regs::FSTS))
    }

    /// Reads every recorded fault, starting at FSTS.FRI, and clears each record
    /// (write 1 to F, §7.2.1), then clears FSTS.PFO so recording resumes (§11.4.7.2).
    pub fn take_faults(&mut self) -> Vec<FaultRecord> {
        let mut out = Vec::new();
        if self.drain_faults(|rec| out.push(rec)) {
            log::warn!("DMAR: primary fault overflow, faults were lost");
        }
        out
    }

    /// As [`take_faults`](Self::take_faults), handing each record to `sink` in
    /// order, without allocating or logging (for an interrupt handler). Returns
    /// whether FSTS.PFO was set (records were lost before these were read).
    pub fn drain_faults(&mut self, mut sink: impl FnMut(FaultRecord)) -> bool {
        let fsts = self.fault_status();
        let n = self.cap.nfr.max(1);
        if fsts.contains(Fsts::PPF) {
            let mut idx = ((fsts.bits() >> 8) & 0xff) as u16 % n;
            for _ in 0..n {
                let off = regs::frcd_offset(&self.cap, idx);
                let hi = self.regs.read64(off + 8);
                let lo = self.regs.read64(off);
                let Some(rec) = FaultRecord::decode(idx, lo, hi) else {
                    break;
                };
                sink(rec);
                // F is bit 31 of the top dword; a 32-bit RW1C write leaves the rest alone.
                self.regs.write32(off + 12, (FRCD_HI_F >> 32) as u32);
                idx = (idx + 1) % n;
            }
        }
        let overflowed = fsts.contains(Fsts::PFO);
        self.regs.write32(regs::FSTS, Fsts::PFO.bits());
        overflowed
    }

    /// Clears all fault records and FSTS error bits without reporting them.
    pub fn clear_faults(&mut self) {
        for i in 0..self.cap.nfr.max(1) {
            let off = regs::frcd_offset(&self.cap, i);
            if self.regs.read64(off + 8) & FRCD_HI_F != 0 {
                self.regs.write32(off + 12, (FRCD_HI_F >> 32) as u32);
            }
        }
        self.regs.write32(
            regs::FSTS,
            (Fsts::PFO | Fsts::IQE | Fsts::ICE | Fsts::ITE).bits(),
        );
    }

    // ----- interrupt remapping (spec chapter 5, §9.10) -----

    /// Turns interrupt remapping on with a one-page table of 256 entries (IRTA.S =
    /// 7, EIME = 0: xAPIC destinations, the only mode QEMU offers under TCG):
    /// IRTA → GCMD.SIRTP (wait IRTPS) → global IEC invalidation → GCMD.IRE (wait
    /// IRES) → GCMD.CFI clear if GSTS.CFIS was set (wait CFIS clear), so
    /// compatibility-format MSIs are blocked, as Linux does. Needs ECAP.IR and queued invalidation (the IEC is
    /// invalidated only through the queue, §6.5.2.7).
    pub fn enable_interrupt_remapping(&mut self) -> Result<(), Error> {
        if !self.ecap.ir {
            return Err(Error::NoInterruptRemapping);
        }
        if self.mode != InvalMode::Queued {
            return Err(Error::NoQueuedInvalidation);
        }
        if self.ir.is_none() {
            let table = self.new_table()?;
            self.ir = Some(IntRemap {
                table,
                alloc: IrteAllocator::new(intremap::ONE_PAGE_ENTRIES),
            });
        }
        let table = self.ir.as_ref().map_or(PhysAddr::new(0), |i| i.table);
        self.regs
            .write64(regs::IRTA, intremap::irta_value(table.as_u64(), 7, false));
        self.gcmd_oneshot(Gcmd::SIRTP, |s| s.contains(Gsts::IRTPS), "GSTS.IRTPS")?;
        self.flush_iec(IecInval::Global)?;
        // One GCMD change at a time (§10.4.4), as Linux does since 5.10: IRE,
        // then CFI off if firmware left compatibility format on.
        self.gcmd_persistent(Gcmd::IRE, true, Gsts::IRES, "GSTS.IRES set")?;
        if self.gsts().contains(Gsts::CFIS) {
            self.gcmd_persistent(Gcmd::CFI, false, Gsts::CFIS, "GSTS.CFIS clear")?;
        }
        Ok(())
    }

    /// Turns interrupt remapping off (GCMD.IRE clear, wait IRES clear). The
    /// table and its allocations stay, for a later enable.
    pub fn disable_interrupt_remapping(&mut self) -> Result<(), Error> {
        self.gcmd_persistent(Gcmd::IRE, false, Gsts::IRES, "GSTS.IRES clear")
    }

    /// Whether GSTS.IRES is set.
    pub fn interrupt_remapping_enabled(&self) -> bool {
        self.gsts().contains(Gsts::IRES)
    }

    /// Physical address of the interrupt remapping table, once enabled.
    pub fn irt_address(&self) -> Option<PhysAddr> {
        self.ir.as_ref().map(|i| i.table)
    }

    /// Invalidates interrupt-entry-cache entries through the queue.
    pub fn flush_iec(&mut self, req: IecInval) -> Result<(), Error> {
        if self.mode != InvalMode::Queued {
            return Err(Error::NoQueuedInvalidation);
        }
        self.stats.iec_invalidations += 1;
        self.qi_submit(&[req.descriptor()])
    }

    /// Allocates `count` (a power of two) IRTEs for requester `owner`, all
    /// not present; returns the handle (first index).
    pub fn alloc_irte(&mut self, owner: Bdf, count: u16) -> Result<u16, Error> {
        let ir = self.ir.as_mut().ok_or(Error::InterruptRemappingOff)?;
        ir.alloc.alloc(owner.sid(), count).map_err(Error::Irte)
    }

    /// Writes IRTE `index` (inside a block `owner` holds) and invalidates its
    /// IEC entry. The entry's source validation is forced to `owner` (full
    /// 16-bit match) unless it already names a check that `owner` passes, so
    /// an entry can never be opened to another requester by mistake.
    pub fn set_irte(&mut self, owner: Bdf, index: u16, mut irte: Irte) -> Result<(), Error> {
        let ir = self.ir.as_ref().ok_or(Error::InterruptRemappingOff)?;
        let b = ir
            .alloc
            .block_containing(index)
            .ok_or(Error::Irte(IrteError::NotAllocated(index)))?;
        if b.owner != owner.sid() {
            return Err(Error::Irte(IrteError::NotOwner {
                index,
                owner: b.owner,
            }));
        }
        if matches!(irte.source, intremap::SourceValidation::None)
            || !irte.source.allows(owner.sid())
        {
            irte.source = intremap::SourceValidation::Requester {
                sid: owner.sid(),
                sq: 0,
            };
        }
        let pa = ir.table + index as u64 * intremap::IRTE_SIZE;
        let [lo, hi] = irte.encode();
        // High qword first, then the low one with P: the unit never sees a
        // present entry with a stale source check (§9.10 guidance on updates).
        self.mem.write_u64(pa + 8u64, hi);
        self.mem.write_u64(pa, lo);
        self.flush_cache(pa, 16);
        self.flush_iec(IecInval::Index { index, im: 0 })
    }

    /// Reads IRTE `index` back from the table.
    pub fn irte(&self, index: u16) -> Result<Irte, Error> {
        let ir = self.ir.as_ref().ok_or(Error::InterruptRemappingOff)?;
        if index >= ir.alloc.size() {
            return Err(Error::Irte(IrteError::NotAllocated(index)));
        }
        let pa = ir.table + index as u64 * intremap::IRTE_SIZE;
        let raw = [self.mem.read_u64(pa), self.mem.read_u64(pa + 8u64)];
        // Only this driver writes the table, with no reserved bits.
        Irte::decode(raw, false).map_err(|_| Error::Irte(IrteError::NotAllocated(index)))
    }

    /// Clears the block at `handle` (P = 0), invalidates it in the IEC, and frees it.
    pub fn free_irte(&mut self, owner: Bdf, handle: u16) -> Result<(), Error> {
        let ir = self.ir.as_mut().ok_or(Error::InterruptRemappingOff)?;
        let b = ir.alloc.free(handle, owner.sid()).map_err(Error::Irte)?;
        let table = ir.table;
        for i in b.index..b.index + b.count {
            let pa = table + i as u64 * intremap::IRTE_SIZE;
            self.mem.write_u64(pa, 0);
            self.mem.write_u64(pa + 8u64, 0);
            self.flush_cache(pa, 16);
        }
        self.flush_iec(IecInval::Index {
            index: b.index,
            im: b.count.trailing_zeros() as u8,
        })
    }

    /// Allocated IRTE blocks (for the shell's `iommu` table).
    pub fn irte_blocks(&self) -> Vec<intremap::IrteBlock> {
        self.ir.as_ref().map_or_else(Vec::new, |i| i.alloc.blocks())
    }
}
