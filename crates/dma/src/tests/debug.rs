//! Every dma-debug detection: the event, its fields, the counters, and the error.

use super::*;
use crate::debug::{global_count, DebugKind};
use crate::{
    dma_bit_mask, DmaBuf, DmaError, DmaStream, FromDevice, MapType, Via, DMA_MAPPING_ERROR,
};

const NAME: &str = "0000:00:03.0 edu";

fn setup() -> (
    &'static TestPlatform,
    std::sync::Arc<DmaDevice>,
    Arc<Collect>,
    DmaBuf,
) {
    let p = machine();
    let (dev, sink) = edu(p, DmaBackend::Swiotlb(swiotlb(p)));
    let buf = DmaBuf::alloc_below(p, 8192, dma_bit_mask(24)).unwrap();
    (p, dev, sink, buf)
}

fn one(sink: &Collect, kind: DebugKind) -> DebugEvent {
    let evs = sink.take();
    assert_eq!(evs.len(), 1, "expected exactly one report, got {evs:#?}");
    assert_eq!(evs[0].kind, kind);
    assert_eq!(&*evs[0].device, NAME);
    evs[0].clone()
}

#[test]
fn unmap_of_never_mapped_address() {
    let (_p, dev, sink, _buf) = setup();
    let e = dev
        .unmap_single(DmaAddr::new(0x123000), 64, DmaDirection::ToDevice)
        .unwrap_err();
    assert!(matches!(e, DmaError::NotMapped { .. }));
    let ev = one(&sink, DebugKind::UnmapNotMapped);
    assert_eq!(
        (ev.addr, ev.size, ev.dir),
        (DmaAddr::new(0x123000), 64, Some(DmaDirection::ToDevice))
    );
    assert!(ev.original.is_none());
    assert_eq!(dev.debug_count(DebugKind::UnmapNotMapped), 1);
    assert!(ev.to_string().contains("has not allocated"));
    assert!(ev.to_string().starts_with("DMA-API: 0000:00:03.0 edu: "));
}

#[test]
fn unmap_of_the_error_cookie() {
    let (_p, dev, sink, _buf) = setup();
    assert!(dev
        .unmap_single(DMA_MAPPING_ERROR, 64, DmaDirection::ToDevice)
        .is_err());
    one(&sink, DebugKind::UnmapInvalidAddress);
}

#[test]
fn double_unmap_names_the_original() {
    let (_p, dev, sink, buf) = setup();
    let a = dev
        .map_owned(buf.phys(), 100, DmaDirection::FromDevice)
        .unwrap();
    dev.unmap_single(a, 100, DmaDirection::FromDevice).unwrap();
    assert!(sink.take().is_empty());
    let e = dev
        .unmap_single(a, 100, DmaDirection::FromDevice)
        .unwrap_err();
    assert!(matches!(e, DmaError::NotMapped { addr, .. } if addr == a));
    let ev = one(&sink, DebugKind::DoubleUnmap);
    let o = ev.original.unwrap();
    assert_eq!(
        (o.addr, o.size, o.dir, o.phys, o.via),
        (a, 100, DmaDirection::FromDevice, buf.phys(), Via::Direct)
    );
}

#[test]
fn unmap_with_a_different_size_uses_the_real_one() {
    let p = machine();
    let pool = swiotlb(p);
    let (dev, sink) = edu(p, DmaBackend::Swiotlb(pool.clone()));
    let buf = DmaBuf::alloc(p, 8192).unwrap(); // high: bounced
    let a = dev
        .map_owned(buf.phys(), 5000, DmaDirection::FromDevice)
        .unwrap();
    device_write(p, a.checked_add(4999).unwrap(), &[0x77]);
    dev.unmap_single(a, 100, DmaDirection::FromDevice).unwrap();
    let ev = one(&sink, DebugKind::UnmapSizeMismatch);
    assert_eq!(ev.size, 100);
    assert_eq!(ev.original.unwrap().size, 5000);
    // The whole mapping was released and copied back, not just 100 bytes.
    assert_eq!(pool.stats().used_slots, 0);
    assert_eq!(buf.to_vec()[4999], 0x77);
}

