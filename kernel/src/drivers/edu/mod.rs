//! QEMU's `edu` teaching device (1234:11e8, hw-facts §5): the kernel binding of the
//! `edu` crate — the PCI driver table entry, BAR0 `ioremap`, the MSI vector and its
//! handler, the DMA mask, and waiting for a transfer. The register block and the
//! programming sequence belong to the crate's [`hw::Edu`]; the dmaengine provider
//! (`dmaengine`) drives the same object.

pub mod dmaengine;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use ::edu as hw;
use dma::{Coherent, DeviceReads, DeviceWrites, DmaStream};
use pci::{DeviceCtx, MsiMessage, PciDeviceId, PciDriver, ProbeError};

use crate::arch::idt::TrapFrame;
use crate::mm::{self as kmm, IoMem};
use crate::sync::IrqSpinLock;

pub use hw::{EduDir, EduError, DEVICE, VENDOR};

/// The device-side buffer window (hw-facts §5.3).
pub const EDU_BUFFER: u64 = hw::regs::BUFFER;
/// QEMU 7.2 aborts on a full 4096-byte transfer (an off-by-one in its range
/// check), so 4095 bytes is the largest safe transfer.
pub const MAX_DMA: usize = hw::MAX_TRANSFER;

/// The probed device: its driver object stays while bound.
pub struct Edu {
    /// The register block's one owner (shared with the dmaengine provider).
    pub dev: Arc<hw::Edu<IoMem>>,
    pub vector: u8,
    pub bdf: pci::Bdf,
    /// The device as the DMA API knows it (28-bit mask, its backend).
    pub dma: Arc<dma::DmaDevice>,
    /// Index into the interrupt slots.
    pub slot: usize,
}

/// Per-device interrupt state, indexed by `Edu::slot`: the MSI handler finds
/// its device by vector (it cannot take the driver's lock).
struct Slot {
    vector: AtomicU8,
    regs_va: AtomicU64,
    regs_len: AtomicUsize,
    dma_done: AtomicBool,
    /// The argument of the DMA-done callback for this device (`usize::MAX`: none).
    engine: AtomicUsize,
}

const MAX_EDU: usize = 4;
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot {
    vector: AtomicU8::new(0),
    regs_va: AtomicU64::new(0),
    regs_len: AtomicUsize::new(0),
    dma_done: AtomicBool::new(false),
    engine: AtomicUsize::new(usize::MAX),
};
static SLOTS: [Slot; MAX_EDU] = [EMPTY_SLOT; MAX_EDU];
static DMA_BY_MSI: AtomicU64 = AtomicU64::new(0);
static DMA_BY_POLL: AtomicU64 = AtomicU64::new(0);

/// (completions seen by MSI, completions found by polling).
pub fn dma_completions() -> (u64, u64) {
    (
        DMA_BY_MSI.load(Ordering::Relaxed),
        DMA_BY_POLL.load(Ordering::Relaxed),
    )
}

/// Waits for a transfer: by MSI, with a polling fallback on the RUN bit, bounded to 2 s.
struct MsiWait<'a>(&'a AtomicBool);

impl hw::Wait for MsiWait<'_> {
    fn wait(&mut self, busy: &dyn Fn() -> bool) -> Result<hw::Completion, EduError> {
        for _ in 0..400 {
            crate::arch::apic::sleep_ms(5);
            if self.0.swap(false, Ordering::AcqRel) {
                DMA_BY_MSI.fetch_add(1, Ordering::Relaxed);
                return Ok(hw::Completion::Interrupt);
            }
            if !busy() {
                // Done, but the MSI did not arrive (yet): polling fallback.
                DMA_BY_POLL.fetch_add(1, Ordering::Relaxed);
                return Ok(hw::Completion::Polled);
            }
        }
        Err(EduError::Timeout)
    }
}

