//! The driver against `devmodels::edu` (QEMU 7.2's edu), with its DMA through plain
//! RAM, through swiotlb under the 28-bit mask, and through the VT-d model.
// The engine takes its driver object in an `Arc` (the kernel shares it with the
// interrupt path); the tests' models are borrowed registers, not `Sync`, and one
// thread runs each test.
#![allow(clippy::arc_with_non_send_sync)]
use super::*;
use alloc::sync::Arc;
use devmodels::ahci::DmaBus;
use devmodels::edu::{EduFault, EduModel};
use dma::{DmaBackend, DmaBuf, DmaDevice, FromDevice, Swiotlb, ToDevice};
use dmaengine::{ChanEvent, DmaProvider};
use hal::PhysAddr;
use testbed::{machine, Direct, Machine, SWIOTLB_BASE, SWIOTLB_SIZE};

/// Time passes in the model until the transfer ends; a model that never ends is a timeout.
struct Tick<'a, B: DmaBus>(&'a EduModel<B>);

impl<B: DmaBus> Wait for Tick<'_, B> {
    fn wait(&mut self, busy: &dyn Fn() -> bool) -> Result<Completion, EduError> {
        self.0.tick();
        if busy() {
            Err(EduError::Timeout)
        } else {
            Ok(Completion::Polled)
        }
    }
}

fn device(m: &'static Machine, backend: DmaBackend) -> Arc<DmaDevice> {
    let d = DmaDevice::new("0000:00:03.0 edu", m, backend);
    d.set_mask_and_coherent(DMA_MASK).unwrap();
    d
}

fn pattern(n: usize, seed: u8) -> alloc::vec::Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
}

/// RAM → edu → RAM through typed mappings of buffers allocated below `limit`.
fn round_trip<B: DmaBus>(
    m: &'static Machine,
    md: &EduModel<B>,
    dev: &Arc<DmaDevice>,
    limit: u64,
    len: usize,
) -> (alloc::vec::Vec<u8>, DmaAddr) {
    let edu = Edu::probe(md).unwrap();
    let data = pattern(len, 0x5a);
    let mut out =
        DmaStream::<ToDevice>::map(dev, DmaBuf::alloc_below(m, len, limit).unwrap()).unwrap();
    out.cpu_write().write(0, &data);
    edu.to_device(&out, len, &mut Tick(md)).unwrap();
    assert_eq!(md.buffer(0, len), data, "the device buffer holds the data");
    let bus = out.dma_addr();
    drop(out);
    let mut back =
        DmaStream::<FromDevice>::map(dev, DmaBuf::alloc_below(m, len, limit).unwrap()).unwrap();
    edu.from_device(&back, len, &mut Tick(md)).unwrap();
    let got = back.sync_for_cpu().to_vec();
    assert_eq!(got, data);
    (got, bus)
}

#[test]
fn probe_identifies_and_checks_liveness_factorial_and_interrupts() {
    let m = machine();
    let md = EduModel::new(Direct(m));
    let edu = Edu::probe(&md).unwrap();
    assert_eq!(edu.version(), Version { major: 1, minor: 0 });
    assert_eq!(edu.check_alive(0x1234_5678), Ok(!0x1234_5678));
    edu.start_factorial(10, true).unwrap();
    assert_eq!(edu.factorial(), Err(EduError::Busy));
    assert_eq!(edu.start_factorial(3, false), Err(EduError::Busy));
    md.tick();
    assert_eq!(edu.factorial(), Ok(3_628_800));
    assert_eq!(edu.irq_status(), regs::IRQ_FACTORIAL);
    edu.raise_irq(0x0002_0000);
    assert_eq!(edu.ack_irq(), 0x0002_0001);
    assert_eq!(edu.irq_status(), 0);
    assert!(md.faults().is_empty(), "{:?}", md.faults());
}

#[test]
fn probe_refuses_a_register_block_that_is_not_edu() {
    let m = machine();
    let md = EduModel::new(Direct(m));
    // The liveness register is not the identification register: shift the block by 4.
    struct Shifted<'a, B: DmaBus>(&'a EduModel<B>);
    impl<B: DmaBus> RegisterAccess for Shifted<'_, B> {
        fn read8(&self, o: usize) -> u8 {
            self.0.read8(o + 4)
        }
        fn read16(&self, o: usize) -> u16 {
            self.0.read16(o + 4)
        }
        fn read32(&self, o: usize) -> u32 {
            self.0.read32(o + 4)
        }
        fn write8(&self, o: usize, v: u8) {
            self.0.write8(o + 4, v)
        }
        fn write16(&self, o: usize, v: u16) {
            self.0.write16(o + 4, v)
        }
        fn write32(&self, o: usize, v: u32) {
            self.0.write32(o + 4, v)
        }
    }
    assert!(matches!(
        Edu::probe(Shifted(&md)),
        Err(EduError::NotEdu { .. })
    ));
}