#[test]
fn unmap_with_a_different_direction() {
    let (_p, dev, sink, buf) = setup();
    let a = dev
        .map_owned(buf.phys(), 100, DmaDirection::ToDevice)
        .unwrap();
    dev.unmap_single(a, 100, DmaDirection::FromDevice).unwrap();
    let ev = one(&sink, DebugKind::UnmapDirectionMismatch);
    assert_eq!(ev.dir, Some(DmaDirection::FromDevice));
    assert_eq!(ev.original.unwrap().dir, DmaDirection::ToDevice);
    assert_eq!(dev.mapping_count(), 0);
}

#[test]
fn unmap_of_coherent_memory_through_unmap_single_is_refused() {
    let (_p, dev, sink, _buf) = setup();
    let c = dev.alloc_coherent(4096).unwrap().into_device();
    let e = dev
        .unmap_single(c.dma_addr(), 4096, DmaDirection::Bidirectional)
        .unwrap_err();
    assert!(matches!(
        e,
        DmaError::WrongMapType {
            mapped: MapType::Coherent,
            given: MapType::Single,
            ..
        }
    ));
    let ev = one(&sink, DebugKind::UnmapWrongType);
    assert_eq!(ev.original.unwrap().map_type, MapType::Coherent);
    // Still allocated, and freed cleanly later.
    assert_eq!(dev.mapping_count(), 1);
    drop(c);
    assert_eq!(dev.mapping_count(), 0);
    assert!(sink.take().is_empty());
}

#[test]
fn sync_of_unmapped_memory() {
    let (_p, dev, sink, buf) = setup();
    let a = dev
        .map_owned(buf.phys(), 100, DmaDirection::FromDevice)
        .unwrap();
    dev.unmap_single(a, 100, DmaDirection::FromDevice).unwrap();
    let e = dev
        .sync_single_for_cpu(a, 100, DmaDirection::FromDevice)
        .unwrap_err();
    assert!(matches!(e, DmaError::NotMapped { .. }));
    one(&sink, DebugKind::SyncNotMapped);
}

#[test]
fn sync_past_the_end_of_the_mapping() {
    let (_p, dev, sink, buf) = setup();
    let a = dev
        .map_owned(buf.phys(), 100, DmaDirection::FromDevice)
        .unwrap();
    let e = dev
        .sync_single_for_cpu(a.checked_add(50).unwrap(), 51, DmaDirection::FromDevice)
        .unwrap_err();
    assert!(matches!(e, DmaError::SyncOutOfRange { map_len: 100, .. }));
    let ev = one(&sink, DebugKind::SyncOutOfRange);
    assert_eq!(ev.original.unwrap().addr, a);
    // Exactly to the end is fine.
    dev.sync_single_for_cpu(a.checked_add(50).unwrap(), 50, DmaDirection::FromDevice)
        .unwrap();
    assert!(sink.take().is_empty());
}

