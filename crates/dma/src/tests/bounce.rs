//! Streaming mappings: mask selection, swiotlb copies per direction and per sync, slot
//! allocation rules, typed streams.

use super::*;
use crate::swiotlb::{IO_TLB_SIZE, MAX_MAPPING};
use crate::{dma_bit_mask, Bidirectional, DmaBuf, DmaError, DmaStream, FromDevice, ToDevice, Via};

fn in_swiotlb(a: DmaAddr) -> bool {
    a.as_u64() >= SWIOTLB_BASE && a.as_u64() < SWIOTLB_BASE + SWIOTLB_SIZE as u64
}

/// A buffer in high memory (above 4 GiB), filled with `data`.
fn high_buf(p: &'static TestPlatform, data: &[u8]) -> DmaBuf {
    let mut b = DmaBuf::alloc(p, data.len()).unwrap();
    assert!(b.phys().as_u64() >= HIGH);
    b.write(0, data);
    b
}

#[test]
fn buffer_under_the_mask_maps_direct() {
    let p = machine();
    let pool = swiotlb(p);
    let (dev, _) = edu(p, DmaBackend::Swiotlb(pool.clone()));
    let buf = DmaBuf::alloc_below(p, 4096, dma_bit_mask(28)).unwrap();
    let phys = buf.phys();
    let s = DmaStream::<ToDevice>::map(&dev, buf).unwrap();
    assert_eq!(s.dma_addr().as_u64(), phys.as_u64());
    assert_eq!(pool.stats().used_slots, 0);
    assert_eq!(dev.mappings()[0].via, Via::Direct);
}

#[test]
fn buffer_above_the_mask_bounces_or_fails_without_swiotlb() {
    let p = machine();
    let data = pattern(3000, 7);
    // Swiotlb backend: bounced.
    let (dev, _) = edu(p, DmaBackend::Swiotlb(swiotlb(p)));
    let s = DmaStream::<ToDevice>::map(&dev, high_buf(p, &data)).unwrap();
    assert!(in_swiotlb(s.dma_addr()));
    assert_eq!(dev.mappings()[0].via, Via::Bounce);
    drop(s);
    // Direct backend: a typed error naming device, address and mask.
    let (dev, sink) = edu(p, DmaBackend::Direct);
    let buf = high_buf(p, &data);
    let phys = buf.phys();
    let err = DmaStream::<ToDevice>::map(&dev, buf).unwrap_err();
    assert_eq!(
        err.error,
        DmaError::MaskViolation {
            device: "0000:00:03.0 edu".into(),
            phys,
            len: 3000,
            mask: dma_bit_mask(28),
        }
    );
    assert!(err.error.to_string().contains("0000:00:03.0 edu"));
    assert_eq!(err.buf.to_vec(), data, "buffer given back untouched");
    // The mask violation is reported when dma-debug is built in.
    assert_eq!(sink.take().len(), usize::from(crate::debug::ENABLED));
    // A 64-bit mask needs no bounce, even for high memory.
    let (dev, _) = edu(p, DmaBackend::Swiotlb(swiotlb(p)));
    dev.set_mask(u64::MAX).unwrap();
    let buf = high_buf(p, &data);
    let phys = buf.phys();
    let s = DmaStream::<ToDevice>::map(&dev, buf).unwrap();
    assert_eq!(s.dma_addr().as_u64(), phys.as_u64());
}

#[test]
fn force_bounce_bounces_even_low_buffers() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Swiotlb(swiotlb(p)));
    dev.set_force_bounce(true);
    let buf = DmaBuf::alloc_below(p, 100, dma_bit_mask(24)).unwrap();
    let s = DmaStream::<Bidirectional>::map(&dev, buf).unwrap();
    assert!(in_swiotlb(s.dma_addr()));
}

