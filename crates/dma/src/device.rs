//! A DMA-capable device: its parameters and its backend.

use crate::debug::{DebugKind, DebugSink, DeviceDebug, MappingInfo};
use crate::iommu::SharedDomain;
use crate::maptable::MapTable;
use crate::platform::DmaPlatform;
use crate::swiotlb::Swiotlb;
use crate::{dma_bit_mask, DmaError, ZONE_DMA_LIMIT};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

/// Per-device DMA parameters: one type for the PCI and DMA layers (it lives in `hal`).
pub use hal::DmaParams;

/// How a device's streaming mappings reach memory.
#[derive(Clone)]
pub enum DmaBackend {
    /// Bus address = physical address; a buffer above the mask is an error.
    Direct,
    /// Direct when the buffer fits the mask, else bounced through this pool.
    Swiotlb(Arc<Swiotlb>),
    /// Every mapping gets an IOVA from this domain (VT-d).
    Iommu(SharedDomain),
}

impl fmt::Debug for DmaBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaBackend::Direct => f.write_str("Direct"),
            DmaBackend::Swiotlb(s) => write!(f, "Swiotlb({s:?})"),
            DmaBackend::Iommu(_) => f.write_str("Iommu"),
        }
    }
}

/// A DMA-capable device as the DMA layer knows it. Created once per device (per PCI
/// function the kernel binds), shared as `Arc` by every handle that maps through it.
pub struct DmaDevice {
    pub(crate) name: Arc<str>,
    pub(crate) platform: &'static dyn DmaPlatform,
    params: spin::Mutex<DmaParams>,
    backend: spin::RwLock<DmaBackend>,
    /// Set for an untrusted device (Linux `pci_dev->untrusted`): the pool its
    /// sub-page streaming buffers are bounced through under an IOMMU.
    untrusted: spin::RwLock<Option<Arc<Swiotlb>>>,
    /// Live mappings by bus address: what unmap and sync look up.
    pub(crate) maps: spin::Mutex<MapTable>,
    pub(crate) debug: DeviceDebug,
}

impl fmt::Debug for DmaDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaDevice")
            .field("name", &self.name)
            .field("params", &self.params())
            .field("backend", &*self.backend.read())
            .finish()
    }
}

impl DmaDevice {
    /// A device named `name` (e.g. `"0000:00:03.0 edu"`, used in every report) with
    /// Linux's default parameters.
    pub fn new(
        name: &str,
        platform: &'static dyn DmaPlatform,
        backend: DmaBackend,
    ) -> Arc<DmaDevice> {
        Self::with_params(name, platform, backend, DmaParams::default())
    }

    /// As [`new`](Self::new), with parameters already known (e.g. copied from the PCI
    /// layer's `DmaParams`). The masks are taken as given, not checked.
    pub fn with_params(
        name: &str,
        platform: &'static dyn DmaPlatform,
        backend: DmaBackend,
        params: DmaParams,
    ) -> Arc<DmaDevice> {
        Arc::new(DmaDevice {
            name: Arc::from(name),
            platform,
            params: spin::Mutex::new(params),
            backend: spin::RwLock::new(backend),
            untrusted: spin::RwLock::new(None),
            maps: spin::Mutex::new(MapTable::default()),
            debug: DeviceDebug::default(),
        })
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The platform.
    pub fn platform(&self) -> &'static dyn DmaPlatform {
        self.platform
    }

    /// A copy of the current parameters.
    pub fn params(&self) -> DmaParams {
        *self.params.lock()
    }

    /// The current backend.
    pub fn backend(&self) -> DmaBackend {
        self.backend.read().clone()
    }

    /// Changes the backend (the kernel attaches an IOMMU domain after boot). Live
    /// mappings keep the backend they were made with.
    pub fn set_backend(&self, backend: DmaBackend) {
        *self.backend.write() = backend;
    }

    /// Marks the device untrusted (Linux: a device behind an external-facing
    /// port, or named by the user). Under an IOMMU, a streaming buffer that does
    /// not fill whole pages is then bounced through `pool` into page-aligned
    /// slots whose padding is zeroed, so the device never sees the rest of the
    /// pages the buffer shares with other data (Linux 5.4's bounce for untrusted
    /// devices). Coherent memory is whole pages already and is not bounced.
    /// The caller also keeps the device out of pass-through and gives it strict
    /// invalidation: a slot reused while a stale IOTLB entry still points at it
    /// would hand the device someone else's data.
    pub fn set_untrusted(&self, pool: Arc<Swiotlb>) {
        *self.untrusted.write() = Some(pool);
    }

    /// Whether [`set_untrusted`](Self::set_untrusted) was called.
    pub fn is_untrusted(&self) -> bool {
        self.untrusted.read().is_some()
    }

    pub(crate) fn untrusted_pool(&self) -> Option<Arc<Swiotlb>> {
        self.untrusted.read().clone()
    }

    /// Can streaming mappings be served under `mask`? Linux's dma-direct rule (≥ 32 bits,
    /// or covering min(RAM top, ZONE_DMA)), extended: a bounce pool entirely under the
    /// mask also serves it, and an IOMMU domain decides for itself.
    pub fn dma_supported(&self, mask: u64) -> bool {
        if mask == 0 {
            return false;
        }
        match &*self.backend.read() {
            DmaBackend::Iommu(d) => d.lock().supports_mask(mask),
            DmaBackend::Swiotlb(pool) => self.direct_supported(mask) || pool.last() <= mask,
            DmaBackend::Direct => self.direct_supported(mask),
        }
    }