#[test]
fn sync_in_the_wrong_direction() {
    let (_p, dev, sink, buf) = setup();
    // ToDevice mapping synced for the CPU as FromDevice: different direction, and
    // syncing device read-only memory for the CPU.
    let a = dev
        .map_owned(buf.phys(), 100, DmaDirection::ToDevice)
        .unwrap();
    dev.sync_single_for_cpu(a, 100, DmaDirection::FromDevice)
        .unwrap();
    let evs = sink.take();
    let kinds: Vec<_> = evs.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            DebugKind::SyncDirectionMismatch,
            DebugKind::SyncReadOnlyForCpu
        ]
    );
    assert_eq!(evs[0].original.unwrap().dir, DmaDirection::ToDevice);
    // Linux allows sync_for_cpu(TO_DEVICE) of a TO_DEVICE mapping (a no-op).
    dev.sync_single_for_cpu(a, 100, DmaDirection::ToDevice)
        .unwrap();
    assert!(sink.take().is_empty());
    // FromDevice mapping synced for the device as ToDevice.
    let b = dev
        .map_owned(buf.phys() + 0x1000u64, 100, DmaDirection::FromDevice)
        .unwrap();
    dev.sync_single_for_device(b, 100, DmaDirection::ToDevice)
        .unwrap();
    let kinds: Vec<_> = sink.take().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            DebugKind::SyncDirectionMismatch,
            DebugKind::SyncWriteOnlyForDevice
        ]
    );
    // Handing a FromDevice buffer back with FromDevice is the documented pattern.
    dev.sync_single_for_device(b, 100, DmaDirection::FromDevice)
        .unwrap();
    // A bidirectional mapping accepts any direction.
    let c = dev
        .map_owned(buf.phys() + 0x1800u64, 100, DmaDirection::Bidirectional)
        .unwrap();
    dev.sync_single_for_cpu(c, 100, DmaDirection::ToDevice)
        .unwrap();
    dev.sync_single_for_device(c, 100, DmaDirection::FromDevice)
        .unwrap();
    assert!(sink.take().is_empty());
    assert_eq!(dev.debug_count(DebugKind::SyncDirectionMismatch), 2);
}

#[test]
fn mapping_outside_the_mask_without_a_fixing_backend() {
    let p = machine();
    let (dev, sink) = edu(p, DmaBackend::Direct);
    let buf = DmaBuf::alloc(p, 4096).unwrap();
    let before = global_count(DebugKind::MaskViolation);
    assert!(matches!(
        dev.map_owned(buf.phys(), 4096, DmaDirection::ToDevice),
        Err(DmaError::MaskViolation { .. })
    ));
    let ev = one(&sink, DebugKind::MaskViolation);
    assert_eq!(ev.mask, Some(dma_bit_mask(28)));
    assert_eq!(ev.addr.as_u64(), buf.phys().as_u64());
    assert!(global_count(DebugKind::MaskViolation) > before);
    assert_eq!(dev.mapping_count(), 0);
}

#[test]
fn leaks_at_driver_removal() {
    let (p, dev, sink, buf) = setup();
    assert_eq!(dev.check_leaks(), 0);
    assert!(sink.take().is_empty());
    let a = dev
        .map_owned(buf.phys(), 100, DmaDirection::ToDevice)
        .unwrap();
    let s = DmaStream::<FromDevice>::map(&dev, DmaBuf::alloc(p, 10).unwrap()).unwrap();
    let c = dev.alloc_coherent(10).unwrap();
    assert_eq!(dev.check_leaks(), 3);
    let ev = one(&sink, DebugKind::Leak);
    assert_eq!(ev.count, 3);
    assert_eq!(ev.original.unwrap().addr, a, "one leaked entry named");
    assert!(ev.to_string().contains("[count=3]"));
    drop((s, c));
    dev.unmap_single(a, 100, DmaDirection::ToDevice).unwrap();
    assert_eq!(dev.check_leaks(), 0);
    assert!(sink.take().is_empty());
}

#[test]
fn global_sink_receives_reports_of_devices_without_their_own() {
    // The global sink is process-wide: use a unique device name and filter on it.
    static SINK: Collect = Collect(Mutex::new(Vec::new()));
    crate::debug::set_global_sink(&SINK);
    let p = machine();
    let dev = DmaDevice::new("global-sink-test", p, DmaBackend::Direct);
    let _ = dev.unmap_single(DmaAddr::new(0x5000), 1, DmaDirection::ToDevice);
    let mine: Vec<_> = SINK
        .take()
        .into_iter()
        .filter(|e| &*e.device == "global-sink-test")
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].kind, DebugKind::UnmapNotMapped);
}