#[test]
fn to_device_copies_at_map_and_sync_for_device_only() {
    let p = machine();
    let pool = swiotlb(p);
    let (dev, _) = edu(p, DmaBackend::Swiotlb(pool.clone()));
    let data = pattern(5000, 1);
    let mut s = DmaStream::<ToDevice>::map(&dev, high_buf(p, &data)).unwrap();
    let dma = s.dma_addr();
    // Map: orig → bounce.
    assert_eq!(device_read(p, dma, 5000), data);
    // CPU changes the buffer: the device sees it only after sync_for_device.
    let newer = pattern(5000, 99);
    {
        let mut w = s.cpu_write();
        w.write(0, &newer);
        assert_eq!(
            device_read(p, dma, 5000),
            data,
            "no copy before sync_for_device"
        );
        w.sync_for_device();
    }
    assert_eq!(device_read(p, dma, 5000), newer);
    // A (misbehaving) device write into a ToDevice bounce never comes back.
    device_write(p, dma, &[0xEE; 16]);
    let buf = s.unmap();
    assert_eq!(buf.to_vec(), newer, "ToDevice: no copy back on unmap");
    assert_eq!(pool.stats().used_slots, 0);
}

#[test]
fn from_device_copies_back_at_sync_for_cpu_and_unmap() {
    let p = machine();
    let pool = swiotlb(p);
    let (dev, _) = edu(p, DmaBackend::Swiotlb(pool.clone()));
    let orig = pattern(4096, 3);
    let mut s = DmaStream::<FromDevice>::map(&dev, high_buf(p, &orig)).unwrap();
    let dma = s.dma_addr();
    // Map pre-fills the bounce with the original (Linux does this for FROM_DEVICE).
    assert_eq!(device_read(p, dma, 4096), orig);
    // Device writes part; the original is unchanged until sync_for_cpu.
    let dev_data = pattern(1000, 200);
    device_write(p, dma, &dev_data);
    {
        let v = s.sync_for_cpu();
        let got = v.to_vec();
        assert_eq!(&got[..1000], &dev_data[..]);
        assert_eq!(
            &got[1000..],
            &orig[1000..],
            "unwritten bytes keep the original"
        );
        // Handing back (drop) copies nothing to the bounce.
    }
    // Device writes again; unmap copies back.
    device_write(p, dma.checked_add(2000).unwrap(), &[0x55; 10]);
    let buf = s.unmap();
    let got = buf.to_vec();
    assert_eq!(&got[2000..2010], &[0x55; 10]);
    assert_eq!(&got[..1000], &dev_data[..]);
    assert_eq!(pool.stats().used_slots, 0);
}

#[test]
fn bidirectional_copies_both_ways() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Swiotlb(swiotlb(p)));
    let orig = pattern(256, 9);
    let mut s = DmaStream::<Bidirectional>::map(&dev, high_buf(p, &orig)).unwrap();
    let dma = s.dma_addr();
    assert_eq!(device_read(p, dma, 256), orig);
    device_write(p, dma, &[1, 2, 3]);
    {
        let mut v = s.sync_for_cpu();
        let mut b = [0u8; 3];
        v.read(0, &mut b);
        assert_eq!(b, [1, 2, 3]);
        v.write(10, &[9, 9]);
        assert_eq!(
            device_read(p, dma.checked_add(10).unwrap(), 2),
            orig[10..12]
        );
    } // sync_for_device: orig → bounce
    assert_eq!(device_read(p, dma.checked_add(10).unwrap(), 2), [9, 9]);
    device_write(p, dma.checked_add(100).unwrap(), &[7]);
    let got = s.unmap().to_vec();
    assert_eq!(got[100], 7);
    assert_eq!(&got[..3], &[1, 2, 3]);
}

