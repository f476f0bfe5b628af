//! The driver against `devmodels::i8237` (the 8237A pair at its PC ports) over an arena.
use super::*;
use devmodels::i8237::{I8237Model, IsaFault};
use hal::{Arena, PhysAddr, PhysMemory};

struct Ports<'a>(&'a I8237Model<&'a Arena>);

impl IsaPorts for Ports<'_> {
    fn inb(&self, port: u16) -> u8 {
        self.0.inb(port)
    }
    fn outb(&self, port: u16, value: u8) {
        self.0.outb(port, value)
    }
}

fn ram() -> Arena {
    Arena::new(PhysAddr::new(0), 0x4_0000)
}

#[test]
fn buffer_rules_8_bit_channels() {
    assert_eq!(check_buffer(2, 0x1_0000, 0x1_0000), Ok(()));
    assert_eq!(
        check_buffer(2, 0x1_FF00, 512),
        Err(IsaDmaError::CrossesBoundary {
            phys: 0x1_FF00,
            len: 512,
            boundary: 0x1_0000
        })
    );
    assert_eq!(
        check_buffer(2, 0xFF00, 0x100),
        Ok(()),
        "ends exactly at the boundary"
    );
    assert_eq!(
        check_buffer(2, 0xFF_FF00, 512),
        Err(IsaDmaError::Above16M {
            phys: 0xFF_FF00,
            len: 512
        })
    );
    assert_eq!(
        check_buffer(2, 0xFF_FF00, 256),
        Ok(()),
        "last byte at 16 MiB - 1"
    );
    assert_eq!(
        check_buffer(2, u64::MAX, 2),
        Err(IsaDmaError::Above16M {
            phys: u64::MAX,
            len: 2
        })
    );
    assert_eq!(
        check_buffer(1, 0, 0x1_0001),
        Err(IsaDmaError::TooLong(0x1_0001))
    );
    assert_eq!(check_buffer(1, 0x5000, 0), Err(IsaDmaError::Empty));
    assert_eq!(
        check_buffer(4, 0x5000, 16),
        Err(IsaDmaError::NoSuchChannel(4))
    );
    assert_eq!(
        check_buffer(8, 0x5000, 16),
        Err(IsaDmaError::NoSuchChannel(8))
    );
}

#[test]
fn buffer_rules_16_bit_channels_use_128_kib_pages_and_words() {
    assert_eq!(
        check_buffer(5, 0xFF00, 0x200),
        Ok(()),
        "inside one 128 KiB page"
    );
    assert_eq!(check_buffer(5, 0x2_0000, 0x2_0000), Ok(()));
    assert_eq!(
        check_buffer(5, 0, 0x2_0002),
        Err(IsaDmaError::TooLong(0x2_0002))
    );
    assert!(matches!(
        check_buffer(6, 0x1_FF00, 0x200),
        Err(IsaDmaError::CrossesBoundary {
            boundary: 0x2_0000,
            ..
        })
    ));
    assert_eq!(
        check_buffer(7, 0x1001, 16),
        Err(IsaDmaError::Unaligned {
            phys: 0x1001,
            len: 16
        })
    );
    assert_eq!(
        check_buffer(7, 0x1000, 15),
        Err(IsaDmaError::Unaligned {
            phys: 0x1000,
            len: 15
        })
    );
}

#[test]
fn channel_ownership_like_request_dma() {
    let mut c = Channels::new();
    assert_eq!(
        c.request(4, "x"),
        Err(IsaDmaError::Busy {
            channel: 4,
            owner: "cascade"
        })
    );
    assert_eq!(c.request(9, "x"), Err(IsaDmaError::NoSuchChannel(9)));
    c.request(2, "floppy").unwrap();
    assert_eq!(
        c.request(2, "other"),
        Err(IsaDmaError::Busy {
            channel: 2,
            owner: "floppy"
        })
    );
    assert_eq!(
        c.claimed().collect::<std::vec::Vec<_>>(),
        [(2, "floppy"), (4, "cascade")]
    );
    c.free(2);
    c.free(4);
    assert_eq!(c.owner(2), None);
    assert_eq!(c.owner(4), Some("cascade"));
}

#[test]
fn an_8_bit_read_lands_where_programmed_with_residue_and_terminal_count() {
    let a = ram();
    let m = I8237Model::new(&a);
    let mut d = I8237::new(Ports(&m));
    // A half-finished sequence elsewhere left the flip-flop high: program clears it.
    m.set_flip_flop(2, true);
    // SAFETY (test): arena memory.
    unsafe { d.program(2, 0x1_2340, 300, Direction::ToMemory, false) }.unwrap();
    assert_eq!(d.residue(2), 300);
    let data: std::vec::Vec<u8> = (0..512u32).map(|i| i as u8 ^ 0x5A).collect();
    assert_eq!(m.device_write(2, &data[..100]), 100);
    assert_eq!(d.residue(2), 200);
    assert_eq!(d.status(), 0);
    assert_eq!(
        m.device_write(2, &data[100..]),
        200,
        "stops at terminal count"
    );
    assert_eq!(a.to_vec(PhysAddr::new(0x1_2340), 300), data[..300]);
    assert_eq!(a.to_vec(PhysAddr::new(0x1_2340 + 300), 1), [0]);
    assert_eq!(d.residue(2), 0);
    assert_eq!(d.status(), 0x04);
    assert_eq!(
        m.mask_bits(2) & 0x04,
        0x04,
        "masked itself at terminal count"
    );
    assert!(m.faults().is_empty(), "{:?}", m.faults());
}

