//! The IOMMU backend through a fake domain that logs every call and checks the order.

use super::*;
use crate::iommu::{IommuDomain, IommuError, IommuPerm};
use crate::{dma_bit_mask, DmaBuf, DmaError, DmaStream, SgTable, ToDevice, Via};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Alloc(u64, u64),
    Map(u64, u64, u64, IommuPerm),
    Unmap(u64, u64),
    Flush(u64, u64),
    Free(u64, u64),
}

/// IOVAs from `base` up, first fit; page table as a map of 4 KiB pages.
pub struct FakeDomain {
    pub base: u64,
    pub ops: Vec<Op>,
    pub allocated: BTreeMap<u64, u64>,
    pub ptes: BTreeMap<u64, (u64, IommuPerm)>,
    /// Ranges unmapped but not yet flushed.
    pub stale: Vec<(u64, u64)>,
    /// Order violations seen (free before flush, reuse of a live IOVA).
    pub violations: Vec<String>,
    pub fail_map: bool,
    pub fail_flush: bool,
}

impl FakeDomain {
    pub fn new(base: u64) -> Self {
        FakeDomain {
            base,
            ops: Vec::new(),
            allocated: BTreeMap::new(),
            ptes: BTreeMap::new(),
            stale: Vec::new(),
            violations: Vec::new(),
            fail_map: false,
            fail_flush: false,
        }
    }

    /// What the device reaches at `iova` (the hardware page walk).
    pub fn translate(&self, iova: u64, write: bool) -> Option<u64> {
        let (phys, perm) = self.ptes.get(&(iova & !0xFFF))?;
        let need = if write {
            IommuPerm::WRITE
        } else {
            IommuPerm::READ
        };
        perm.contains(need).then_some(phys + (iova & 0xFFF))
    }
}

impl IommuDomain for FakeDomain {
    fn alloc_iova(&mut self, len: u64, mask: u64) -> Option<DmaAddr> {
        let mut a = self.base;
        for (&s, &l) in &self.allocated {
            if a + len <= s {
                break;
            }
            a = a.max(s + l);
        }
        if a + len - 1 > mask {
            return None;
        }
        self.allocated.insert(a, len);
        self.ops.push(Op::Alloc(a, len));
        Some(DmaAddr::new(a))
    }

    fn free_iova(&mut self, iova: DmaAddr, len: u64) {
        let a = iova.as_u64();
        if self.stale.iter().any(|&(s, l)| a < s + l && s < a + len) {
            self.violations
                .push(format!("free_iova({a:#x}) before IOTLB flush"));
        }
        if (a..a + len)
            .step_by(4096)
            .any(|pg| self.ptes.contains_key(&pg))
        {
            self.violations
                .push(format!("free_iova({a:#x}) while still mapped"));
        }
        self.allocated.remove(&a);
        self.ops.push(Op::Free(a, len));
    }

    fn map(
        &mut self,
        iova: DmaAddr,
        phys: PhysAddr,
        len: u64,
        perm: IommuPerm,
    ) -> Result<(), IommuError> {
        self.ops
            .push(Op::Map(iova.as_u64(), phys.as_u64(), len, perm));
        if self.fail_map {
            return Err(IommuError::OutOfMemory);
        }
        for off in (0..len).step_by(4096) {
            if self
                .ptes
                .insert(iova.as_u64() + off, (phys.as_u64() + off, perm))
                .is_some()
            {
                self.violations
                    .push(format!("double map at {:#x}", iova.as_u64() + off));
            }
        }
        Ok(())
    }

    fn unmap(&mut self, iova: DmaAddr, len: u64) -> Result<(), IommuError> {
        self.ops.push(Op::Unmap(iova.as_u64(), len));
        for off in (0..len).step_by(4096) {
            self.ptes
                .remove(&(iova.as_u64() + off))
                .ok_or(IommuError::NotMapped)?;
        }
        self.stale.push((iova.as_u64(), len));
        Ok(())
    }

    fn flush_iotlb(&mut self, iova: DmaAddr, len: u64) -> Result<(), IommuError> {
        self.ops.push(Op::Flush(iova.as_u64(), len));
        if self.fail_flush {
            return Err(IommuError::FlushFailed);
        }
        let a = iova.as_u64();
        self.stale.retain(|&(s, l)| !(s >= a && s + l <= a + len));
        Ok(())
    }
}

type Shared = std::sync::Arc<spin::Mutex<FakeDomain>>;

