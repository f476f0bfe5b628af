//! Bring-up and the global command register: GCMD/GSTS (spec §10.4.4-5), what firmware left on ([`quiesce`], [`Handoff`]), translation on/off, the write-buffer flush.

use super::*;
use crate::inval::ContextInval;
use crate::regs::{Gcmd, ECTL_IM};

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

    pub(super) fn poll(
        &self,
        what: &'static str,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<(), Error> {
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
    pub(super) fn gcmd_oneshot(
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
    pub(super) fn gcmd_persistent(
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
}