#[test]
fn a_write_to_the_device_reads_memory() {
    let a = ram();
    let m = I8237Model::new(&a);
    let mut d = I8237::new(Ports(&m));
    a.write(PhysAddr::new(0x8000), b"floppy sector");
    // SAFETY (test): arena memory.
    unsafe { d.program(1, 0x8000, 13, Direction::FromMemory, false) }.unwrap();
    assert_eq!(m.device_read(1, 64), b"floppy sector");
    // The wrong direction moves nothing.
    // SAFETY (test): arena memory.
    unsafe { d.program(1, 0x8000, 13, Direction::FromMemory, false) }.unwrap();
    assert_eq!(m.device_write(1, &[0; 4]), 0);
    assert_eq!(m.faults(), [IsaFault::WrongType(1)]);
}

#[test]
fn a_16_bit_channel_moves_words_in_its_128_kib_page() {
    let a = ram();
    let m = I8237Model::new(&a);
    let mut d = I8237::new(Ports(&m));
    // The last 256 bytes of the first 128 KiB page: the address register holds
    // word 0xFF80, page bit 0 is not used.
    let (pa, len) = (0x1_FF00u64, 0x100usize);
    // SAFETY (test): arena memory.
    unsafe { d.program(5, pa, len, Direction::ToMemory, false) }.unwrap();
    assert_eq!(d.residue(5), len);
    let data: std::vec::Vec<u8> = (0..len as u32).map(|i| i as u8).collect();
    assert_eq!(m.device_write(5, &data), len);
    assert_eq!(a.to_vec(PhysAddr::new(pa), len), data);
    assert_eq!(d.residue(5), 0);
    assert_eq!(d.terminal_counts(), 1 << 5);
    let (pa, len) = (0xFF80u64, 0x100usize);
    // SAFETY (test): arena memory.
    unsafe { d.program(6, pa, len, Direction::ToMemory, false) }.unwrap();
    assert_eq!(m.device_write(6, &data), len);
    assert_eq!(
        a.to_vec(PhysAddr::new(pa), len),
        data,
        "across 64 KiB: no wrap"
    );
    assert!(m.faults().is_empty(), "{:?}", m.faults());
}

#[test]
fn auto_init_reloads_at_terminal_count_and_stays_unmasked() {
    let a = ram();
    let m = I8237Model::new(&a);
    let mut d = I8237::new(Ports(&m));
    // SAFETY (test): arena memory.
    unsafe { d.program(3, 0x3000, 8, Direction::ToMemory, true) }.unwrap();
    assert_eq!(m.device_write(3, &[1; 8]), 8);
    assert_eq!(d.status(), 0x08);
    assert_eq!(d.residue(3), 8, "reloaded");
    assert_eq!(m.mask_bits(3) & 0x08, 0);
    assert_eq!(m.device_write(3, &[2; 5]), 5);
    assert_eq!(
        a.to_vec(PhysAddr::new(0x3000), 9),
        [2, 2, 2, 2, 2, 1, 1, 1, 0]
    );
}

#[test]
fn a_boundary_crossing_buffer_is_refused_before_the_chip_would_wrap() {
    let a = ram();
    let m = I8237Model::new(&a);
    let mut d = I8237::new(Ports(&m));
    // SAFETY (test): refused before any port write.
    let r = unsafe { d.program(2, 0x1_FF00, 512, Direction::ToMemory, false) };
    assert!(matches!(r, Err(IsaDmaError::CrossesBoundary { .. })));
    // What the check prevents: program the same buffer by hand and the chip wraps.
    m.outb(0x0B, 0x44 | 2);
    m.outb(0x0C, 0);
    m.outb(0x04, 0x00);
    m.outb(0x04, 0xFF);
    m.outb(0x81, 0x01);
    m.outb(0x05, 0xFF);
    m.outb(0x05, 0x01);
    m.outb(0x0A, 2);
    m.device_write(2, &[7; 512]);
    assert_eq!(
        m.faults(),
        [IsaFault::Wrapped {
            channel: 2,
            at: 0x1_0000
        }]
    );
}

