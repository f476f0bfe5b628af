//! dma-debug (Linux `CONFIG_DMA_API_DEBUG`, hw-facts §3.8).
//!
//! A registry apart from the map path: unmap and sync find their mapping in the device's
//! own table (`maptable`), not here. With the `debug` cargo feature (on by default; the
//! kernel keeps it on), each device's [`DeviceDebug`] checks every unmap and sync
//! against the mapping found (wrong size, wrong direction, wrong function), remembers
//! recently unmapped entries to tell a double unmap from garbage, and reports a leak at
//! driver unbind: a [`DebugEvent`] goes to the device's sink, else the global sink, else
//! the log, and is counted per [`DebugKind`] globally and per device. Without the
//! feature the registry and every check compile to nothing; misuse the map path itself
//! refuses (unknown address, wrong function, sync out of range, mask) still returns an
//! error.

use crate::{DmaDirection, PhysAddr};
#[cfg(feature = "debug")]
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use hal::DmaAddr;

/// How a mapping was made (Linux dma-debug's "type": single / sg / coherent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapType {
    /// `map_single` / a typed [`DmaStream`](crate::DmaStream).
    Single,
    /// One piece of a scatter-gather mapping.
    Sg,
    /// A coherent allocation (or a pool chunk).
    Coherent,
}

impl MapType {
    /// Name as dma-debug prints it.
    pub const fn name(self) -> &'static str {
        match self {
            MapType::Single => "single",
            MapType::Sg => "scatter-gather",
            MapType::Coherent => "coherent",
        }
    }
}

/// Which backend served a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Bus address = physical address.
    Direct,
    /// Bounced through the swiotlb; the bus address is the bounce slot's.
    Bounce,
    /// Translated by an IOMMU domain; the bus address is an IOVA.
    Iommu,
}

/// The recorded facts of one mapping, as dma-debug shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappingInfo {
    /// Bus address handed to the driver.
    pub addr: DmaAddr,
    /// Length mapped.
    pub size: usize,
    /// Direction (`Bidirectional` for coherent memory).
    pub dir: DmaDirection,
    /// How it was mapped.
    pub map_type: MapType,
    /// The CPU physical address of the original buffer.
    pub phys: PhysAddr,
    /// Which backend served it.
    pub via: Via,
}

impl fmt::Display for MappingInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[device address={:#x}] [size={} bytes] [mapped with {}] [mapped as {}] [phys={:#x}] [{:?}]",
            self.addr,
            self.size,
            self.dir,
            self.map_type.name(),
            self.phys.as_u64(),
            self.via
        )
    }
}

/// What dma-debug detected. Numbers in the docs refer to hw-facts §3.8's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DebugKind {
    /// (#1) Unmap of `DMA_MAPPING_ERROR`.
    UnmapInvalidAddress = 0,
    /// (#2) Unmap of an address that was never mapped.
    UnmapNotMapped,
    /// (#2, refined) Unmap of an address whose mapping was already unmapped.
    DoubleUnmap,
    /// (#3) Unmap with a different size than the map.
    UnmapSizeMismatch,
    /// (#7) Unmap with a different direction than the map.
    UnmapDirectionMismatch,
    /// (#4) Unmap through the wrong function (e.g. a coherent allocation via `unmap_single`).
    UnmapWrongType,
    /// (#14) Sync of a range that is not mapped.
    SyncNotMapped,
    /// (#15) Sync past the end of the mapping.
    SyncOutOfRange,
    /// (#16) Sync with a different direction than the map.
    SyncDirectionMismatch,
    /// (#17) `sync_for_cpu` of memory the device only reads.
    SyncReadOnlyForCpu,
    /// (#18) `sync_for_device` of memory the device only writes.
    SyncWriteOnlyForDevice,
    /// A mapping outside the device's mask with no swiotlb/IOMMU to fix it.
    MaskViolation,
    /// (#9) Mappings still alive when the driver is removed.
    Leak,
}

/// Number of [`DebugKind`]s.
pub const DEBUG_KINDS: usize = 13;

impl DebugKind {
    /// All kinds, in counter order.
    pub const ALL: [DebugKind; DEBUG_KINDS] = [
        DebugKind::UnmapInvalidAddress,
        DebugKind::UnmapNotMapped,
        DebugKind::DoubleUnmap,
        DebugKind::UnmapSizeMismatch,
        DebugKind::UnmapDirectionMismatch,
        DebugKind::UnmapWrongType,
        DebugKind::SyncNotMapped,
        DebugKind::SyncOutOfRange,
        DebugKind::SyncDirectionMismatch,
        DebugKind::SyncReadOnlyForCpu,
        DebugKind::SyncWriteOnlyForDevice,
        DebugKind::MaskViolation,
        DebugKind::Leak,
    ];