impl Edu {
    fn waiter(&self) -> MsiWait<'static> {
        let done = &SLOTS[self.slot].dma_done;
        done.store(false, Ordering::Release);
        MsiWait(done)
    }

    /// Copies the first `len` bytes of a mapping of this device into edu's buffer.
    pub fn to_device<D: DeviceReads>(
        &self,
        src: &DmaStream<D>,
        len: usize,
    ) -> Result<(), EduError> {
        self.dev.to_device(src, len, &mut self.waiter()).map(drop)
    }

    /// Copies `len` bytes of edu's buffer into a mapping of this device.
    // Named for the DMA direction (Linux's DMA_FROM_DEVICE), not a conversion.
    #[allow(clippy::wrong_self_convention)]
    pub fn from_device<D: DeviceWrites>(
        &self,
        dst: &DmaStream<D>,
        len: usize,
    ) -> Result<(), EduError> {
        self.dev.from_device(dst, len, &mut self.waiter()).map(drop)
    }

    /// A transfer between coherent memory of this device and edu's buffer.
    pub fn coherent(&self, dir: EduDir, mem: &Coherent, len: usize) -> Result<(), EduError> {
        self.dev
            .coherent(dir, mem, len, &mut self.waiter())
            .map(drop)
    }

    /// Runs one transfer between edu's buffer and any bus address, and waits for it.
    ///
    /// # Safety
    /// The device reads (`ToDevice`) or writes (`FromDevice`) `len` bytes at `bus`:
    /// unless `bus` is a live mapping of this device from the DMA API, that is any
    /// memory the device reaches. Only the deliberate-misuse demonstrations (stale
    /// IOVAs, the attack profile, the clamp check) call this.
    pub unsafe fn transfer_raw(
        &self,
        dir: EduDir,
        bus: hal::DmaAddr,
        len: usize,
    ) -> Result<(), EduError> {
        // SAFETY: the caller's contract.
        unsafe { self.dev.transfer_raw(dir, bus, len, &mut self.waiter()) }.map(drop)
    }
}

/// The bound devices (in probe order).
static EDU: IrqSpinLock<alloc::vec::Vec<Edu>> = IrqSpinLock::new(alloc::vec::Vec::new());

static IRQS: AtomicU64 = AtomicU64::new(0);
/// Status bits seen by the handler (ORed), for tests and `edu info`.
static LAST_STATUS: AtomicU64 = AtomicU64::new(0);
pub fn irq_count() -> u64 {
    IRQS.load(Ordering::SeqCst)
}

pub fn last_status() -> u64 {
    LAST_STATUS.load(Ordering::SeqCst)
}

/// The first device's MSI vector.
pub fn vector() -> u8 {
    SLOTS[0].vector.load(Ordering::SeqCst)
}

fn msi_handler(f: &mut TrapFrame) {
    let Some(slot) = SLOTS
        .iter()
        .find(|s| s.vector.load(Ordering::Acquire) as u64 == f.vector)
    else {
        return;
    };
    let va = slot.regs_va.load(Ordering::Acquire);
    if va == 0 {
        return;
    }
    // SAFETY: regs_va is non-zero only while the driver is bound and BAR0 is
    // mapped uncached for regs_len bytes (remove() clears it before the mapping
    // goes away); the view is used for this handler only.
    let regs = unsafe {
        hal::Mmio::new(
            hal::VirtAddr::new(va),
            slot.regs_len.load(Ordering::Acquire),
        )
    };
    // With MSI nothing is deasserted, but the status must still be acknowledged
    // (hw-facts §5.4).
    let status = hw::ack_irq(&regs);
    LAST_STATUS.fetch_or(status as u64, Ordering::SeqCst);
    if status & hw::regs::IRQ_DMA_DONE != 0 {
        slot.dma_done.store(true, Ordering::Release);
        let arg = slot.engine.load(Ordering::Acquire);
        if arg != usize::MAX {
            if let Some(done) = DMA_DONE.get() {
                done(arg);
            }
        }
    }
    IRQS.fetch_add(1, Ordering::SeqCst);
}

pub struct EduDriver;

static IDS: [PciDeviceId; 1] = [PciDeviceId::new(VENDOR, DEVICE)];