#[test]
fn raw_layer_syncs_partial_ranges_by_direction() {
    let p = machine();
    let (dev, sink) = edu(p, DmaBackend::Swiotlb(swiotlb(p)));
    let buf = high_buf(p, &pattern(8192, 0));
    let orig = buf.phys();
    let dma = dev.map_owned(orig, 8192, DmaDirection::FromDevice).unwrap();
    device_write(p, dma.checked_add(4096).unwrap(), &[0xAB; 64]);
    device_write(p, dma, &[0xCD; 64]);
    // Sync only the second page for the CPU (dma_sync_single_range_for_cpu).
    dev.sync_single_for_cpu(
        dma.checked_add(4096).unwrap(),
        4096,
        DmaDirection::FromDevice,
    )
    .unwrap();
    assert_eq!(p.bytes(orig.as_u64() + 4096, 64), vec![0xAB; 64]);
    assert_eq!(p.bytes(orig.as_u64(), 64), pattern(8192, 0)[..64].to_vec());
    // sync_for_device(FromDevice) copies nothing to the bounce.
    p.write(orig, &[0x11; 64]);
    dev.sync_single_for_device(dma, 64, DmaDirection::FromDevice)
        .unwrap();
    assert_eq!(device_read(p, dma, 64), vec![0xCD; 64]);
    dev.unmap_single(dma, 8192, DmaDirection::FromDevice)
        .unwrap();
    assert_eq!(p.bytes(orig.as_u64(), 64), vec![0xCD; 64]);
    assert!(sink.take().is_empty(), "correct use reports nothing");
}

#[test]
fn swiotlb_full_then_success_after_unmap() {
    let p = machine();
    let pool = swiotlb(p);
    let (dev, _) = edu(p, DmaBackend::Swiotlb(pool.clone()));
    let buf = high_buf(p, &pattern(MAX_MAPPING, 0));
    let total = SWIOTLB_SIZE / IO_TLB_SIZE;
    // Two 128-slot mappings fill the 256-slot pool.
    let a = dev
        .map_owned(buf.phys(), MAX_MAPPING, DmaDirection::ToDevice)
        .unwrap();
    let b = dev
        .map_owned(buf.phys(), MAX_MAPPING, DmaDirection::ToDevice)
        .unwrap();
    assert_ne!(a, b);
    let st = pool.stats();
    assert_eq!(
        (st.used_slots, st.total_slots, st.mappings),
        (total, total, 2)
    );
    let err = dev
        .map_owned(buf.phys(), 1, DmaDirection::ToDevice)
        .unwrap_err();
    assert_eq!(
        err,
        DmaError::SwiotlbFull {
            device: "0000:00:03.0 edu".into(),
            size: 1,
            used: total,
            total,
        }
    );
    assert_eq!(pool.stats().full_failures, 1);
    dev.unmap_single(a, MAX_MAPPING, DmaDirection::ToDevice)
        .unwrap();
    let c = dev
        .map_owned(buf.phys(), 1, DmaDirection::ToDevice)
        .unwrap();
    assert_eq!(c, a, "first fit reuses the freed slots");
    let st = pool.stats();
    assert_eq!((st.used_slots, st.high_water), (128 + 1, total));
    dev.unmap_single(b, MAX_MAPPING, DmaDirection::ToDevice)
        .unwrap();
    dev.unmap_single(c, 1, DmaDirection::ToDevice).unwrap();
    assert_eq!(pool.stats().used_slots, 0);
}

#[test]
fn mapping_larger_than_128_slots_is_refused() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Swiotlb(swiotlb(p)));
    let buf = high_buf(p, &pattern(MAX_MAPPING + 1, 0));
    let err = dev
        .map_owned(buf.phys(), MAX_MAPPING + 1, DmaDirection::ToDevice)
        .unwrap_err();
    assert!(
        matches!(err, DmaError::MappingTooLarge { size, max, .. } if size == MAX_MAPPING + 1 && max == MAX_MAPPING)
    );
}