    /// Short name for counters (`dma` shell view).
    pub const fn name(self) -> &'static str {
        match self {
            DebugKind::UnmapInvalidAddress => "unmap-invalid",
            DebugKind::UnmapNotMapped => "unmap-not-mapped",
            DebugKind::DoubleUnmap => "double-unmap",
            DebugKind::UnmapSizeMismatch => "unmap-size",
            DebugKind::UnmapDirectionMismatch => "unmap-direction",
            DebugKind::UnmapWrongType => "unmap-wrong-type",
            DebugKind::SyncNotMapped => "sync-not-mapped",
            DebugKind::SyncOutOfRange => "sync-out-of-range",
            DebugKind::SyncDirectionMismatch => "sync-direction",
            DebugKind::SyncReadOnlyForCpu => "sync-readonly-for-cpu",
            DebugKind::SyncWriteOnlyForDevice => "sync-writeonly-for-device",
            DebugKind::MaskViolation => "mask-violation",
            DebugKind::Leak => "leak",
        }
    }

    /// Linux's wording, so a Linux reader recognises the report.
    pub const fn message(self) -> &'static str {
        match self {
            DebugKind::UnmapInvalidAddress => {
                "device driver tries to free an invalid DMA memory address"
            }
            DebugKind::UnmapNotMapped => {
                "device driver tries to free DMA memory it has not allocated"
            }
            DebugKind::DoubleUnmap => "device driver frees DMA memory that was already freed",
            DebugKind::UnmapSizeMismatch => "device driver frees DMA memory with different size",
            DebugKind::UnmapDirectionMismatch => {
                "device driver frees DMA memory with different direction"
            }
            DebugKind::UnmapWrongType => "device driver frees DMA memory with wrong function",
            DebugKind::SyncNotMapped => {
                "device driver tries to sync DMA memory it has not allocated"
            }
            DebugKind::SyncOutOfRange => "device driver syncs DMA memory outside allocated range",
            DebugKind::SyncDirectionMismatch => {
                "device driver syncs DMA memory with different direction"
            }
            DebugKind::SyncReadOnlyForCpu => {
                "device driver syncs device read-only DMA memory for cpu"
            }
            DebugKind::SyncWriteOnlyForDevice => {
                "device driver syncs device write-only DMA memory to device"
            }
            DebugKind::MaskViolation => {
                "device driver maps memory outside its DMA mask and nothing can bounce or remap it"
            }
            DebugKind::Leak => {
                "device driver has pending DMA allocations while released from device"
            }
        }
    }
}

/// One dma-debug report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugEvent {
    /// What was detected.
    pub kind: DebugKind,
    /// Device name, e.g. `0000:00:03.0 edu`.
    pub device: Arc<str>,
    /// Bus address the driver passed (for a mask violation: the physical address as a
    /// would-be bus address; for a leak: the first leaked mapping's).
    pub addr: DmaAddr,
    /// Size the driver passed.
    pub size: usize,
    /// Direction the driver passed, if any.
    pub dir: Option<DmaDirection>,
    /// How the driver called (for wrong-function reports).
    pub map_type: Option<MapType>,
    /// The original mapping's details where known (wrong size/direction, double unmap,
    /// sync mismatch, one leaked entry).
    pub original: Option<MappingInfo>,
    /// The device's mask (mask violations).
    pub mask: Option<u64>,
    /// Number of leaked entries (leaks).
    pub count: usize,
}

impl fmt::Display for DebugEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DMA-API: {}: {} [device address={:#x}] [size={} bytes]",
            self.device,
            self.kind.message(),
            self.addr,
            self.size
        )?;
        if let Some(d) = self.dir {
            write!(f, " [direction {d}]")?;
        }
        if let Some(t) = self.map_type {
            write!(f, " [as {}]", t.name())?;
        }
        if let Some(m) = self.mask {
            write!(f, " [mask={m:#x}]")?;
        }
        if self.kind == DebugKind::Leak {
            write!(f, " [count={}]", self.count)?;
        }
        if let Some(o) = &self.original {
            write!(f, " original: {o}")?;
        }
        Ok(())
    }
}