impl PciDriver for EduDriver {
    fn name(&self) -> &'static str {
        "edu"
    }

    fn id_table(&self) -> &[PciDeviceId] {
        &IDS
    }

    fn probe(&self, ctx: &mut DeviceCtx<'_>) -> Result<(), ProbeError> {
        let Some(slot) = (0..MAX_EDU).find(|&i| SLOTS[i].regs_va.load(Ordering::Acquire) == 0)
        else {
            return Err(ProbeError::MissingResource(
                "a free edu slot (at most 4 devices)",
            ));
        };
        let bar = *ctx
            .device
            .bar(0)
            .ok_or(ProbeError::MissingResource("BAR0"))?;
        // A function bound before keeps its driver object (its dmaengine provider
        // drives it): one owner of BAR0, mapped once.
        let dev =
            match dmaengine::driver_object(ctx.bdf()) {
                Some(d) if d.regs().phys() == bar.address => d,
                _ => {
                    let regs = kmm::ioremap(bar.address, bar.size)
                        .map_err(|_| ProbeError::MissingResource("an uncached mapping of BAR0"))?;
                    Arc::new(hw::Edu::probe(regs).map_err(|_| {
                        ProbeError::Device("BAR0 identification register is not edu's")
                    })?)
                }
            };
        let (va, len) = (dev.regs().virt().as_u64(), dev.regs().size() as usize);
        let version = dev.version();
        let msi_off = ctx
            .device
            .find_capability(pci::caps::id::MSI)
            .ok_or(ProbeError::MissingResource("MSI capability"))?;
        let msi = pci::Msi::read(ctx.config, ctx.bdf(), msi_off as u16).map_err(ProbeError::Msi)?;
        let vector =
            crate::arch::apic::alloc_vector(msi_handler).map_err(ProbeError::MissingResource)?;
        let (address, data) = crate::arch::apic::msi_for(ctx.bdf(), vector);
        let msg = MsiMessage { address, data };
        SLOTS[slot].vector.store(vector, Ordering::SeqCst);
        SLOTS[slot].regs_len.store(len, Ordering::Release);
        SLOTS[slot].regs_va.store(va, Ordering::Release);
        msi.enable(ctx.config, msg, 1).map_err(ProbeError::Msi)?;
        pci::command::set_intx_disabled(ctx.config, ctx.bdf(), true);
        pci::command::enable_memory(ctx.config, ctx.bdf());
        // An MSI is a memory write the device masters (to 0xFEE0_0000), so it
        // needs Bus Master Enable like any DMA (PCI Local Bus spec §6.8).
        ctx.enable_bus_master();
        log::info!(
            "edu {}: version {}.{}, BAR0 {:#x} ({} KiB), MSI vector {vector:#x}",
            ctx.bdf(),
            version.major,
            version.minor,
            bar.address,
            bar.size / 1024
        );
        let name = alloc::format!("{} edu", ctx.bdf());
        // edu's engine ANDs addresses with its dma_mask property, (1 << 28) - 1
        // unless QEMU was told otherwise (hw-facts §5.3); `edu.dma_bits=N` says
        // it was (the `attack` profile starts edu with dma_mask=0xffffffff).
        let bits = crate::cmdline::boot_cmdline()
            .get("edu.dma_bits")
            .and_then(|b| b.parse::<u32>().ok())
            .filter(|b| (hw::DMA_BITS..=64).contains(b))
            .unwrap_or(hw::DMA_BITS);
        // Set once, on the PCI function; its DMA device gets these parameters.
        ctx.device
            .dma
            .set_mask_and_coherent(bits)
            .map_err(ProbeError::DmaMask)?;
        let dma_dev =
            crate::dma::pci_dma_device(&name, ctx.bdf(), ctx.device.parent, ctx.device.dma)
                .map_err(|_| ProbeError::MissingResource("edu's DMA mask"))?;
        EDU.lock().push(Edu {
            dev: dev.clone(),
            vector,
            bdf: ctx.bdf(),
            dma: dma_dev.clone(),
            slot,
        });
        dmaengine::bound(slot, ctx.bdf(), dev, dma_dev);
        Ok(())
    }

    fn remove(&self, ctx: &mut DeviceCtx<'_>) {
        let bdf = ctx.bdf();
        let taken = {
            let mut list = EDU.lock();
            list.iter()
                .position(|e| e.bdf == bdf)
                .map(|i| list.remove(i))
        };
        if let Some(edu) = taken {
            SLOTS[edu.slot].regs_va.store(0, Ordering::Release);
            // dma-debug: mappings the driver forgot are reported by name.
            let leaked = edu.dma.check_leaks();
            if leaked > 0 {
                log::error!(
                    "edu {}: {leaked} DMA mapping(s) still live at remove",
                    edu.bdf
                );
            }
        }
        if let Some(off) = ctx.device.find_capability(pci::caps::id::MSI) {
            if let Ok(msi) = pci::Msi::read(ctx.config, ctx.bdf(), off as u16) {
                msi.disable(ctx.config);
            }
        }
    }
}