    fn direct_supported(&self, mask: u64) -> bool {
        mask >= dma_bit_mask(32) || mask >= self.platform.max_phys_addr().min(ZONE_DMA_LIMIT)
    }

    fn coherent_supported(&self, mask: u64) -> bool {
        if mask == 0 {
            return false;
        }
        match &*self.backend.read() {
            DmaBackend::Iommu(d) => d.lock().supports_mask(mask),
            // Coherent memory never bounces: the zones must reach under the mask.
            _ => self.direct_supported(mask),
        }
    }

    fn mask_error(&self, mask: u64, coherent: bool) -> DmaError {
        DmaError::MaskUnsupported {
            device: self.name.clone(),
            mask,
            coherent,
        }
    }

    /// `dma_set_mask`: the streaming mask, if the platform can serve it.
    pub fn set_mask(&self, mask: u64) -> Result<(), DmaError> {
        if !self.dma_supported(mask) {
            return Err(self.mask_error(mask, false));
        }
        self.params.lock().dma_mask = mask;
        Ok(())
    }

    /// `dma_set_coherent_mask`: the mask for coherent allocations and pools.
    pub fn set_coherent_mask(&self, mask: u64) -> Result<(), DmaError> {
        if !self.coherent_supported(mask) {
            return Err(self.mask_error(mask, true));
        }
        self.params.lock().coherent_dma_mask = mask;
        Ok(())
    }

    /// `dma_set_mask_and_coherent`: both masks. Unlike Linux (which sets the streaming
    /// mask even when the coherent one then fails) this sets neither unless both can be
    /// served.
    pub fn set_mask_and_coherent(&self, mask: u64) -> Result<(), DmaError> {
        if !self.dma_supported(mask) {
            return Err(self.mask_error(mask, false));
        }
        if !self.coherent_supported(mask) {
            return Err(self.mask_error(mask, true));
        }
        let mut p = self.params.lock();
        p.dma_mask = mask;
        p.coherent_dma_mask = mask;
        Ok(())
    }

    /// `dma_max_mapping_size`: the largest single streaming mapping. Bounced mappings
    /// are limited to 128 slots (256 KiB) when the device may bounce.
    pub fn max_mapping_size(&self) -> usize {
        match &*self.backend.read() {
            DmaBackend::Swiotlb(_) => crate::swiotlb::MAX_MAPPING,
            _ => usize::MAX,
        }
    }

    /// `dma_get_required_mask`: the smallest all-ones mask covering all RAM, so a driver
    /// can tell whether wider addressing would avoid bouncing.
    pub fn required_mask(&self) -> u64 {
        let top = self.platform.max_phys_addr();
        if top == 0 {
            return 0;
        }
        dma_bit_mask(64 - top.leading_zeros())
    }

    /// `dma_set_max_seg_size`.
    pub fn set_max_segment_size(&self, size: usize) {
        self.params.lock().max_segment_size = size.max(1);
    }

    /// `dma_set_seg_boundary` (`mask` is `boundary − 1`, e.g. `0xFFFF` for 64 KiB).
    pub fn set_segment_boundary(&self, mask: u64) {
        self.params.lock().segment_boundary_mask = mask;
    }

    /// `dma_set_min_align_mask`.
    pub fn set_min_align_mask(&self, mask: u64) {
        self.params.lock().min_align_mask = mask;
    }

    /// Marks the device as (not) snooping caches.
    pub fn set_cache_coherent(&self, coherent: bool) {
        self.params.lock().coherent = coherent;
    }

    /// Bounce everything (`swiotlb=force`), for testing drivers against bouncing.
    pub fn set_force_bounce(&self, force: bool) {
        self.params.lock().force_bounce = force;
    }

    /// Routes this device's dma-debug reports to `sink` (`None`: the global sink).
    pub fn set_debug_sink(&self, sink: Option<Arc<dyn DebugSink>>) {
        self.debug.set_sink(sink);
    }

    /// Reports of `kind` for this device so far.
    pub fn debug_count(&self, kind: DebugKind) -> u64 {
        self.debug.count(kind)
    }

    /// Live mappings and coherent allocations, for a `dma` shell view.
    pub fn mappings(&self) -> Vec<MappingInfo> {
        self.maps.lock().infos().collect()
    }

    /// Number of live mappings and coherent allocations.
    pub fn mapping_count(&self) -> usize {
        self.maps.lock().len()
    }

    /// The kernel calls this when the driver unbinds (Linux dma-debug's
    /// `dma_debug_device_change`): reports a [`DebugKind::Leak`] naming the oldest leaked entry
    /// if any mapping or allocation is still alive (with the `debug` feature), and
    /// returns how many there are.
    pub fn check_leaks(&self) -> usize {
        let (count, first) = {
            let g = self.maps.lock();
            (g.len(), g.oldest())
        };
        if let Some(first) = first {
            self.debug.leaks(&self.name, count, &first);
        }
        count
    }
}