#[test]
fn mappings_never_straddle_a_128_slot_segment() {
    let p = machine();
    let pool = swiotlb(p);
    let (dev, _) = edu(p, DmaBackend::Swiotlb(pool.clone()));
    let buf = high_buf(p, &pattern(MAX_MAPPING, 0));
    // 100 slots at 0, then 50 slots: 100+50 > 128, so the second starts at slot 128.
    let a = dev
        .map_owned(buf.phys(), 100 * IO_TLB_SIZE, DmaDirection::ToDevice)
        .unwrap();
    let b = dev
        .map_owned(buf.phys(), 50 * IO_TLB_SIZE, DmaDirection::ToDevice)
        .unwrap();
    assert_eq!(a.as_u64(), SWIOTLB_BASE);
    assert_eq!(b.as_u64(), SWIOTLB_BASE + (128 * IO_TLB_SIZE) as u64);
    // A small one still fits in the first segment's tail.
    let c = dev
        .map_owned(buf.phys(), 10, DmaDirection::ToDevice)
        .unwrap();
    assert_eq!(c.as_u64(), SWIOTLB_BASE + (100 * IO_TLB_SIZE) as u64);
}

#[test]
fn bounce_slot_alignment_follows_linux() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Swiotlb(swiotlb(p)));
    let buf = high_buf(p, &pattern(16384, 0));
    let base = buf.phys().as_u64();
    // No min_align_mask: a small mapping at an odd offset starts on a slot (2 KiB),
    // the original offset is not kept.
    let _pad = dev
        .map_owned(buf.phys(), 10, DmaDirection::ToDevice)
        .unwrap(); // slot 0
    let a = dev
        .map_owned(PhysAddr::new(base + 0x123), 100, DmaDirection::ToDevice)
        .unwrap();
    assert_eq!(a.as_u64() % IO_TLB_SIZE as u64, 0);
    assert_eq!(
        a.as_u64(),
        SWIOTLB_BASE + IO_TLB_SIZE as u64,
        "next free slot"
    );
    // A page or more: page-aligned slot.
    let b = dev
        .map_owned(PhysAddr::new(base + 0x10), 4096, DmaDirection::ToDevice)
        .unwrap();
    assert_eq!(b.as_u64() % 4096, 0);
    // min_align_mask 4 KiB − 1 (NVMe): the low 12 bits of the original are kept.
    dev.set_min_align_mask(0xFFF);
    for off in [0x0u64, 0x10, 0x7FF, 0x800, 0x9A4, 0xFFF] {
        let o = PhysAddr::new(base + 0x2000 + off);
        let t = dev.map_owned(o, 300, DmaDirection::ToDevice).unwrap();
        assert_eq!(t.as_u64() & 0xFFF, off, "offset {off:#x} kept");
        // The bytes are at the kept offset.
        assert_eq!(device_read(p, t, 300), p.bytes(o.as_u64(), 300));
    }
}

#[test]
fn bounce_respects_the_device_segment_boundary() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Swiotlb(swiotlb(p)));
    dev.set_segment_boundary(0x1FFF); // 8 KiB
    let buf = high_buf(p, &pattern(8192, 0));
    let _a = dev
        .map_owned(buf.phys(), 2 * IO_TLB_SIZE, DmaDirection::ToDevice)
        .unwrap(); // slots 0-1
                   // 3 slots (6 KiB) would cross 8 KiB from slot 2 or 3: placed at slot 4 (8 KiB).
    let b = dev
        .map_owned(buf.phys(), 3 * IO_TLB_SIZE, DmaDirection::ToDevice)
        .unwrap();
    assert_eq!(b.as_u64(), SWIOTLB_BASE + 0x2000);
}

