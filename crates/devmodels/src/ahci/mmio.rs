//! The ABAR register window: 32-bit reads and writes dispatched to the host and port
//! registers (narrow writes are refused, as the driver never makes them).

use super::*;

impl<B: DmaBus> RegisterAccess for AhciModel<B> {
    fn read8(&self, offset: usize) -> u8 {
        (self.read32(offset & !3) >> (8 * (offset & 3))) as u8
    }

    fn read16(&self, offset: usize) -> u16 {
        (self.read32(offset & !3) >> (8 * (offset & 2))) as u16
    }

    fn read32(&self, offset: usize) -> u32 {
        if offset >= PORT_BASE {
            let i = (offset - PORT_BASE) / PORT_LEN;
            if i < self.s.borrow().ports.len() {
                let reg = (offset - PORT_BASE) % PORT_LEN;
                if reg == 0x34 || self.s.borrow().ports[i].ncq_eager {
                    // Time passes for queued commands whenever the driver looks.
                    self.ncq_tick(i);
                }
                return self.port_read(i, reg);
            }
            return 0;
        }
        let s = self.s.borrow();
        match offset {
            0x00 => s.cap,
            0x04 => s.ghc,
            0x08 => Self::is(&s),
            0x0c => ((1u64 << s.ports.len()) - 1) as u32,
            0x10 => 0x0001_0000,
            _ => 0,
        }
    }

    fn write8(&self, offset: usize, _value: u8) {
        self.model_error(ModelError::BadAccess { offset });
    }

    fn write16(&self, offset: usize, _value: u16) {
        self.model_error(ModelError::BadAccess { offset });
    }

    fn write32(&self, offset: usize, value: u32) {
        if offset >= PORT_BASE {
            let i = (offset - PORT_BASE) / PORT_LEN;
            if i < self.s.borrow().ports.len() {
                self.port_write(i, (offset - PORT_BASE) % PORT_LEN, value);
            } else {
                self.model_error(ModelError::BadAccess { offset });
            }
            return;
        }
        match offset {
            0x04 => {
                if value & 1 != 0 {
                    self.hba_reset();
                } else {
                    self.s.borrow_mut().ghc = (value & 0x3) | 1 << 31;
                }
            }
            // IS is recomputed from PxIS & PxIE (QEMU's `ahci_check_irq`); CAP, PI and
            // VS are read-only.
            0x00 | 0x08 | 0x0c | 0x10 => {}
            _ => self.model_error(ModelError::BadAccess { offset }),
        }
    }
}