fn iommu_edu(p: &'static TestPlatform) -> (std::sync::Arc<DmaDevice>, Shared, Arc<Collect>) {
    let dom: Shared = std::sync::Arc::new(spin::Mutex::new(FakeDomain::new(0x10_0000)));
    let shared: crate::SharedDomain = dom.clone();
    let (dev, sink) = edu(p, DmaBackend::Iommu(shared));
    (dev, dom, sink)
}

#[test]
fn iommu_mappings_get_iovas_within_the_mask_and_reach_the_buffer() {
    let p = machine();
    let (dev, dom, sink) = iommu_edu(p);
    // A high buffer, far above the 28-bit mask: no bounce, an IOVA under the mask.
    let mut buf = DmaBuf::alloc(p, 6000).unwrap();
    buf.write(0x123, b"hello");
    let phys = buf.phys();
    let s = DmaStream::<ToDevice>::map(&dev, buf).unwrap();
    let iova = s.dma_addr().as_u64();
    assert!(iova + 6000 - 1 <= dma_bit_mask(28));
    assert_ne!(iova, phys.as_u64());
    assert_eq!(dev.mappings()[0].via, Via::Iommu);
    {
        let d = dom.lock();
        assert_eq!(
            d.ops,
            vec![
                Op::Alloc(0x10_0000, 8192),
                Op::Map(0x10_0000, phys.as_u64(), 8192, IommuPerm::READ)
            ]
        );
        // The device reads through the translation; it may not write a ToDevice buffer.
        let pa = d.translate(iova + 0x123, false).unwrap();
        assert_eq!(p.bytes(pa, 5), b"hello");
        assert!(d.translate(iova, true).is_none());
    }
    drop(s);
    assert!(sink.take().is_empty());
}

#[test]
fn iommu_keeps_the_offset_inside_the_page_and_sets_write_permission() {
    let p = machine();
    let (dev, dom, _) = iommu_edu(p);
    let buf = DmaBuf::alloc(p, 8192).unwrap();
    let phys = PhysAddr::new(buf.phys().as_u64() + 0xF00);
    // 0x200 bytes from 0xF00 spans two pages.
    let a = dev
        .map_owned(phys, 0x200, DmaDirection::FromDevice)
        .unwrap();
    assert_eq!(a.as_u64() & 0xFFF, 0xF00);
    let d = dom.lock();
    assert_eq!(d.ops[0], Op::Alloc(0x10_0000, 8192));
    let pa = d.translate(a.as_u64() + 0x150, true).unwrap();
    assert_eq!(pa, phys.as_u64() + 0x150);
    drop(d);
    dev.unmap_single(a, 0x200, DmaDirection::FromDevice)
        .unwrap();
}

#[test]
fn iommu_unmap_flushes_before_the_iova_is_freed_and_reused() {
    let p = machine();
    let (dev, dom, _) = iommu_edu(p);
    let buf = DmaBuf::alloc(p, 4096).unwrap();
    let a = dev
        .map_owned(buf.phys(), 4096, DmaDirection::Bidirectional)
        .unwrap();
    // A second mapping while the first is live gets a different IOVA.
    let b = dev
        .map_owned(buf.phys(), 4096, DmaDirection::Bidirectional)
        .unwrap();
    assert_ne!(a, b);
    dev.unmap_single(a, 4096, DmaDirection::Bidirectional)
        .unwrap();
    let c = dev
        .map_owned(buf.phys(), 4096, DmaDirection::Bidirectional)
        .unwrap();
    assert_eq!(c, a, "IOVA reused only after it was freed");
    let d = dom.lock();
    let a = a.as_u64();
    let tail: Vec<_> = d.ops.iter().skip(4).cloned().collect();
    assert_eq!(
        tail,
        vec![
            Op::Unmap(a, 4096),
            Op::Flush(a, 4096),
            Op::Free(a, 4096),
            Op::Alloc(a, 4096),
            Op::Map(
                a,
                buf.phys().as_u64(),
                4096,
                IommuPerm::READ | IommuPerm::WRITE
            ),
        ]
    );
    assert!(d.violations.is_empty(), "{:?}", d.violations);
}

#[test]
fn the_fake_domain_catches_a_free_before_flush() {
    // Proves the order test above can fail: drive the domain in the wrong order.
    let mut d = FakeDomain::new(0x1000);
    let a = d.alloc_iova(4096, u64::MAX).unwrap();
    d.map(a, PhysAddr::new(0x5000), 4096, IommuPerm::READ)
        .unwrap();
    d.unmap(a, 4096).unwrap();
    d.free_iova(a, 4096);
    assert_eq!(d.violations.len(), 1);
}