#[test]
fn round_trip_through_ram() {
    let m = machine();
    let md = EduModel::new(Direct(m));
    let dev = device(m, DmaBackend::Direct);
    let (_, bus) = round_trip(m, &md, &dev, DMA_MASK, MAX_TRANSFER);
    assert!(bus.as_u64() <= DMA_MASK);
    assert!(md.faults().is_empty(), "{:?}", md.faults());
    assert_eq!(dev.mapping_count(), 0);
}

#[test]
fn round_trip_through_swiotlb_with_the_28_bit_mask() {
    let m = machine();
    let md = EduModel::new(Direct(m));
    // SAFETY: the pool's range lies in the test arena, reserved for it and used by
    // nothing else in this test.
    let pool =
        Arc::new(unsafe { Swiotlb::new(m, PhysAddr::new(SWIOTLB_BASE), SWIOTLB_SIZE) }.unwrap());
    let dev = device(m, DmaBackend::Swiotlb(pool));
    // Buffers anywhere (the machine hands out its high region first, above 4 GiB):
    // the device sees bounce slots below 256 MiB.
    let (_, bus) = round_trip(m, &md, &dev, u64::MAX, 1000);
    let slot = bus.as_u64();
    assert!(
        (SWIOTLB_BASE..SWIOTLB_BASE + SWIOTLB_SIZE as u64).contains(&slot),
        "bounced: {slot:#x}"
    );
    // Nothing was clamped: without the mask the device would have dropped bits 28+.
    assert!(md.faults().is_empty(), "{:?}", md.faults());
}

#[test]
fn without_the_mask_a_high_buffer_is_clamped_by_the_device() {
    // The failure the mask prevents: a direct mapping above 256 MiB reaches the device
    // unbounced and the engine ANDs it to another address.
    let m = machine();
    let md = EduModel::new(Direct(m));
    let dev = DmaDevice::new("edu without mask", m, DmaBackend::Direct);
    dev.set_mask_and_coherent(u64::MAX).unwrap();
    let edu = Edu::probe(&md).unwrap();
    let s = DmaStream::<ToDevice>::map(&dev, DmaBuf::alloc(m, 64).unwrap()).unwrap();
    assert!(s.dma_addr().as_u64() > DMA_MASK);
    let _ = edu.to_device(&s, 64, &mut Tick(&md));
    assert!(matches!(md.faults()[0], EduFault::Clamped { .. }));
}

mod vtd {
    use super::*;
    use hal::Bdf;
    use testbed::vtd::{setup, Translated};

    const EDU: Bdf = Bdf::b(0, 3, 0);

    #[test]
    fn round_trip_through_the_vtd_model() {
        let m = machine();
        let dom = setup(m, EDU);
        let md = EduModel::new(Translated(dom.clone()));
        let shared: dma::SharedDomain = dom.clone();
        let dev = device(m, DmaBackend::Iommu(shared));
        let (_, iova) = round_trip(m, &md, &dev, u64::MAX, 2048);
        assert!(iova.as_u64() <= DMA_MASK, "IOVA under the mask: {iova:?}");
        assert!(md.faults().is_empty(), "{:?}", md.faults());
        // The mapping is gone after the transfer: the same IOVA now faults.
        assert!(Translated(dom).dma_write(iova.as_u64(), &[0; 4]).is_err());
    }

    #[test]
    fn a_dma_outside_the_mapping_faults_in_the_vtd_model() {
        let m = machine();
        let dom = setup(m, EDU);
        let md = EduModel::new(Translated(dom.clone()));
        let edu = Edu::probe(&md).unwrap();
        md.set_buffer(0, &[0xAA; 64]);
        // SAFETY (test): nothing is mapped at this IOVA; the VT-d model must refuse it.
        let r = unsafe {
            edu.transfer_raw(
                EduDir::FromDevice,
                DmaAddr::new(0x0080_0000),
                64,
                &mut Tick(&md),
            )
        };
        assert_eq!(
            r,
            Ok(Completion::Polled),
            "the device ends the transfer anyway"
        );
        assert!(
            matches!(md.faults()[0], EduFault::Bus(f) if f.addr == 0x0080_0000 && f.write),
            "{:?}",
            md.faults()
        );
        let frcd = dom.lock().unit.registers().frcd(0);
        assert!(frcd[1] >> 63 == 1, "a fault record: {frcd:x?}");
    }
}

