//! Typed streaming mappings: the direction is a type, so a sync the direction forbids
//! does not compile (DESIGN.md §4; Asterinas `DmaStream<Direction>`).
//!
//! Ownership follows `Documentation/core-api/dma-api-howto.rst`: between map and unmap the
//! device owns the buffer ([`DmaStream`] holds it, the CPU cannot touch it);
//! `sync_for_cpu` lends it to the CPU through a guard, and dropping the guard (or
//! calling `sync_for_device` on it) hands it back.
//!
//! | type | CPU access while mapped | how |
//! |---|---|---|
//! | `DmaStream<ToDevice>` | write (then the device sees it) | [`DmaStream::cpu_write`] |
//! | `DmaStream<FromDevice>` | read | [`DmaStream::sync_for_cpu`] |
//! | `DmaStream<Bidirectional>` | read and write | [`DmaStream::sync_for_cpu`] |
//!
//! Forbidden uses fail to compile:
//!
//! ```compile_fail,E0599
//! // The device only reads a ToDevice buffer: there is nothing to sync for the CPU.
//! fn f(s: &mut dma::DmaStream<dma::ToDevice>) { let _ = s.sync_for_cpu(); }
//! ```
//! ```compile_fail,E0599
//! // A FromDevice view is read-only: a CPU write would never reach the device.
//! fn f(s: &mut dma::DmaStream<dma::FromDevice>) { s.sync_for_cpu().write(0, &[1]); }
//! ```
//! ```compile_fail,E0599
//! // Writing for the device through a FromDevice mapping: no copy to the bounce buffer.
//! fn f(s: &mut dma::DmaStream<dma::FromDevice>) { let _ = s.cpu_write(); }
//! ```
//! ```compile_fail,E0499
//! // One CPU view at a time, and none while the stream is used otherwise.
//! fn f(s: &mut dma::DmaStream<dma::Bidirectional>) {
//!     let a = s.sync_for_cpu();
//!     let b = s.sync_for_cpu();
//!     drop((a, b));
//! }
//! ```
//! The allowed twins compile:
//! ```
//! fn f(s: &mut dma::DmaStream<dma::FromDevice>) { let mut b = [0u8; 4]; s.sync_for_cpu().read(0, &mut b); }
//! fn g(s: &mut dma::DmaStream<dma::Bidirectional>) { s.sync_for_cpu().write(0, &[1]); }
//! fn h(s: &mut dma::DmaStream<dma::ToDevice>) { s.cpu_write().write(0, &[1]); }
//! ```

use crate::debug::MapType;
use crate::mapping::Place;
use crate::platform::{alloc_below, order_for, DmaPlatform};
use crate::{DmaDevice, DmaDirection, DmaError, PAGE_SIZE};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use hal::{DmaAddr, PhysAddr};

mod sealed {
    pub trait Sealed {}
}

/// A direction as a type.
pub trait Direction: sealed::Sealed {
    /// The runtime value.
    const DIR: DmaDirection;
}

/// Directions in which the device writes memory (the CPU may read after `sync_for_cpu`).
pub trait DeviceWrites: Direction {}
/// Directions in which the device reads memory (CPU writes must be synced for it).
pub trait DeviceReads: Direction {}

/// The device reads the buffer (`DMA_TO_DEVICE`).
#[derive(Debug)]
pub enum ToDevice {}
/// The device writes the buffer (`DMA_FROM_DEVICE`).
#[derive(Debug)]
pub enum FromDevice {}
/// Both (`DMA_BIDIRECTIONAL`).
#[derive(Debug)]
pub enum Bidirectional {}

impl sealed::Sealed for ToDevice {}
impl sealed::Sealed for FromDevice {}
impl sealed::Sealed for Bidirectional {}
impl Direction for ToDevice {
    const DIR: DmaDirection = DmaDirection::ToDevice;
}
impl Direction for FromDevice {
    const DIR: DmaDirection = DmaDirection::FromDevice;
}
impl Direction for Bidirectional {
    const DIR: DmaDirection = DmaDirection::Bidirectional;
}
impl DeviceReads for ToDevice {}
impl DeviceReads for Bidirectional {}
impl DeviceWrites for FromDevice {}
impl DeviceWrites for Bidirectional {}