#[test]
fn set_mask_follows_platform_limits() {
    let p = machine();
    let pool = swiotlb(p);
    let dev = DmaDevice::new("d", p, DmaBackend::Direct);
    // Linux defaults: 32-bit masks.
    assert_eq!(dev.params().dma_mask, dma_bit_mask(32));
    assert_eq!(dev.params().coherent_dma_mask, dma_bit_mask(32));
    assert_eq!(dev.params().max_segment_size, 65536);
    assert_eq!(dev.params().segment_boundary_mask, 0xFFFF_FFFF);
    // 24 bits covers ZONE_DMA: fine. 21 bits does not, and there is no bounce pool.
    dev.set_mask_and_coherent(dma_bit_mask(24)).unwrap();
    let e = dev.set_mask(dma_bit_mask(21)).unwrap_err();
    assert_eq!(
        e,
        DmaError::MaskUnsupported {
            device: "d".into(),
            mask: dma_bit_mask(21),
            coherent: false
        }
    );
    assert!(dev.set_mask(0).is_err());
    // With a swiotlb below 2 MiB, a 21-bit streaming mask can be served by bouncing…
    dev.set_backend(DmaBackend::Swiotlb(pool));
    dev.set_mask(dma_bit_mask(21)).unwrap();
    // …but coherent memory never bounces.
    assert!(dev.set_coherent_mask(dma_bit_mask(21)).is_err());
    // set_mask_and_coherent changes neither when one fails.
    dev.set_mask(dma_bit_mask(32)).unwrap();
    assert!(dev.set_mask_and_coherent(dma_bit_mask(21)).is_err());
    assert_eq!(dev.params().dma_mask, dma_bit_mask(32));
    assert_eq!(dev.params().coherent_dma_mask, dma_bit_mask(24));
    // 64 bits: always.
    dev.set_mask_and_coherent(u64::MAX).unwrap();
}

#[test]
fn mask_check_counts_the_last_byte() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Swiotlb(swiotlb(p)));
    // A mask ending inside LOW RAM (a swiotlb pool under it makes any mask usable):
    // [LOW, LOW + 0x2000) is reachable, LOW + 0x2000 is not.
    let mask = LOW + 0x1fff;
    dev.set_mask(mask).unwrap();
    let dir = DmaDirection::ToDevice;
    let fits = dev
        .map_owned(PhysAddr::new(LOW + 0x1000), 0x1000, dir)
        .unwrap();
    assert_eq!(
        fits.as_u64(),
        LOW + 0x1000,
        "a buffer whose last byte is the mask itself maps direct"
    );
    let over = dev
        .map_owned(PhysAddr::new(LOW + 0x1001), 0x1000, dir)
        .unwrap();
    assert!(
        in_swiotlb(over),
        "a buffer one byte over the mask bounces (got {:#x})",
        over.as_u64()
    );
    let above = dev.map_owned(PhysAddr::new(LOW + 0x2000), 1, dir).unwrap();
    assert!(
        in_swiotlb(above),
        "a byte just above the mask bounces (got {:#x})",
        above.as_u64()
    );
    for (a, len) in [(fits, 0x1000), (over, 0x1000), (above, 1)] {
        dev.unmap_single(a, len, dir).unwrap();
    }
    assert_eq!(dev.mapping_count(), 0);
}

#[test]
fn bounced_mapping_with_21_bit_mask_lands_under_it() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Swiotlb(swiotlb(p)));
    dev.set_mask(dma_bit_mask(21)).unwrap();
    // LOW RAM starts at 2 MiB: above 21 bits, so even ZONE_DMA memory bounces.
    let buf = DmaBuf::alloc_below(p, 64, dma_bit_mask(24)).unwrap();
    let a = dev
        .map_owned(buf.phys(), 64, DmaDirection::ToDevice)
        .unwrap();
    assert!(a.as_u64() <= dma_bit_mask(21) && in_swiotlb(a));
    dev.unmap_single(a, 64, DmaDirection::ToDevice).unwrap();
}