#[test]
fn mask_and_unmask_gate_dreq() {
    let a = ram();
    let m = I8237Model::new(&a);
    let mut d = I8237::new(Ports(&m));
    // SAFETY (test): arena memory.
    unsafe { d.program(0, 0x2000, 4, Direction::ToMemory, false) }.unwrap();
    d.mask(0);
    assert_eq!(m.device_write(0, &[9; 4]), 0);
    d.unmask(0);
    assert_eq!(m.device_write(0, &[9; 4]), 4);
    assert_eq!(m.faults(), [IsaFault::Masked(0)]);
}

mod engine {
    use super::*;
    use crate::engine::{Controller, IsaEngine};
    use core::cell::RefCell;
    use dmaengine::{ChanEvent, DmaAddr, DmaProvider, EngineError, SlaveConfig};

    /// The controller as the kernel binding offers it, over the model.
    struct Model<'a> {
        chips: RefCell<I8237<Ports<'a>>>,
        owned: u8,
    }

    impl Controller for Model<'_> {
        unsafe fn program(
            &self,
            channel: u8,
            phys: u64,
            len: usize,
            dir: Direction,
        ) -> Result<(), IsaDmaError> {
            if self.owned & (1 << channel) == 0 {
                return Err(IsaDmaError::NotOwner(channel));
            }
            // SAFETY: the caller's contract.
            unsafe {
                self.chips
                    .borrow_mut()
                    .program(channel, phys, len, dir, false)
            }
        }
        fn mask(&self, channel: u8) {
            self.chips.borrow_mut().mask(channel)
        }
        fn unmask(&self, channel: u8) {
            self.chips.borrow_mut().unmask(channel)
        }
        fn residue(&self, channel: u8) -> usize {
            self.chips.borrow_mut().residue(channel)
        }
        fn status(&self) -> u8 {
            self.chips.borrow_mut().status()
        }
    }

    fn cfg() -> SlaveConfig {
        SlaveConfig {
            direction: dmaengine::TransferDirection::DevToMem,
            src_addr: DmaAddr::new(0x3F5),
            dst_addr: DmaAddr::new(0),
            src_addr_width: 1,
            dst_addr_width: 1,
            src_maxburst: 1,
            dst_maxburst: 1,
        }
    }

    #[test]
    fn a_slave_read_completes_at_terminal_count_with_residue_on_the_way() {
        let a = ram();
        let m = I8237Model::new(&a);
        let mut e = IsaEngine::new(Model {
            chips: RefCell::new(I8237::new(Ports(&m))),
            owned: 1 << 2,
        });
        assert!(e.check_config(&cfg()).is_ok());
        let mut wide = cfg();
        wide.src_addr_width = 2;
        assert_eq!(e.check_config(&wide), Err(EngineError::BadBusWidth(2)));
        let sg = [(DmaAddr::new(0x2_0000), 1024)];
        let d = e
            .prep_slave_sg(2, &sg, dmaengine::TransferDirection::DevToMem, &cfg())
            .unwrap();
        e.start(2, &d);
        let mut ev = std::vec::Vec::new();
        assert_eq!(m.device_write(2, &[0x42; 1000]), 1000);
        assert_eq!(e.residue(2, &d), 24);
        assert!(!e.handle_irq(&mut ev), "no terminal count yet");
        assert_eq!(m.device_write(2, &[0x42; 24]), 24);
        assert!(e.handle_irq(&mut ev));
        assert_eq!(ev, [ChanEvent::Done(2)]);
        assert_eq!(a.to_vec(PhysAddr::new(0x2_0000), 1024), [0x42; 1024]);
    }

    #[test]
    fn refused_segments_and_unclaimed_channels() {
        let a = ram();
        let m = I8237Model::new(&a);
        let mut e = IsaEngine::new(Model {
            chips: RefCell::new(I8237::new(Ports(&m))),
            owned: 0,
        });
        let dir = dmaengine::TransferDirection::DevToMem;
        let two = [(DmaAddr::new(0x1000), 16), (DmaAddr::new(0x2000), 16)];
        assert!(matches!(
            e.prep_slave_sg(1, &two, dir, &cfg()),
            Err(EngineError::TooManySegments { max: 1, got: 2 })
        ));
        let cross = [(DmaAddr::new(0x1_FF00), 512)];
        assert_eq!(
            e.prep_slave_sg(1, &cross, dir, &cfg()).err(),
            Some(EngineError::BadAddress(DmaAddr::new(0x1_FF00)))
        );
        // Not claimed: start cannot program it; the next interrupt reports an error.
        let d = e
            .prep_slave_sg(1, &[(DmaAddr::new(0x1000), 16)], dir, &cfg())
            .unwrap();
        e.start(1, &d);
        assert_eq!(e.last_error(), Some(IsaDmaError::NotOwner(1)));
        let mut ev = std::vec::Vec::new();
        assert!(e.handle_irq(&mut ev));
        assert_eq!(ev, [ChanEvent::Error(1)]);
        assert_eq!(m.device_write(1, &[1; 16]), 0, "the channel stayed masked");
    }
}
