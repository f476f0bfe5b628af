//! QEMU's `edu` teaching device (1234:11e8, hw-facts §5): BAR0 registers, an
//! MSI counted by its handler.

pub mod dmaengine;

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use pci::{DeviceCtx, MsiMessage, PciDeviceId, PciDriver, ProbeError};

use crate::arch::idt::TrapFrame;
use crate::mm::{self as kmm, IoMem};
use crate::sync::IrqSpinLock;

pub const VENDOR: u16 = 0x1234;
pub const DEVICE: u16 = 0x11e8;

// BAR0 registers (hw-facts §5.2); offsets below 0x80 take 4-byte accesses only.
pub const REG_IDENT: usize = 0x00;
pub const REG_LIVENESS: usize = 0x04;
pub const REG_IRQ_STATUS: usize = 0x24;
pub const REG_IRQ_RAISE: usize = 0x60;
pub const REG_IRQ_ACK: usize = 0x64;
pub const REG_DMA_SRC: usize = 0x80;
pub const REG_DMA_DST: usize = 0x88;
pub const REG_DMA_COUNT: usize = 0x90;
pub const REG_DMA_CMD: usize = 0x98;
const DMA_RUN: u64 = 1 << 0;
const DMA_TO_RAM: u64 = 1 << 1;
const DMA_IRQ: u64 = 1 << 2;
/// The device-side buffer window (hw-facts §5.3).
pub const EDU_BUFFER: u64 = 0x40000;
/// QEMU 7.2 aborts on a full 4096-byte transfer (an off-by-one in its range
/// check), so 4095 bytes is the largest safe transfer.
pub const MAX_DMA: usize = 4095;
/// Interrupt status bit edu raises when a DMA with DMA_IRQ completes.
const IRQ_DMA_DONE: u32 = 0x100;

/// The probed device: its registers stay mapped while bound.
pub struct Edu {
    pub regs: IoMem,
    pub vector: u8,
    pub bdf: pci::Bdf,
    /// The device as the DMA API knows it (28-bit mask, its backend).
    pub dma: alloc::sync::Arc<dma::DmaDevice>,
    /// Index into the interrupt slots.
    pub slot: usize,
}

/// Which way a transfer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EduDir {
    /// RAM → the device's buffer.
    ToDevice,
    /// The device's buffer → RAM.
    FromDevice,
}

/// Per-device interrupt state, indexed by `Edu::slot`: the MSI handler finds
/// its device by vector (it cannot take the driver's lock).
struct Slot {
    vector: AtomicU8,
    regs_va: AtomicU64,
    dma_done: core::sync::atomic::AtomicBool,
    /// The argument of the DMA-done callback for this device (`usize::MAX`: none).
    engine: core::sync::atomic::AtomicUsize,
}

const MAX_EDU: usize = 4;
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot {
    vector: AtomicU8::new(0),
    regs_va: AtomicU64::new(0),
    dma_done: core::sync::atomic::AtomicBool::new(false),
    engine: core::sync::atomic::AtomicUsize::new(usize::MAX),
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

impl Edu {
    /// Runs one transfer between edu's buffer and bus address `bus` (which
    /// must come from the DMA API) and waits for it: by MSI, with a polling
    /// fallback on the RUN bit, bounded to 2 s.
    pub fn transfer(&self, dir: EduDir, bus: hal::DmaAddr, len: usize) -> Result<(), &'static str> {
        if len == 0 || len > MAX_DMA {
            return Err("edu transfers are 1..=4095 bytes (QEMU 7.2 aborts on 4096)");
        }
        if self.regs.read64(REG_DMA_CMD) & DMA_RUN != 0 {
            return Err("a transfer is already running");
        }
        let (src, dst, cmd) = match dir {
            EduDir::ToDevice => (bus.as_u64(), EDU_BUFFER, DMA_RUN | DMA_IRQ),
            EduDir::FromDevice => (EDU_BUFFER, bus.as_u64(), DMA_RUN | DMA_TO_RAM | DMA_IRQ),
        };
        let done = &SLOTS[self.slot].dma_done;
        done.store(false, Ordering::Release);
        // 8-byte writes: a 4-byte write zero-extends the 64-bit field.
        self.regs.write64(REG_DMA_SRC, src);
        self.regs.write64(REG_DMA_DST, dst);
        self.regs.write64(REG_DMA_COUNT, len as u64);
        hal::wmb();
        self.regs.write64(REG_DMA_CMD, cmd);
        for _ in 0..400 {
            crate::arch::apic::sleep_ms(5);
            if done.swap(false, Ordering::AcqRel) {
                DMA_BY_MSI.fetch_add(1, Ordering::Relaxed);
                hal::rmb();
                return Ok(());
            }
            if self.regs.read64(REG_DMA_CMD) & DMA_RUN == 0 {
                // Done, but the MSI did not arrive (yet): polling fallback.
                DMA_BY_POLL.fetch_add(1, Ordering::Relaxed);
                hal::rmb();
                return Ok(());
            }
        }
        Err("DMA did not complete within 2 s")
    }
}