#[test]
fn cache_hooks_run_only_for_non_coherent_devices() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Swiotlb(swiotlb(p)));
    let buf = high_buf(p, &pattern(64, 0));
    let a = dev
        .map_owned(buf.phys(), 64, DmaDirection::Bidirectional)
        .unwrap();
    dev.sync_single_for_cpu(a, 64, DmaDirection::Bidirectional)
        .unwrap();
    dev.sync_single_for_device(a, 64, DmaDirection::Bidirectional)
        .unwrap();
    dev.unmap_single(a, 64, DmaDirection::Bidirectional)
        .unwrap();
    assert_eq!(p.cache_for_device.load(Ordering::Relaxed), 0);
    assert_eq!(p.cache_for_cpu.load(Ordering::Relaxed), 0);
    dev.set_cache_coherent(false);
    let a = dev
        .map_owned(buf.phys(), 64, DmaDirection::Bidirectional)
        .unwrap();
    assert_eq!(p.cache_for_device.load(Ordering::Relaxed), 1);
    dev.sync_single_for_cpu(a, 64, DmaDirection::Bidirectional)
        .unwrap();
    assert_eq!(p.cache_for_cpu.load(Ordering::Relaxed), 1);
    dev.sync_single_for_device(a, 64, DmaDirection::Bidirectional)
        .unwrap();
    assert_eq!(p.cache_for_device.load(Ordering::Relaxed), 2);
    dev.unmap_single(a, 64, DmaDirection::Bidirectional)
        .unwrap();
    assert_eq!(p.cache_for_cpu.load(Ordering::Relaxed), 2);
}

#[test]
fn dropping_a_stream_unmaps_and_frees() {
    let p = machine();
    let pool = swiotlb(p);
    let (dev, _) = edu(p, DmaBackend::Swiotlb(pool.clone()));
    let before = p.pages_in_use();
    let s = DmaStream::<FromDevice>::map(&dev, high_buf(p, &[0; 100])).unwrap();
    assert_eq!(dev.mapping_count(), 1);
    assert_eq!(pool.stats().used_slots, 1);
    drop(s);
    assert_eq!(dev.mapping_count(), 0);
    assert_eq!(pool.stats().used_slots, 0);
    assert_eq!(p.pages_in_use(), before);
    assert_eq!(dev.check_leaks(), 0);
}

#[test]
fn swiotlb_init_checks_the_range() {
    use crate::SwiotlbInitError;
    let p = machine();
    // SAFETY (all three): the fake machine's reserved swiotlb region, owned by this test.
    let new = |start, size| unsafe { Swiotlb::new(p, PhysAddr::new(start), size) };
    assert_eq!(
        new(SWIOTLB_BASE + 0x400, 4096).unwrap_err(),
        SwiotlbInitError::Misaligned(PhysAddr::new(SWIOTLB_BASE + 0x400))
    );
    assert_eq!(
        new(SWIOTLB_BASE, 2047).unwrap_err(),
        SwiotlbInitError::TooSmall(2047)
    );
    let s = new(SWIOTLB_BASE, 5000).unwrap();
    let st = s.stats();
    assert_eq!((st.total_slots, st.used_slots, st.size), (2, 0, 4096));
    assert_eq!(s.last(), SWIOTLB_BASE + 4095);
}

#[test]
fn required_mask_and_max_mapping_size() {
    let p = machine();
    let dev = DmaDevice::new("d", p, DmaBackend::Direct);
    // RAM tops out just above 4 GiB: 33 bits.
    assert_eq!(dev.required_mask(), dma_bit_mask(33));
    assert_eq!(dev.max_mapping_size(), usize::MAX);
    dev.set_backend(DmaBackend::Swiotlb(swiotlb(p)));
    assert_eq!(dev.max_mapping_size(), MAX_MAPPING);
    // Force-bounce without a pool does not turn good mappings into errors.
    dev.set_backend(DmaBackend::Direct);
    dev.set_force_bounce(true);
    let buf = DmaBuf::alloc_below(p, 64, dma_bit_mask(24)).unwrap();
    let a = dev
        .map_owned(buf.phys(), 64, DmaDirection::ToDevice)
        .unwrap();
    assert_eq!(a.as_u64(), buf.phys().as_u64());
    dev.unmap_single(a, 64, DmaDirection::ToDevice).unwrap();
}

