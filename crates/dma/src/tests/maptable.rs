//! The map path without dma-debug: unmap and sync find their mapping (bounce slot,
//! IOVA length) in the device's own table. These tests run with and without the
//! `debug` feature; without it the registry does not exist at all.

use super::*;
use crate::{dma_bit_mask, DmaBuf, DmaError};

#[test]
fn the_registry_is_compiled_in_only_with_the_feature() {
    assert_eq!(crate::debug::ENABLED, cfg!(feature = "debug"));
}

/// Many bounced mappings live at once, unmapped out of order: each unmap and sync
/// finds its own slots (by bus address, also from inside a mapping) and copies back
/// its own bytes.
#[test]
fn unmap_and_sync_find_bounced_mappings_without_the_registry() {
    let p = machine();
    let (dev, sink) = edu(p, DmaBackend::Swiotlb(swiotlb(p)));
    let bufs: Vec<DmaBuf> = (0..32)
        .map(|_| DmaBuf::alloc_below(p, 512, u64::MAX).unwrap())
        .collect();
    // Above the 28-bit mask: every one bounces.
    assert!(bufs.iter().all(|b| b.phys().as_u64() > dma_bit_mask(28)));
    let maps: Vec<DmaAddr> = bufs
        .iter()
        .map(|b| {
            dev.map_owned(b.phys(), 512, DmaDirection::FromDevice)
                .unwrap()
        })
        .collect();
    assert_eq!(dev.mapping_count(), 32);
    for (i, &dma) in maps.iter().enumerate() {
        device_write(p, dma, &[i as u8; 512]);
    }
    // A sync from the middle of mapping 5 copies only its second half.
    dev.sync_single_for_cpu(
        maps[5].checked_add(256).unwrap(),
        256,
        DmaDirection::FromDevice,
    )
    .unwrap();
    assert_eq!(p.bytes(bufs[5].phys().as_u64() + 256, 256), vec![5u8; 256]);
    assert_ne!(p.bytes(bufs[5].phys().as_u64(), 1), vec![5u8]);
    // Unmap in a scrambled order; each copies back its own device bytes.
    for k in 0..32 {
        let i = (k * 7) % 32;
        dev.unmap_single(maps[i], 512, DmaDirection::FromDevice)
            .unwrap();
        assert_eq!(
            p.bytes(bufs[i].phys().as_u64(), 512),
            vec![i as u8; 512],
            "mapping {i}"
        );
    }
    assert_eq!(dev.mapping_count(), 0);
    assert_eq!(swiotlb_used(&dev), 0, "every slot released");
    // Unknown addresses are still refused, registry or not.
    assert!(matches!(
        dev.unmap_single(maps[0], 512, DmaDirection::FromDevice),
        Err(DmaError::NotMapped { .. })
    ));
    assert!(matches!(
        dev.sync_single_for_cpu(maps[1], 1, DmaDirection::FromDevice),
        Err(DmaError::NotMapped { .. })
    ));
    // Exactly the misuse reports, and only with the feature.
    let reports = sink.take();
    assert_eq!(reports.len(), if cfg!(feature = "debug") { 2 } else { 0 });
}

/// The same buffer mapped twice directly has one bus address twice: each unmap
/// takes one record, and a sync past the end of the mapping is refused.
#[test]
fn one_address_mapped_twice_directly_unmaps_twice() {
    let p = machine();
    let (dev, _sink) = edu(p, DmaBackend::Direct);
    let buf = DmaBuf::alloc_below(p, 4096, dma_bit_mask(28)).unwrap();
    let a = dev
        .map_owned(buf.phys(), 4096, DmaDirection::ToDevice)
        .unwrap();
    let b = dev
        .map_owned(buf.phys(), 64, DmaDirection::FromDevice)
        .unwrap();
    assert_eq!(a, b);
    // Inside the 4 KiB one but past the 64-byte one: the lookup picks by direction.
    dev.sync_single_for_device(a.checked_add(100).unwrap(), 8, DmaDirection::ToDevice)
        .unwrap();
    assert!(matches!(
        dev.sync_single_for_cpu(a.checked_add(4000).unwrap(), 200, DmaDirection::ToDevice),
        Err(DmaError::SyncOutOfRange { .. })
    ));
    dev.unmap_single(b, 64, DmaDirection::FromDevice).unwrap();
    dev.unmap_single(a, 4096, DmaDirection::ToDevice).unwrap();
    assert_eq!(dev.mapping_count(), 0);
}

fn swiotlb_used(dev: &DmaDevice) -> usize {
    match dev.backend() {
        DmaBackend::Swiotlb(s) => s.stats().used_slots,
        _ => 0,
    }
}