#[test]
fn iommu_map_failure_gives_the_iova_back() {
    let p = machine();
    let (dev, dom, _) = iommu_edu(p);
    dom.lock().fail_map = true;
    let buf = DmaBuf::alloc(p, 4096).unwrap();
    let e = dev
        .map_owned(buf.phys(), 4096, DmaDirection::ToDevice)
        .unwrap_err();
    assert!(matches!(
        e,
        DmaError::Iommu {
            error: IommuError::OutOfMemory,
            ..
        }
    ));
    let d = dom.lock();
    assert!(matches!(d.ops.last(), Some(Op::Free(0x10_0000, 4096))));
    assert!(d.allocated.is_empty());
    drop(d);
    assert_eq!(dev.mapping_count(), 0);
}

#[test]
fn iommu_iova_space_exhausted_under_the_mask() {
    let p = machine();
    let (dev, _dom, _) = iommu_edu(p);
    dev.set_mask(dma_bit_mask(21)).unwrap(); // IOVAs 1 MiB..2 MiB only
    let buf = DmaBuf::alloc(p, 2 << 20).unwrap();
    assert!(dev
        .map_owned(buf.phys(), 1 << 20, DmaDirection::ToDevice)
        .is_ok());
    let e = dev
        .map_owned(buf.phys(), 4096, DmaDirection::ToDevice)
        .unwrap_err();
    assert!(matches!(e, DmaError::IovaExhausted { mask, .. } if mask == dma_bit_mask(21)));
}

#[test]
fn coherent_memory_through_the_iommu() {
    let p = machine();
    let (dev, dom, _) = iommu_edu(p);
    let c = dev.alloc_coherent(4096).unwrap().into_device();
    assert!(c.dma_addr().as_u64() <= dma_bit_mask(28));
    let pa = dom.lock().translate(c.dma_addr().as_u64(), true).unwrap();
    p.write(PhysAddr::new(pa + 8), &42u32.to_le_bytes());
    assert_eq!(c.read::<u32>(8), 42);
    drop(c);
    let d = dom.lock();
    assert!(matches!(
        &d.ops[d.ops.len() - 3..],
        [Op::Unmap(..), Op::Flush(..), Op::Free(..)]
    ));
    assert!(d.violations.is_empty());
    assert_eq!(p.pages_in_use(), 0);
}

#[test]
fn sg_through_the_iommu_merges_consecutive_iovas() {
    let p = machine();
    let (dev, dom, _) = iommu_edu(p);
    // Three scattered high pages: one contiguous IOVA range.
    let bufs: Vec<_> = (0..3).map(|_| DmaBuf::alloc(p, 8192).unwrap()).collect();
    let t: SgTable = bufs
        .iter()
        .map(|b| crate::SgEntry {
            phys: b.phys(),
            len: 4096,
        })
        .collect_sg();
    let m = dev.map_sg(t, DmaDirection::FromDevice).unwrap();
    assert_eq!(m.segments().len(), 1);
    assert_eq!(m.segments()[0].len, 3 * 4096);
    drop(m);
    assert!(dom.lock().violations.is_empty());
    assert!(dom.lock().allocated.is_empty());
}

#[test]
fn physically_contiguous_sg_entries_are_one_map_call() {
    let p = machine();
    let (dev, dom, _) = iommu_edu(p);
    // Two buffers of two pages each, apart (a third between them), listed page
    // by page: two runs, four entries.
    let mut bufs: Vec<_> = (0..3).map(|_| DmaBuf::alloc(p, 8192).unwrap()).collect();
    let _between = bufs.remove(1);
    let t: SgTable = bufs
        .iter()
        .flat_map(|b| [0u64, 4096].map(|o| (b.phys() + o, 4096)))
        .map(|(phys, len)| crate::SgEntry { phys, len })
        .collect_sg();
    let before = dom.lock().ops.len();
    let m = dev.map_sg(t, DmaDirection::FromDevice).unwrap();
    let iova = m.segments()[0].addr.as_u64();
    {
        let d = dom.lock();
        let maps: Vec<_> = d.ops[before..]
            .iter()
            .filter(|o| matches!(o, Op::Map(..)))
            .cloned()
            .collect();
        let rw = IommuPerm::WRITE;
        assert_eq!(
            maps,
            [
                Op::Map(iova, bufs[0].phys().as_u64(), 8192, rw),
                Op::Map(iova + 8192, bufs[1].phys().as_u64(), 8192, rw),
            ]
        );
        // Every page still lands where its entry points.
        for (i, b) in bufs.iter().enumerate() {
            for o in [0u64, 4096] {
                let at = iova + i as u64 * 8192 + o;
                assert_eq!(d.translate(at, true), Some(b.phys().as_u64() + o));
            }
        }
    }
    drop(m);
    assert!(dom.lock().violations.is_empty());
    assert!(dom.lock().allocated.is_empty());
}

