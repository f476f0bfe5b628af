//! Intel VT-d in the kernel: every DRHD unit of the DMAR brought up with
//! crates/iommu-vtd, devices routed to units by the DMAR's device scopes,
//! per-device translated domains behind the DMA API, pass-through for
//! everything we have no driver for, fault events decoded and logged.
//!
//! Boot options: `iommu=on|off|pt|force-off` (the kernel's default is off, as
//! on a real machine whose firmware we have not vetted; the runner's default
//! profile passes `iommu=on`, and `noiommu`/`bigmem` show untranslated DMA;
//! a DMAR with DMA_CTRL_PLATFORM_OPT_IN forces translation over `off` and the
//! default, and only `force-off` keeps it off), `iommu.strict=1|0` (default 1:
//! every unmap invalidates the IOTLB before the IOVA can be reused; 0: a flush
//! queue batches them), `iommu.qi=0` (register-based invalidation even when
//! the unit offers queued), `iommu.igfx=off` (leave the integrated graphics'
//! own unit off; the graphics device then DMAs untranslated), and `intremap=on|off`
//! (default on: interrupt remapping on every unit once VT-d is up, with
//! `iommu=on` or `pt`), and the debug option `iommu.fail_enable=1` (pretend turning translation on failed, to show
//! the fallback to direct/swiotlb DMA).
//!
//! Order (Linux's, so no driver ever DMAs through an IOVA that is not
//! translated): `init` reads the options; after PCI enumeration and before
//! any driver binds, `set_topology` decides each DRHD's fate (graphics,
//! empty, failed), turns off what firmware left on, brings the units up,
//! keeps the PCI windows out of every IOVA space, puts every device in the
//! pass-through domain and turns translation on. A driver then gets a
//! translated domain only from a unit whose translation is on.
//!
//! Where things are (Linux's files in brackets):
//! - `mod.rs`: the state every part shares (units, DRHDs, who is attached).
//! - `iommu`: boot options, the bring-up order, default domains attached and
//!   translation turned on, a driver's own translated domain
//!   (drivers/iommu/intel/iommu.c).
//! - `dmar`: DRHD units found and brought up, device scopes resolved, which
//!   unit covers a device (drivers/iommu/dmar.c).
//! - `default_domain`: where a function without a driver goes: blocking,
//!   RMRR-only, ISA or pass-through (the default-domain policy of iommu.c).
//! - `dma_iommu`: the DMA API's `IommuDomain` on a VT-d domain, strict or
//!   lazy, the flush queue's timer hook, the PCI windows kept out of IOVA
//!   space (drivers/iommu/dma-iommu.c).
//! - `namespace`: ACPI namespace devices (DMAR type-5 scopes) placed like
//!   functions without a driver (dmar.c's ANDD half).
//! - `irq_remapping`: interrupt remapping turned on, an IRTE per MSI and
//!   IO-APIC line (drivers/iommu/intel/irq_remapping.c).
//! - `fault`: the fault-event interrupt and the fault log (dmar.c's fault half).
//! - `debugfs`: what the `iommu` shell views read: a device's domain, a
//!   table walk (drivers/iommu/intel/debugfs.c).
//! - `bench`: domains and attachments for `dmabench` and `blkbench`.

mod bench;
mod debugfs;
mod default_domain;
mod dma_iommu;
mod dmar;
mod fault;
mod iommu;
pub mod irq_remapping;
pub mod namespace;

pub use bench::{
    bench_attach, bench_domain, bench_domain_for, bench_domain_id, why_no_translation, BenchTarget,
};
pub use debugfs::{attachment_of, domain_of, translate, translate_write};
pub use default_domain::Unclaimed;
pub use dma_iommu::{flush_lazy_queues, iommu_error_of};
pub use dmar::dma_aliases;
pub use fault::{collect_faults, fault_count, fault_entries, fault_history, fault_vector};
pub use iommu::{attach_dma_domain, init};

use alloc::sync::Arc;
use alloc::vec::Vec;

use acpi_tables::dmar::DeviceScope;
use core::sync::atomic::AtomicBool;
use hal::{DirectMap, PhysAddr};
use iommu_vtd::policy::UnitRole;
use iommu_vtd::{DomainId, FrameAlloc, RemappingUnit};
use mm::buddy::ZoneLimit;
use spin::{Mutex, Once};

use crate::mm::{self as kmm, IoMem};
use crate::sync::IrqSpinLock;

/// Page-table and queue pages from the buddy allocator.
pub struct KFrames;

impl FrameAlloc for KFrames {
    fn alloc_page(&mut self) -> Option<PhysAddr> {
        kmm::alloc_frames(0, ZoneLimit::Any).ok()
    }
    fn free_page(&mut self, pa: PhysAddr) {
        let _ = kmm::free_frames(pa, 0);
    }
}

pub type Unit = RemappingUnit<IoMem, DirectMap, KFrames>;

pub use iommu_vtd::policy::Mode;
/// One remapping unit that came up.
pub struct UnitEntry {
    pub base: u64,
    pub segment: u16,
    pub unit: Arc<IrqSpinLock<Unit>>,
    /// The pass-through (or identity) domain for devices without a driver
    /// (`iommu=pt`).
    pub passthrough: Mutex<Option<DomainId>>,
    /// With translation on: the unit's blocking domain, a translated domain in
    /// which nothing is ever mapped, shared by the devices without a driver
    /// (every DMA they try faults).
    pub blocked: Mutex<Option<DomainId>>,
    /// Translation is on (set once `set_topology` turned it on). A unit
    /// whose enabling failed gives drivers no domain: their DMA goes direct
    /// or through swiotlb, never with IOVAs the unit does not translate.
    pub enabled: AtomicBool,
}