/// A physically contiguous, kernel-owned buffer of whole pages, freed on drop. The CPU
/// reads and writes it through [`PhysMemory`](hal::PhysMemory) while no device owns it.
pub struct DmaBuf {
    platform: &'static dyn DmaPlatform,
    pa: PhysAddr,
    len: usize,
    order: u32,
}

impl DmaBuf {
    /// `len` bytes anywhere in RAM (zeroed). Whether it fits a device's mask is the
    /// mapping's business: it bounces or translates if not.
    pub fn alloc(platform: &'static dyn DmaPlatform, len: usize) -> Result<DmaBuf, DmaError> {
        Self::alloc_below(platform, len, u64::MAX)
    }

    /// `len` bytes entirely at or below `limit` (zeroed).
    pub fn alloc_below(
        platform: &'static dyn DmaPlatform,
        len: usize,
        limit: u64,
    ) -> Result<DmaBuf, DmaError> {
        if len == 0 {
            return Err(DmaError::ZeroLength {
                device: Arc::from("-"),
            });
        }
        let order = order_for(len);
        let pa = alloc_below(platform, order, limit).ok_or_else(|| DmaError::OutOfMemory {
            device: Arc::from("-"),
            size: len,
            limit,
        })?;
        platform.mem().fill(pa, 0, PAGE_SIZE << order);
        Ok(DmaBuf {
            platform,
            pa,
            len,
            order,
        })
    }

    /// Physical address of the first byte (for the raw layer; never a bus address).
    pub fn phys(&self) -> PhysAddr {
        self.pa
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[track_caller]
    fn check(&self, offset: usize, n: usize) {
        assert!(
            offset.checked_add(n).is_some_and(|e| e <= self.len),
            "DmaBuf access [{offset:#x}+{n:#x}] outside {} bytes",
            self.len
        );
    }

    /// Copies bytes out. Panics if out of bounds (like slice indexing).
    #[track_caller]
    pub fn read(&self, offset: usize, buf: &mut [u8]) {
        self.check(offset, buf.len());
        self.platform.mem().read(self.pa + offset as u64, buf);
    }

    /// Copies bytes in. Panics if out of bounds.
    #[track_caller]
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        self.check(offset, data.len());
        self.platform.mem().write(self.pa + offset as u64, data);
    }

    /// Sets every byte to `byte`.
    pub fn fill(&mut self, byte: u8) {
        self.platform.mem().fill(self.pa, byte, self.len);
    }

    /// The contents.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len];
        self.read(0, &mut v);
        v
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        self.platform.free_pages(self.pa, self.order);
    }
}

impl fmt::Debug for DmaBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DmaBuf({} bytes at phys {:#x})",
            self.len,
            self.pa.as_u64()
        )
    }
}

/// A mapped buffer the device owns. Drop unmaps (copying back per direction) and frees
/// the buffer; [`unmap`](Self::unmap) gives the buffer back instead.
pub struct DmaStream<D: Direction> {
    dev: Arc<DmaDevice>,
    buf: Option<DmaBuf>,
    dma: DmaAddr,
    _dir: PhantomData<D>,
}

/// A failed map, with the buffer given back.
#[derive(Debug)]
pub struct MapError {
    /// Why.
    pub error: DmaError,
    /// The buffer, untouched.
    pub buf: DmaBuf,
}

impl<D: Direction> DmaStream<D> {
    /// Maps `buf` for `dev` in direction `D` (through the raw layer's choke point).
    pub fn map(dev: &Arc<DmaDevice>, buf: DmaBuf) -> Result<Self, MapError> {
        match dev.map_phys(buf.pa, buf.len, D::DIR, MapType::Single, Place::Backend) {
            Ok(dma) => Ok(DmaStream {
                dev: dev.clone(),
                buf: Some(buf),
                dma,
                _dir: PhantomData,
            }),
            Err(error) => Err(MapError { error, buf }),
        }
    }

    /// Bus address to program into the device.
    pub fn dma_addr(&self) -> DmaAddr {
        self.dma
    }

