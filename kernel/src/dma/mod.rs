//! The kernel side of the DMA mapping API (crates/dma): the platform (zoned
//! buddy frames, the direct map), the swiotlb bounce pool in low memory, the
//! dma-debug sink, and a second platform that places buffers above 256 MiB
//! so a lab can force bouncing for edu's 28-bit mask.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;

use dma::{DebugEvent, DebugSink, DmaPlatform, DmaZone, Swiotlb};
use hal::{PhysAddr, PhysMemory};
use mm::buddy::ZoneLimit;
use spin::{Mutex, Once};

use crate::mm::{self as kmm, direct, memmap};

fn zone_limit(limit: u64) -> ZoneLimit {
    match DmaZone::for_limit(limit) {
        DmaZone::Dma => ZoneLimit::Dma,
        DmaZone::Dma32 => ZoneLimit::Dma32,
        DmaZone::Any => ZoneLimit::Any,
    }
}

pub(crate) fn max_ram() -> u64 {
    memmap::regions()
        .iter()
        .filter(|r| r.kind == memmap::Kind::Usable)
        .map(|r| r.end)
        .max()
        .unwrap_or(0)
        .saturating_sub(1)
}

/// Frames from the zoned buddy allocator, reached through the direct map.
pub struct KernelDma;

// SAFETY: buddy blocks are exclusively the caller's until freed, and the
// direct map maps every block linearly (`phys_to_virt` covers all RAM).
unsafe impl DmaPlatform for KernelDma {
    fn mem(&self) -> &dyn PhysMemory {
        direct::direct_ref()
    }
    fn alloc_pages(&self, order: u32, limit: u64) -> Option<PhysAddr> {
        kmm::alloc_frames(u8::try_from(order).ok()?, zone_limit(limit)).ok()
    }
    fn free_pages(&self, pa: PhysAddr, order: u32) {
        if let Err(e) = kmm::free_frames(pa, order as u8) {
            log::error!("dma: freeing {:#x} order {order}: {e}", pa.as_u64());
        }
    }
    fn max_phys_addr(&self) -> u64 {
        max_ram()
    }
}

pub static PLATFORM: KernelDma = KernelDma;

/// Pages from one 4 MiB block above 256 MiB: buffers a 28-bit device cannot
/// reach directly. (The buddy allocator hands out the lowest block first, so
/// ordinary allocations on a small machine would always fit edu's mask.)
pub struct HighDma {
    inner: Mutex<Option<(PhysAddr, u64 /* bitmap of 64 KiB chunks */)>>,
}

const HIGH_FLOOR: u64 = 256 << 20;
const CHUNK: u64 = 64 << 10;

impl HighDma {
    fn block(&self) -> Option<PhysAddr> {
        let mut g = self.inner.lock();
        if let Some((pa, _)) = *g {
            return Some(pa);
        }
        // Take 4 MiB blocks until one lies above the floor; give the rest back.
        let mut low = alloc::vec::Vec::new();
        let mut found = None;
        for _ in 0..1024 {
            match kmm::alloc_frames(10, ZoneLimit::Any) {
                Ok(pa) if pa.as_u64() >= HIGH_FLOOR => {
                    found = Some(pa);
                    break;
                }
                Ok(pa) => low.push(pa),
                Err(_) => break,
            }
        }
        for pa in low {
            let _ = kmm::free_frames(pa, 10);
        }
        let pa = found?;
        *g = Some((pa, 0));
        Some(pa)
    }
}

// SAFETY: chunks of the block are handed out at most once until freed (the
// bitmap), and the direct map covers the block.
unsafe impl DmaPlatform for HighDma {
    fn mem(&self) -> &dyn PhysMemory {
        direct::direct_ref()
    }
    fn alloc_pages(&self, order: u32, _limit: u64) -> Option<PhysAddr> {
        let base = self.block()?;
        let chunks = ((4096u64 << order).div_ceil(CHUNK)) as u32;
        if chunks > 64 {
            return None;
        }
        let mut g = self.inner.lock();
        let (_, bits) = g.as_mut()?;
        let want = if chunks == 64 {
            u64::MAX
        } else {
            (1u64 << chunks) - 1
        };
        let step = chunks.next_power_of_two();
        let slot = (0..64)
            .step_by(step as usize)
            .find(|&i| i + chunks <= 64 && *bits & (want << i) == 0)?;
        *bits |= want << slot;
        Some(base + slot as u64 * CHUNK)
    }
    fn free_pages(&self, pa: PhysAddr, order: u32) {
        let mut g = self.inner.lock();
        if let Some((base, bits)) = g.as_mut() {
            let slot = (pa.as_u64() - base.as_u64()) / CHUNK;
            let chunks = ((4096u64 << order).div_ceil(CHUNK)) as u32;
            let want = if chunks == 64 {
                u64::MAX
            } else {
                (1u64 << chunks) - 1
            };
            *bits &= !(want << slot);
        }
    }
    fn max_phys_addr(&self) -> u64 {
        max_ram()
    }
}

pub static HIGH: HighDma = HighDma {
    inner: Mutex::new(None),
};