/// Why a DRHD has no working unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unused {
    /// Bring-up failed (the reason is in the log).
    Failed,
    /// `iommu=off` (or `force-off`): left off, firmware state turned off.
    Off,
    /// The integrated graphics' unit, left off by `iommu.igfx=off`.
    GraphicsOff,
    /// Not INCLUDE_PCI_ALL and none of the devices it names exists.
    NoDevices,
}

impl Unused {
    pub fn reason(self) -> &'static str {
        match self {
            Unused::Failed => "bring-up failed",
            Unused::Off => "iommu=off",
            Unused::GraphicsOff => "graphics unit, iommu.igfx=off",
            Unused::NoDevices => "none of the devices it names exists",
        }
    }
}

/// One DRHD of the DMAR, whether or not its unit came up: a failed unit
/// still owns the devices its scopes name (they get no IOMMU, never the
/// catch-all unit).
pub struct DrhdEntry {
    pub base: u64,
    pub segment: u16,
    pub include_all: bool,
    /// The DRHD's device scopes, resolved against the PCI topology on use.
    pub scopes: Vec<DeviceScope>,
    /// Index into `Iommu::units`; `None` when the unit is not used.
    pub unit: Option<usize>,
    /// Why not, when `unit` is `None`.
    pub unused: Unused,
    /// What the DMAR and the devices found make of it.
    pub role: UnitRole,
}

/// Why a request about one device (a table walk, a bench domain, a move
/// between domains) could not be served. Each cause stays its own variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No DMAR table (the IOMMU layer was never set up): no VT-d here.
    NoIommu,
    /// VT-d left off this boot (`iommu=off` or `force-off`).
    Off,
    /// No working remapping unit covers the device (none names it, or its
    /// unit failed to come up or is not used).
    NoUnit(pci::Bdf),
    /// The table walk stopped where the hardware would fault, for this reason.
    Walk(iommu_vtd::FaultReason),
    /// The remapping unit refused (creating a domain, attaching, detaching).
    Vtd(iommu_vtd::Error),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::NoIommu => f.write_str("no IOMMU (no DMAR table: no VT-d in this machine)"),
            Error::Off => f.write_str("VT-d left off this boot (iommu=off)"),
            Error::NoUnit(bdf) => write!(f, "no working remapping unit covers {bdf}"),
            Error::Walk(reason) => write!(f, "{reason}"),
            Error::Vtd(e) => write!(f, "{e}"),
        }
    }
}

impl From<iommu_vtd::Error> for Error {
    fn from(e: iommu_vtd::Error) -> Self {
        Error::Vtd(e)
    }
}

/// The IOMMU layer's state once the units are set up.
pub struct Iommu {
    pub mode: Mode,
    pub strict: bool,
    pub units: Vec<UnitEntry>,
    pub drhds: Vec<DrhdEntry>,
    /// Devices with their own domain: (bdf, unit index, domain).
    pub attached: Mutex<Vec<(pci::Bdf, usize, DomainId)>>,
    /// Functions no driver has claimed (yet), and where translation put them.
    pub unclaimed: Mutex<Vec<(pci::Bdf, usize, DomainId, Unclaimed)>>,
    /// The DMAR's DMA_CTRL_PLATFORM_OPT_IN turned translation on.
    pub forced_by_platform: bool,
    /// IOVA ranges kept out of every domain (PCI windows), merged.
    pub iova_windows: Vec<(u64, u64)>,
    /// The enumerated PCI topology (parents, bridge kinds, bus numbers), handed
    /// over by the PCI layer before drivers bind.
    pub topology: pci::Topology,
    /// The vector of the units' fault-event MSI (0: none).
    pub fault_vector: u8,
}

/// The boot options, read by `init`, used once the PCI topology is known.
struct Setup {
    mode: Mode,
    strict: bool,
    forced_by_platform: bool,
    inval: Option<iommu_vtd::InvalMode>,
    igfx_off: bool,
    fail_enable: bool,
    /// Flush-queue deadline in timer ticks (`iommu.fq_delay_ms=`).
    fq_delay_ticks: u64,
    /// `intremap=on|off` (default on): interrupt remapping with the units.
    intremap: bool,
}

/// The boot options `init` read, kept for when the PCI topology arrives.
static SETUP: Once<Setup> = Once::new();

/// The units and who is attached where: set once, when the PCI topology
/// arrives (`set_topology`); `None` without a usable DMAR.
static IOMMU: Once<Iommu> = Once::new();

/// The IOMMU state, once the units are set up.
pub fn get() -> Option<&'static Iommu> {
    IOMMU.get()
}

/// Locks a unit (interrupts stay off while held: the fault handler takes the
/// same lock).
pub fn with_unit<R>(u: &IrqSpinLock<Unit>, f: impl FnOnce(&mut Unit) -> R) -> R {
    f(&mut u.lock())
}

fn relax() {
    core::hint::spin_loop();
}