/// Adds the edu driver to the PCI registry.
pub fn register(reg: &mut pci::DriverRegistry, cfg: &dyn pci::ConfigAccess) {
    reg.register_driver(cfg, alloc::boxed::Box::new(EduDriver));
}

/// What the MSI handler calls when a DMA completes (the dmaengine provider's
/// completion path), with the argument set per device.
static DMA_DONE: spin::Once<fn(usize)> = spin::Once::new();

/// Sets what runs (in interrupt context) when device `slot`'s DMA completes:
/// `callback(arg)`. The callback is one for all devices (the first set wins).
pub fn set_dma_done_callback(slot: usize, callback: fn(usize), arg: usize) {
    DMA_DONE.call_once(|| callback);
    if let Some(s) = SLOTS.get(slot) {
        s.engine.store(arg, Ordering::Release);
    }
}

/// Runs `f` with the first bound edu device, if any.
pub fn with_edu<R>(f: impl FnOnce(&Edu) -> R) -> Option<R> {
    with_edu_at(0, f)
}

/// Runs `f` with the `i`-th bound edu device (in probe order).
pub fn with_edu_at<R>(i: usize, f: impl FnOnce(&Edu) -> R) -> Option<R> {
    EDU.lock().get(i).map(f)
}

/// Why `edu info` printed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotBound;

impl core::fmt::Display for NotBound {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("no edu device bound (the default profiles have one: -device edu)")
    }
}

/// What `edu info` shows: identification, a liveness round trip, interrupts.
pub fn info(out: &mut dyn core::fmt::Write) -> Result<(), NotBound> {
    with_edu(|e| {
        let v = e.dev.version();
        let regs = e.dev.regs();
        let _ = writeln!(
            out,
            "edu {} (QEMU educational device): version {}.{}, BAR0 at {:#x}, {} KiB",
            e.bdf,
            v.major,
            v.minor,
            regs.phys(),
            regs.size() / 1024
        );
        // Liveness: the register returns the bitwise NOT of what was written.
        let _ = match e.dev.check_alive(0x1234_5678) {
            Ok(live) => writeln!(out, "liveness: wrote 0x12345678, read {live:#010x} (alive)"),
            Err(err) => writeln!(out, "liveness: {err}: device not responding"),
        };
        let _ = writeln!(
            out,
            "interrupts: MSI vector {:#04x}, {} received, status bits seen {:#x}",
            e.vector,
            irq_count(),
            last_status()
        );
        let _ = writeln!(
            out,
            "DMA mask: {} bits (the device ANDs addresses with {:#x})",
            hw::DMA_BITS,
            hw::DMA_MASK
        );
    })
    .ok_or(NotBound)
}

/// Whether the edu driver holds the device at `bdf`.
pub fn bound(bdf: pci::Bdf) -> bool {
    EDU.lock().iter().any(|e| e.bdf == bdf)
}