mod swiotlb_prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random map/unmap sequences: live bounce ranges never overlap, each stays in one
        /// 128-slot segment, alignment rules hold, and the stats add up.
        #[test]
        fn slots_are_never_shared(
            ops in proptest::collection::vec((any::<bool>(), 1usize..40_000, 0u64..4096, any::<u8>()), 1..60),
            min_align in prop_oneof![Just(0u64), Just(0xFFFu64)],
        ) {
            let p = machine();
            let pool = swiotlb(p);
            let (dev, sink) = edu(p, DmaBackend::Swiotlb(pool.clone()));
            dev.set_min_align_mask(min_align);
            let buf = DmaBuf::alloc(p, 64 * 1024).unwrap();
            let mut live: Vec<(DmaAddr, usize)> = Vec::new();
            for (map, len, off, pick) in ops {
                if map || live.is_empty() {
                    let phys = buf.phys() + off;
                    match dev.map_owned(phys, len, DmaDirection::ToDevice) {
                        Ok(a) => {
                            let s = a.as_u64() - SWIOTLB_BASE;
                            let slot = s as usize / IO_TLB_SIZE;
                            let last = (s as usize + len - 1) / IO_TLB_SIZE;
                            prop_assert_eq!(slot / 128, last / 128, "crosses a segment");
                            if min_align != 0 {
                                prop_assert_eq!(a.as_u64() & min_align, phys.as_u64() & min_align);
                            } else {
                                prop_assert_eq!(s % IO_TLB_SIZE as u64, 0);
                                if len >= 4096 { prop_assert_eq!(a.as_u64() % 4096, 0); }
                            }
                            prop_assert_eq!(device_read(p, a, len.min(64)), p.bytes(phys.as_u64(), len.min(64)));
                            live.push((a, len));
                        }
                        Err(DmaError::SwiotlbFull { .. }) => {}
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                } else {
                    let (a, len) = live.swap_remove(pick as usize % live.len());
                    dev.unmap_single(a, len, DmaDirection::ToDevice).unwrap();
                }
                // No two live bounce ranges (rounded to slots) overlap.
                let mut r: Vec<(u64, u64)> = live
                    .iter()
                    .map(|&(a, l)| {
                        let s = (a.as_u64() - SWIOTLB_BASE) / IO_TLB_SIZE as u64;
                        let e = (a.as_u64() - SWIOTLB_BASE + l as u64 - 1) / IO_TLB_SIZE as u64;
                        (s, e)
                    })
                    .collect();
                r.sort();
                for w in r.windows(2) {
                    prop_assert!(w[0].1 < w[1].0, "slots shared: {:?}", w);
                }
                let st = pool.stats();
                prop_assert_eq!(st.mappings, live.len());
                prop_assert!(st.used_slots <= st.total_slots && st.high_water >= st.used_slots);
            }
            for (a, l) in live {
                dev.unmap_single(a, l, DmaDirection::ToDevice).unwrap();
            }
            prop_assert_eq!(pool.stats().used_slots, 0);
            prop_assert!(sink.take().is_empty());
        }
    }
}

#[test]
fn concurrent_mapping_from_several_threads() {
    let p = machine();
    let pool = swiotlb(p);
    let (dev, sink) = edu(p, DmaBackend::Swiotlb(pool.clone()));
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let dev = dev.clone();
            s.spawn(move || {
                let mut buf = DmaBuf::alloc(p, 8192).unwrap();
                for i in 0..50u8 {
                    let data = pattern(3000, t.wrapping_mul(50).wrapping_add(i));
                    buf.write(0, &data);
                    let a = dev
                        .map_owned(buf.phys(), 3000, DmaDirection::ToDevice)
                        .unwrap();
                    assert_eq!(device_read(p, a, 3000), data, "own bounce slots");
                    dev.unmap_single(a, 3000, DmaDirection::ToDevice).unwrap();
                }
            });
        }
    });
    assert_eq!(pool.stats().used_slots, 0);
    assert!(sink.take().is_empty());
}