    /// Length mapped.
    pub fn len(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.len)
    }

    /// Never true.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn do_unmap(&mut self) -> Option<DmaBuf> {
        let buf = self.buf.take()?;
        if let Err(e) = self.dev.unmap_single(self.dma, buf.len, D::DIR) {
            // Only possible if the raw layer was misused on our address (reported).
            log::error!("DmaStream unmap: {e}");
        }
        Some(buf)
    }

    /// Unmaps (copying back what the device wrote) and returns the CPU-owned buffer.
    pub fn unmap(mut self) -> DmaBuf {
        match self.do_unmap() {
            Some(b) => b,
            // `buf` is only taken here and in drop, both consuming `self`.
            None => unreachable!("DmaStream without a buffer"),
        }
    }

    fn sync_cpu(&self) {
        if let Err(e) = self.dev.sync_single_for_cpu(self.dma, self.len(), D::DIR) {
            log::error!("DmaStream sync_for_cpu: {e}");
        }
    }

    fn sync_device(&self) {
        if let Err(e) = self
            .dev
            .sync_single_for_device(self.dma, self.len(), D::DIR)
        {
            log::error!("DmaStream sync_for_device: {e}");
        }
    }

    fn buf(&self) -> &DmaBuf {
        match &self.buf {
            Some(b) => b,
            None => unreachable!("DmaStream without a buffer"),
        }
    }

    fn buf_mut(&mut self) -> &mut DmaBuf {
        match &mut self.buf {
            Some(b) => b,
            None => unreachable!("DmaStream without a buffer"),
        }
    }
}

impl<D: DeviceWrites> DmaStream<D> {
    /// `dma_sync_single_for_cpu`: the CPU may now read what the device wrote (and, for
    /// `Bidirectional`, write). Dropping the view hands the buffer back to the device.
    pub fn sync_for_cpu(&mut self) -> CpuView<'_, D> {
        self.sync_cpu();
        CpuView { stream: self }
    }
}

impl DmaStream<ToDevice> {
    /// Lets the CPU change a `ToDevice` buffer while mapped; dropping the writer (or
    /// [`CpuWriter::sync_for_device`]) makes the change visible to the device.
    pub fn cpu_write(&mut self) -> CpuWriter<'_> {
        // Linux allows sync_for_cpu(TO_DEVICE) on a TO_DEVICE mapping (a no-op copy):
        // it marks the CPU phase for dma-debug and the cache hooks.
        self.sync_cpu();
        CpuWriter { stream: self }
    }
}

impl<D: Direction> Drop for DmaStream<D> {
    fn drop(&mut self) {
        drop(self.do_unmap());
    }
}

impl<D: Direction> fmt::Debug for DmaStream<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DmaStream<{}>({:#x}+{:#x})",
            D::DIR,
            self.dma,
            self.len()
        )
    }
}

/// CPU access to a device-written buffer between `sync_for_cpu` and `sync_for_device`.
pub struct CpuView<'a, D: DeviceWrites> {
    stream: &'a mut DmaStream<D>,
}

impl<D: DeviceWrites> CpuView<'_, D> {
    /// Copies bytes out. Panics if out of bounds.
    #[track_caller]
    pub fn read(&self, offset: usize, buf: &mut [u8]) {
        self.stream.buf().read(offset, buf);
    }

    /// The whole buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        self.stream.buf().to_vec()
    }

    /// Hands the buffer back to the device (`dma_sync_single_for_device`); same as drop.
    pub fn sync_for_device(self) {}
}

impl CpuView<'_, Bidirectional> {
    /// Copies bytes in. Panics if out of bounds.
    #[track_caller]
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        self.stream.buf_mut().write(offset, data);
    }
}

impl<D: DeviceWrites> Drop for CpuView<'_, D> {
    fn drop(&mut self) {
        self.stream.sync_device();
    }
}

/// CPU write access to a `ToDevice` buffer while mapped.
pub struct CpuWriter<'a> {
    stream: &'a mut DmaStream<ToDevice>,
}

impl CpuWriter<'_> {
    /// Copies bytes in. Panics if out of bounds.
    #[track_caller]
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        self.stream.buf_mut().write(offset, data);
    }

    /// Sets every byte.
    pub fn fill(&mut self, byte: u8) {
        self.stream.buf_mut().fill(byte);
    }

    /// Makes the writes visible to the device; same as drop.
    pub fn sync_for_device(self) {}
}

impl Drop for CpuWriter<'_> {
    fn drop(&mut self) {
        self.stream.sync_device();
    }
}
