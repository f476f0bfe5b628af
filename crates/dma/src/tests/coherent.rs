//! Coherent allocations: zeroing, zone choice from the coherent mask, two phases, free.

use super::*;
use crate::{dma_bit_mask, DmaError, MapType, ZONE_DMA32_LIMIT, ZONE_DMA_LIMIT};

#[test]
fn coherent_memory_is_zeroed_even_when_reused() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Direct);
    // Dirty the first ZONE_DMA pages, then give them back.
    let dirty = p.alloc_pages(1, ZONE_DMA_LIMIT).unwrap();
    p.fill(dirty, 0xAA, 8192);
    p.free_pages(dirty, 1);
    let c = dev.alloc_coherent(5000).unwrap();
    assert_eq!(c.len(), 5000);
    assert!(c.as_slice().iter().all(|&b| b == 0));
    let d = c.into_device();
    assert_eq!(
        d.dma_addr().as_u64(),
        dirty.as_u64(),
        "same pages, now zeroed"
    );
    assert_eq!(
        p.bytes(dirty.as_u64(), 8192),
        vec![0; 8192],
        "whole block zeroed"
    );
}

#[test]
fn zone_comes_from_the_coherent_mask_with_linux_retry() {
    let p = machine();
    let dev = DmaDevice::new("d", p, DmaBackend::Direct);
    // 28 bits: DMA32 first (which hands out 512 MiB here, above the mask), retry in DMA.
    dev.set_coherent_mask(dma_bit_mask(28)).unwrap();
    let c = dev.alloc_coherent(4096).unwrap().into_device();
    assert!(c.dma_addr().as_u64() + 4095 <= dma_bit_mask(28));
    assert_eq!(
        *p.alloc_limits.lock().unwrap(),
        vec![dma_bit_mask(28), ZONE_DMA_LIMIT]
    );
    assert_eq!(p.pages_in_use(), 1, "the too-high block was given back");
    // 32 bits: DMA32 is fine.
    dev.set_coherent_mask(dma_bit_mask(32)).unwrap();
    let c32 = dev.alloc_coherent(4096).unwrap().into_device();
    assert!(c32.dma_addr().as_u64() >= MID && c32.dma_addr().as_u64() <= ZONE_DMA32_LIMIT);
    // 64 bits: anywhere (the highest zone first).
    dev.set_coherent_mask(u64::MAX).unwrap();
    let c64 = dev.alloc_coherent(4096).unwrap().into_device();
    assert!(c64.dma_addr().as_u64() >= HIGH);
    // 24 bits: ZONE_DMA directly.
    dev.set_coherent_mask(dma_bit_mask(24)).unwrap();
    let c24 = dev.alloc_coherent(4096).unwrap().into_device();
    assert!(c24.dma_addr().as_u64() <= ZONE_DMA_LIMIT);
}

#[test]
fn two_phases_and_free_on_drop() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Direct);
    let mut c = dev.alloc_coherent(64).unwrap();
    c.as_mut_slice()[..4].copy_from_slice(&[1, 2, 3, 4]);
    *c.pod_mut::<u64>(8).unwrap() = 0x1122_3344_5566_7788;
    assert!(c.pod_mut::<u64>(60).is_none(), "past the end");
    assert!(c.pod_mut::<u32>(2).is_none(), "misaligned");
    let d = c.into_device();
    // The device sees the CPU's bytes at the bus address.
    assert_eq!(device_read(p, d.dma_addr(), 4), vec![1, 2, 3, 4]);
    assert_eq!(d.read::<u64>(8), 0x1122_3344_5566_7788);
    // The device writes; the CPU reads volatile.
    device_write(
        p,
        d.dma_addr().checked_add(16).unwrap(),
        &0xCAFEu32.to_le_bytes(),
    );
    assert_eq!(d.read::<u32>(16), 0xCAFE);
    d.write::<u16>(20, 0xBEEF);
    assert_eq!(
        device_read(p, d.dma_addr().checked_add(20).unwrap(), 2),
        vec![0xEF, 0xBE]
    );
    let mut b = [0u8; 4];
    d.read_bytes(0, &mut b);
    assert_eq!(b, [1, 2, 3, 4]);
    let info = dev.mappings();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].map_type, MapType::Coherent);
    assert_eq!(p.pages_in_use(), 1);
    drop(d);
    assert_eq!(p.pages_in_use(), 0);
    assert_eq!(dev.mapping_count(), 0);
}

#[test]
#[should_panic(expected = "outside 64 bytes")]
fn device_phase_access_out_of_bounds_panics() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Direct);
    let d = dev.alloc_coherent(64).unwrap().into_device();
    let _ = d.read::<u32>(62);
}

#[test]
fn sizes_round_up_to_power_of_two_pages_aligned_to_size() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Direct);
    let d = dev.alloc_coherent(3 * 4096 + 1).unwrap().into_device();
    assert_eq!(d.dma_addr().as_u64() % (4 * 4096), 0);
    assert_eq!(p.pages_in_use(), 4);
    assert!(matches!(
        dev.alloc_coherent(0),
        Err(DmaError::ZeroLength { .. })
    ));
}

#[test]
fn coherent_out_of_memory_is_an_error() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Direct);
    // ZONE_DMA here is 2 MiB: a 4 MiB block cannot exist under 28 bits.
    let e = dev.alloc_coherent(4 << 20).unwrap_err();
    assert!(matches!(e, DmaError::OutOfMemory { limit, .. } if limit == dma_bit_mask(28)));
    assert_eq!(p.pages_in_use(), 0);
}