/// Where reports go: the kernel routes them to its log (and a `dma` shell view).
pub trait DebugSink: Send + Sync {
    /// Called once per detection, outside every DMA-layer lock.
    fn report(&self, event: &DebugEvent);
}

static GLOBAL_SINK: spin::RwLock<Option<&'static dyn DebugSink>> = spin::RwLock::new(None);

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
static GLOBAL_COUNTS: [AtomicU64; DEBUG_KINDS] = [ZERO; DEBUG_KINDS];

/// Sets the sink for devices that have none of their own (the kernel calls this once).
pub fn set_global_sink(sink: &'static dyn DebugSink) {
    *GLOBAL_SINK.write() = Some(sink);
}

/// Reports counted so far for `kind`, over all devices.
pub fn global_count(kind: DebugKind) -> u64 {
    GLOBAL_COUNTS[kind as usize].load(Ordering::Relaxed)
}

/// Every kind with its count over all devices, for a `dma` shell view.
pub fn global_counts() -> [(DebugKind, u64); DEBUG_KINDS] {
    DebugKind::ALL.map(|k| (k, global_count(k)))
}

/// True when this build reports misuse (the `debug` feature).
pub const ENABLED: bool = cfg!(feature = "debug");

/// How many unmapped entries a device remembers, to tell a double unmap from an unmap
/// of garbage.
#[cfg(feature = "debug")]
const RECENT_UNMAPS: usize = 64;

/// A device's dma-debug registry: counters, sink, recently unmapped entries. Empty, and
/// every check a no-op, without the `debug` feature.
#[derive(Default)]
pub(crate) struct DeviceDebug {
    #[cfg(feature = "debug")]
    counts: [AtomicU64; DEBUG_KINDS],
    #[cfg(feature = "debug")]
    sink: spin::RwLock<Option<Arc<dyn DebugSink>>>,
    #[cfg(feature = "debug")]
    recent: spin::Mutex<VecDeque<MappingInfo>>,
}

/// A report's fields beyond kind, device, address and size.
#[derive(Default)]
#[cfg_attr(not(feature = "debug"), allow(dead_code))]
struct Extra {
    dir: Option<DmaDirection>,
    map_type: Option<MapType>,
    original: Option<MappingInfo>,
    mask: Option<u64>,
    count: usize,
}

#[cfg_attr(not(feature = "debug"), allow(unused_variables))]
impl DeviceDebug {
    pub(crate) fn set_sink(&self, sink: Option<Arc<dyn DebugSink>>) {
        #[cfg(feature = "debug")]
        {
            *self.sink.write() = sink;
        }
    }

    pub(crate) fn count(&self, kind: DebugKind) -> u64 {
        #[cfg(feature = "debug")]
        {
            self.counts[kind as usize].load(Ordering::Relaxed)
        }
        #[cfg(not(feature = "debug"))]
        {
            0
        }
    }

    /// Counts and delivers one report. Called outside every DMA-layer lock.
    fn report(&self, device: &Arc<str>, kind: DebugKind, addr: DmaAddr, size: usize, x: Extra) {
        #[cfg(feature = "debug")]
        {
            let ev = DebugEvent {
                kind,
                device: device.clone(),
                addr,
                size,
                dir: x.dir,
                map_type: x.map_type,
                original: x.original,
                mask: x.mask,
                count: x.count,
            };
            self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
            GLOBAL_COUNTS[kind as usize].fetch_add(1, Ordering::Relaxed);
            let own = self.sink.read().clone();
            if let Some(s) = own {
                s.report(&ev);
                return;
            }
            let global = *GLOBAL_SINK.read();
            match global {
                Some(s) => s.report(&ev),
                None => log::error!("{ev}"),
            }
        }
    }

    /// A streaming map outside the mask with nothing to bounce or remap it.
    pub(crate) fn mask_violation(
        &self,
        device: &Arc<str>,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        map_type: MapType,
        mask: u64,
    ) {
        let x = Extra {
            dir: Some(dir),
            map_type: Some(map_type),
            mask: Some(mask),
            ..Extra::default()
        };
        let addr = DmaAddr::new(phys.as_u64());
        self.report(device, DebugKind::MaskViolation, addr, len, x);
    }