#[test]
fn a_failed_iotlb_flush_never_frees_the_iova() {
    let p = machine();
    let (dev, dom, _) = iommu_edu(p);
    let buf = DmaBuf::alloc(p, 4096).unwrap();
    let a = dev
        .map_owned(buf.phys(), 4096, DmaDirection::ToDevice)
        .unwrap();
    dom.lock().fail_flush = true;
    dev.unmap_single(a, 4096, DmaDirection::ToDevice).unwrap();
    dom.lock().fail_flush = false;
    let d = dom.lock();
    assert!(matches!(d.ops.last(), Some(Op::Flush(..))), "{:?}", d.ops);
    assert!(
        d.allocated.contains_key(&a.as_u64()),
        "IOVA kept out of circulation"
    );
    drop(d);
    let b = dev
        .map_owned(buf.phys(), 4096, DmaDirection::ToDevice)
        .unwrap();
    assert_ne!(b, a);
}

/// An untrusted device maps a 64-byte buffer inside a page that also holds a
/// secret: the device's page walk reaches a bounce page carrying those 64 bytes
/// and zeros, never the secret; what the device writes comes back on unmap.
#[test]
fn untrusted_sub_page_buffers_are_bounced_into_zero_padded_pages() {
    let p = machine();
    let (dev, dom, sink) = iommu_edu(p);
    dev.set_untrusted(swiotlb(p));
    let mut page = DmaBuf::alloc(p, 4096).unwrap();
    page.write(0x40, &[0x77; 64]);
    page.write(0x800, b"top-secret-key!!");
    let phys = PhysAddr::new(page.phys().as_u64() + 0x40);
    let a = dev
        .map_owned(phys, 64, DmaDirection::Bidirectional)
        .unwrap();
    {
        let d = dom.lock();
        let page_base = a.as_u64() & !0xFFF;
        let bounce = d
            .translate(page_base, false)
            .expect("the bounce page is mapped");
        assert_ne!(
            bounce & !0xFFF,
            page.phys().as_u64(),
            "the buffer's own page is mapped"
        );
        let seen = p.bytes(bounce, 4096);
        let data_at = (a.as_u64() & 0xFFF) as usize;
        assert_eq!(&seen[data_at..data_at + 64], &[0x77; 64][..]);
        assert!(
            seen[..data_at]
                .iter()
                .chain(&seen[data_at + 64..])
                .all(|&b| b == 0),
            "padding not zeroed"
        );
        // The device writes its answer into the bounce page.
        let pa = d.translate(a.as_u64(), true).unwrap();
        p.mem().write(PhysAddr::new(pa), &[0x99; 64]);
    }
    dev.unmap_single(a, 64, DmaDirection::Bidirectional)
        .unwrap();
    let mut got = [0u8; 64];
    page.read(0x40, &mut got);
    assert_eq!(got, [0x99; 64], "the device's write did not come back");
    assert!(sink.take().is_empty());
    // A whole page is mapped as it is: nothing shares it.
    let whole = DmaBuf::alloc(p, 4096).unwrap();
    let wp = whole.phys();
    let s = DmaStream::<ToDevice>::map(&dev, whole).unwrap();
    assert_eq!(
        dom.lock().translate(s.dma_addr().as_u64(), false),
        Some(wp.as_u64())
    );
}

/// The same mapping for a trusted device exposes the whole page (the class of
/// attack the bounce answers).
#[test]
fn a_trusted_device_sees_the_rest_of_a_sub_page_buffers_page() {
    let p = machine();
    let (dev, dom, _) = iommu_edu(p);
    let mut page = DmaBuf::alloc(p, 4096).unwrap();
    page.write(0x800, b"top-secret-key!!");
    let a = dev
        .map_owned(page.phys(), 64, DmaDirection::ToDevice)
        .unwrap();
    let pa = dom.lock().translate(a.as_u64() + 0x800, false).unwrap();
    assert_eq!(p.bytes(pa, 16), b"top-secret-key!!");
    dev.unmap_single(a, 64, DmaDirection::ToDevice).unwrap();
}