/// The bound device (one edu is enough for the labs; a second one stays unbound).
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
    // SAFETY: REGS_VA is non-zero only while the driver is bound and BAR0 is
    // mapped uncached (remove() clears it before the mapping goes away);
    // 0x24 and 0x64 are 4-byte registers.
    let status = unsafe { core::ptr::read_volatile((va + REG_IRQ_STATUS as u64) as *const u32) };
    // SAFETY: as above. With MSI nothing is deasserted, but the status must
    // still be acknowledged (hw-facts §5.4).
    unsafe { core::ptr::write_volatile((va + REG_IRQ_ACK as u64) as *mut u32, status) };
    LAST_STATUS.fetch_or(status as u64, Ordering::SeqCst);
    if status & IRQ_DMA_DONE != 0 {
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
        let regs = kmm::ioremap(bar.address, bar.size)
            .map_err(|_| ProbeError::MissingResource("an uncached mapping of BAR0"))?;
        let ident = regs.read32(REG_IDENT);
        if ident & 0xFFFF != 0x00ED {
            return Err(ProbeError::Device(
                "BAR0 identification register is not edu's",
            ));
        }
        let msi_off = ctx
            .device
            .find_capability(pci::caps::id::MSI)
            .ok_or(ProbeError::MissingResource("MSI capability"))?;
        let msi = pci::Msi::read(ctx.config, ctx.bdf(), msi_off as u16).map_err(ProbeError::Msi)?;
        let vector =
            crate::arch::apic::alloc_vector(msi_handler).map_err(ProbeError::MissingResource)?;
        let msg =
            MsiMessage::x86(crate::arch::apic::lapic_id(), vector).map_err(ProbeError::Msi)?;
        SLOTS[slot].vector.store(vector, Ordering::SeqCst);
        SLOTS[slot]
            .regs_va
            .store(regs.virt().as_u64(), Ordering::Release);
        msi.enable(ctx.config, msg, 1).map_err(ProbeError::Msi)?;
        pci::command::set_intx_disabled(ctx.config, ctx.bdf(), true);
        pci::command::enable_memory(ctx.config, ctx.bdf());
        // An MSI is a memory write the device masters (to 0xFEE0_0000), so it
        // needs Bus Master Enable like any DMA (PCI Local Bus spec §6.8).
        ctx.enable_bus_master();
        log::info!(
            "edu {}: version {}.{}, BAR0 {:#x} ({} KiB), MSI vector {vector:#x}",
            ctx.bdf(),
            ident >> 24,
            (ident >> 16) & 0xFF,
            bar.address,
            bar.size / 1024
        );
        let name = alloc::format!("{} edu", ctx.bdf());
        let dev = crate::dma::pci_dma_device(&name, ctx.bdf(), ctx.device.parent);
        // edu's engine ANDs addresses with its dma_mask property, (1 << 28) - 1
        // unless QEMU was told otherwise (hw-facts §5.3); `edu.dma_bits=N` says
        // it was (the `attack` profile starts edu with dma_mask=0xffffffff).
        let bits = crate::cmdline::boot_cmdline()
            .get("edu.dma_bits")
            .and_then(|b| b.parse::<u32>().ok())
            .filter(|b| (28..=64).contains(b))
            .unwrap_or(28);
        dev.set_mask_and_coherent(dma::dma_bit_mask(bits))
            .map_err(|_| ProbeError::MissingResource("edu's DMA mask"))?;
        ctx.device
            .dma
            .set_mask_and_coherent(bits)
            .map_err(ProbeError::DmaMask)?;
        let (phys, size) = (regs.phys(), regs.size());
        EDU.lock().push(Edu {
            regs,
            vector,
            bdf: ctx.bdf(),
            dma: dev.clone(),
            slot,
        });
        crate::drivers::edu::dmaengine::bound(slot, ctx.bdf(), phys, size, dev);
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

/// Runs `f` with the bound edu device, if any.
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

pub fn with_edu<R>(f: impl FnOnce(&Edu) -> R) -> Option<R> {
    with_edu_at(0, f)
}

/// Runs `f` with the `i`-th bound edu device (in probe order).
pub fn with_edu_at<R>(i: usize, f: impl FnOnce(&Edu) -> R) -> Option<R> {
    EDU.lock().get(i).map(f)
}

/// What `edu info` shows: identification, a liveness round trip, interrupts.
pub fn info(out: &mut dyn core::fmt::Write) -> Result<(), &'static str> {
    with_edu(|e| {
        let ident = e.regs.read32(REG_IDENT);
        // Liveness: the register returns the bitwise NOT of what was written.
        e.regs.write32(REG_LIVENESS, 0x1234_5678);
        let live = e.regs.read32(REG_LIVENESS);
        let _ = writeln!(
            out,
            "edu {} (QEMU educational device): version {}.{}, BAR0 at {:#x}, {} KiB",
            e.bdf,
            ident >> 24,
            (ident >> 16) & 0xFF,
            e.regs.phys(),
            e.regs.size() / 1024
        );
        let _ = writeln!(
            out,
            "liveness: wrote 0x12345678, read {live:#010x} ({})",
            if live == !0x1234_5678u32 {
                "alive"
            } else {
                "NOT the inverse: device not responding"
            }
        );
        let _ = writeln!(
            out,
            "interrupts: MSI vector {:#04x}, {} received, status bits seen {:#x}",
            e.vector,
            irq_count(),
            last_status()
        );
        let _ = writeln!(
            out,
            "DMA mask: 28 bits (the device ANDs addresses with 0x0fffffff)"
        );
    })
    .ok_or("no edu device bound (the default profiles have one: -device edu)")
}

/// Whether the edu driver holds the device at `bdf`.
pub fn bound(bdf: pci::Bdf) -> bool {
    EDU.lock().iter().any(|e| e.bdf == bdf)
}