    /// An unmap of an address with no live mapping: the error cookie, a double unmap
    /// (naming the original), or garbage.
    pub(crate) fn unmap_not_mapped(
        &self,
        device: &Arc<str>,
        addr: DmaAddr,
        len: usize,
        dir: DmaDirection,
        map_type: MapType,
    ) {
        #[cfg(feature = "debug")]
        {
            let mut x = Extra {
                dir: Some(dir),
                map_type: Some(map_type),
                ..Extra::default()
            };
            let kind = if addr == crate::DMA_MAPPING_ERROR {
                DebugKind::UnmapInvalidAddress
            } else {
                let recent = self.recent.lock();
                x.original = recent.iter().rev().find(|o| o.addr == addr).copied();
                match x.original {
                    Some(_) => DebugKind::DoubleUnmap,
                    None => DebugKind::UnmapNotMapped,
                }
            };
            self.report(device, kind, addr, len, x);
        }
    }

    /// An unmap through the wrong function (refused; the mapping stays).
    pub(crate) fn unmap_wrong_type(
        &self,
        device: &Arc<str>,
        original: &MappingInfo,
        addr: DmaAddr,
        len: usize,
        dir: DmaDirection,
        map_type: MapType,
    ) {
        let x = Extra {
            dir: Some(dir),
            map_type: Some(map_type),
            original: Some(*original),
            ..Extra::default()
        };
        self.report(device, DebugKind::UnmapWrongType, addr, len, x);
    }

    /// A completed unmap of `original`: checks the caller's size and direction and
    /// remembers the entry (for double unmaps).
    pub(crate) fn unmapped(
        &self,
        device: &Arc<str>,
        original: &MappingInfo,
        addr: DmaAddr,
        len: usize,
        dir: DmaDirection,
        map_type: MapType,
    ) {
        #[cfg(feature = "debug")]
        {
            for (bad, kind) in [
                (original.size != len, DebugKind::UnmapSizeMismatch),
                (original.dir != dir, DebugKind::UnmapDirectionMismatch),
            ] {
                if bad {
                    let x = Extra {
                        dir: Some(dir),
                        map_type: Some(map_type),
                        original: Some(*original),
                        ..Extra::default()
                    };
                    self.report(device, kind, addr, len, x);
                }
            }
            let mut recent = self.recent.lock();
            if recent.len() == RECENT_UNMAPS {
                recent.pop_front();
            }
            recent.push_back(*original);
        }
    }

    /// A sync of an address with no live mapping.
    pub(crate) fn sync_not_mapped(
        &self,
        device: &Arc<str>,
        addr: DmaAddr,
        len: usize,
        dir: DmaDirection,
    ) {
        let x = Extra {
            dir: Some(dir),
            ..Extra::default()
        };
        self.report(device, DebugKind::SyncNotMapped, addr, len, x);
    }

    /// A sync running past the end of `original`.
    pub(crate) fn sync_out_of_range(
        &self,
        device: &Arc<str>,
        original: &MappingInfo,
        addr: DmaAddr,
        len: usize,
        dir: DmaDirection,
    ) {
        let x = Extra {
            dir: Some(dir),
            original: Some(*original),
            ..Extra::default()
        };
        self.report(device, DebugKind::SyncOutOfRange, addr, len, x);
    }

    /// A sync inside `original`: Linux's `check_sync` direction rules.
    pub(crate) fn synced(
        &self,
        device: &Arc<str>,
        original: &MappingInfo,
        addr: DmaAddr,
        len: usize,
        dir: DmaDirection,
        for_cpu: bool,
    ) {
        let mapped = original.dir;
        if mapped == DmaDirection::Bidirectional {
            return;
        }
        for (bad, kind) in [
            (dir != mapped, DebugKind::SyncDirectionMismatch),
            (
                for_cpu && mapped != DmaDirection::FromDevice && dir != DmaDirection::ToDevice,
                DebugKind::SyncReadOnlyForCpu,
            ),
            (
                !for_cpu && mapped != DmaDirection::ToDevice && dir != DmaDirection::FromDevice,
                DebugKind::SyncWriteOnlyForDevice,
            ),
        ] {
            if bad {
                let x = Extra {
                    dir: Some(dir),
                    original: Some(*original),
                    ..Extra::default()
                };
                self.report(device, kind, addr, len, x);
            }
        }
    }

    /// Mappings still alive at driver unbind: one report naming the first of `count`.
    pub(crate) fn leaks(&self, device: &Arc<str>, count: usize, first: &MappingInfo) {
        let x = Extra {
            dir: Some(first.dir),
            map_type: Some(first.map_type),
            original: Some(*first),
            count,
            ..Extra::default()
        };
        self.report(device, DebugKind::Leak, first.addr, first.size, x);
    }
}