#[test]
fn zero_full_and_out_of_window_lengths_are_refused_before_any_register_write() {
    let m = machine();
    let md = EduModel::new(Direct(m));
    let edu = Edu::probe(&md).unwrap();
    let bus = DmaAddr::new(testbed::LOW);
    for (off, len, want) in [
        (0, 0, EduError::Empty),
        (
            0,
            4096,
            EduError::OutsideBuffer {
                offset: 0,
                len: 4096,
            },
        ),
        (
            1,
            4095,
            EduError::OutsideBuffer {
                offset: 1,
                len: 4095,
            },
        ),
        (
            0,
            8192,
            EduError::OutsideBuffer {
                offset: 0,
                len: 8192,
            },
        ),
        (
            usize::MAX,
            2,
            EduError::OutsideBuffer {
                offset: usize::MAX,
                len: 2,
            },
        ),
    ] {
        // SAFETY (test): refused before the device is programmed.
        let r = unsafe { edu.start_raw(EduDir::ToDevice, bus, off, len) };
        assert_eq!(r, Err(want));
        md.tick();
    }
    assert!(md.transfers().is_empty());
    assert!(
        md.faults().is_empty(),
        "the model saw no QEMU abort: {:?}",
        md.faults()
    );
    // The largest transfer QEMU survives goes through.
    // SAFETY (test): LOW is machine RAM nobody else uses in this test.
    unsafe { edu.transfer_raw(EduDir::ToDevice, bus, MAX_TRANSFER, &mut Tick(&md)) }.unwrap();
    assert!(md.faults().is_empty(), "{:?}", md.faults());
    // A typed transfer longer than its mapping is refused.
    let dev = device(m, DmaBackend::Direct);
    let s =
        DmaStream::<ToDevice>::map(&dev, DmaBuf::alloc_below(m, 16, DMA_MASK).unwrap()).unwrap();
    assert_eq!(
        edu.to_device(&s, 17, &mut Tick(&md)),
        Err(EduError::BeyondMapping {
            len: 17,
            mapped: 16
        })
    );
}

#[test]
fn a_second_transfer_while_one_runs_is_busy() {
    let m = machine();
    let md = EduModel::new(Direct(m));
    let edu = Edu::probe(&md).unwrap();
    let bus = DmaAddr::new(testbed::LOW);
    // SAFETY (test): machine RAM.
    unsafe { edu.start_raw(EduDir::ToDevice, bus, 0, 16) }.unwrap();
    // SAFETY (test): refused.
    let r = unsafe { edu.start_raw(EduDir::ToDevice, bus, 0, 16) };
    assert_eq!(r, Err(EduError::Busy));
    md.tick();
    assert!(!edu.dma_busy());
}

#[test]
fn engine_memcpy_bounces_through_the_buffer_in_4095_byte_hops() {
    let m = machine();
    let md = EduModel::new(Direct(m));
    let edu = Arc::new(Edu::probe(&md).unwrap());
    let mut e = engine::EduEngine::new(edu, |_| {});
    let (src, dst) = (testbed::LOW, testbed::LOW + 0x4000);
    let data = pattern(5000, 3);
    hal::PhysMemory::write(m, PhysAddr::new(src), &data);
    let d = e
        .prep_memcpy(0, DmaAddr::new(dst), DmaAddr::new(src), 5000)
        .unwrap();
    let lens: alloc::vec::Vec<usize> = d.hops().iter().map(|h| h.len).collect();
    assert_eq!(lens, [4095, 4095, 905, 905]);
    e.start(0, &d);
    let mut events = alloc::vec::Vec::new();
    for _ in 0..4 {
        assert!(e.residue(0, &d) > 0);
        md.tick();
        assert!(e.handle_irq(&mut events));
    }
    assert_eq!(events, [ChanEvent::Done(0)]);
    assert_eq!(m.bytes(dst, 5000), data);
    assert!(e
        .prep_memcpy(0, DmaAddr::new(dst), DmaAddr::new(src), 0)
        .is_err());
}

#[test]
fn engine_slave_config_stays_inside_the_buffer() {
    let m = machine();
    let md = EduModel::new(Direct(m));
    let mut e = engine::EduEngine::new(Arc::new(Edu::probe(&md).unwrap()), |_| {});
    let cfg = |dst: u64| dmaengine::SlaveConfig {
        direction: dmaengine::TransferDirection::MemToDev,
        src_addr: DmaAddr::new(0),
        dst_addr: DmaAddr::new(dst),
        src_addr_width: 1,
        dst_addr_width: 1,
        src_maxburst: 1,
        dst_maxburst: 1,
    };
    assert!(e.check_config(&cfg(regs::BUFFER)).is_ok());
    assert!(e.check_config(&cfg(regs::BUFFER - 1)).is_err());
    assert!(e.check_config(&cfg(regs::BUFFER + 4096)).is_err());
    let sg = [
        (DmaAddr::new(testbed::LOW), 2048),
        (DmaAddr::new(testbed::LOW), 2048),
    ];
    // 2048 + 2048 reaches the buffer's last byte: refused (QEMU 7.2 would abort).
    assert!(e
        .prep_slave_sg(
            0,
            &sg,
            dmaengine::TransferDirection::MemToDev,
            &cfg(regs::BUFFER)
        )
        .is_err());
    let sg = [
        (DmaAddr::new(testbed::LOW), 2048),
        (DmaAddr::new(testbed::LOW), 2047),
    ];
    let d = e
        .prep_slave_sg(
            0,
            &sg,
            dmaengine::TransferDirection::MemToDev,
            &cfg(regs::BUFFER),
        )
        .unwrap();
    assert_eq!(d.hops()[1].offset, 2048);
}