/// Size of the bounce pool: 4 MiB, one top-order buddy block (Linux's default
/// is 64 MiB; edu moves at most 4 KiB at a time).
const SWIOTLB_SIZE: usize = 4 << 20;

static SWIOTLB: Once<Arc<Swiotlb>> = Once::new();

pub fn swiotlb() -> Option<Arc<Swiotlb>> {
    SWIOTLB.get().cloned()
}

/// dma-debug reports: logged as they happen and the last few kept for `dma`.
struct LogSink {
    recent: Mutex<VecDeque<String>>,
}

impl DebugSink for LogSink {
    fn report(&self, event: &DebugEvent) {
        log::error!("{event}");
        let mut r = self.recent.lock();
        if r.len() == 8 {
            r.pop_front();
        }
        r.push_back(alloc::format!("{event}"));
    }
}

static SINK: LogSink = LogSink {
    recent: Mutex::new(VecDeque::new()),
};

pub fn recent_reports() -> alloc::vec::Vec<String> {
    SINK.recent.lock().iter().cloned().collect()
}

/// Why [`init`] could not set up the bounce pool.
#[derive(Debug)]
pub enum InitError {
    /// No frames for the pool in ZONE_DMA32 or ZONE_DMA.
    NoMemory(kmm::MmError),
    /// The pool refused the range.
    Swiotlb(dma::SwiotlbInitError),
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InitError::NoMemory(e) => write!(f, "no memory for the bounce pool: {e}"),
            InitError::Swiotlb(e) => write!(f, "swiotlb: {e}"),
        }
    }
}

/// Sets up the bounce pool as low as the allocator gives (the DMA32 zone's
/// lowest block, just above 16 MiB) and routes dma-debug to the log.
pub fn init() -> Result<(), InitError> {
    dma::debug::set_global_sink(&SINK);
    let pa = kmm::alloc_frames(10, ZoneLimit::Dma32)
        .or_else(|_| kmm::alloc_frames(10, ZoneLimit::Dma))
        .map_err(InitError::NoMemory)?;
    if pa.as_u64() + SWIOTLB_SIZE as u64 > HIGH_FLOOR {
        log::warn!(
            "dma: bounce pool at {:#x} is above 256 MiB: 28-bit devices cannot use it",
            pa.as_u64()
        );
    }
    // SAFETY: `pa` is 2^10 frames just taken from the frame allocator for the pool
    // alone, and never freed: the pool lives as long as the kernel.
    let pool = unsafe { Swiotlb::new(&PLATFORM, pa, SWIOTLB_SIZE) }.map_err(InitError::Swiotlb)?;
    SWIOTLB.call_once(|| Arc::new(pool));
    Ok(())
}

/// A PCI function's DMA device named `name`, on [`backend_for`]'s backend, with
/// the function's DMA parameters as its driver's probe set them (`pci::PciDevice::dma`:
/// one copy, set once, handed over here), marked untrusted (sub-page buffers
/// bounced under the IOMMU) when the PCI layer says so (`pci.untrusted=`, or
/// below a root port with ACPI `ExternalFacingPort`). Fails
/// when the backend cannot serve the masks.
pub fn pci_dma_device(
    name: &str,
    bdf: pci::Bdf,
    parent: Option<pci::Bdf>,
    params: dma::DmaParams,
) -> Result<Arc<dma::DmaDevice>, dma::DmaError> {
    let backend = backend_for(bdf, parent);
    let translated = matches!(backend, dma::DmaBackend::Iommu(_));
    let dev = dma::DmaDevice::with_params(name, &PLATFORM, backend, params);
    // The PCI layer checked only the masks' width; the DMA layer's setters check
    // that this backend can serve them (same values, no second source).
    dev.set_mask(params.dma_mask)?;
    dev.set_coherent_mask(params.coherent_dma_mask)?;
    if crate::pci::is_untrusted(bdf) {
        match (translated, swiotlb()) {
            (true, Some(pool)) => {
                dev.set_untrusted(pool);
                log::info!(
                    "dma: {name}: untrusted: strict invalidation, sub-page buffers bounced into zeroed pages"
                );
            }
            (false, _) => log::warn!(
                "dma: {name}: untrusted, but no IOMMU translates it: nothing confines its DMA"
            ),
            (true, None) => log::warn!(
                "dma: {name}: untrusted, but there is no bounce pool: its sub-page buffers share their pages"
            ),
        }
    }
    Ok(dev)
}

/// The DMA backend for a PCI function: its own IOMMU domain when VT-d
/// translates it, else the bounce pool (direct when the buffer fits the mask).
/// Drivers call this and never care which one they got.
pub fn backend_for(bdf: pci::Bdf, parent: Option<pci::Bdf>) -> dma::DmaBackend {
    if let Some(domain) = crate::iommu::attach_dma_domain(bdf, parent) {
        return dma::DmaBackend::Iommu(domain);
    }
    match swiotlb() {
        Some(pool) => dma::DmaBackend::Swiotlb(pool),
        None => dma::DmaBackend::Direct,
    }
}
