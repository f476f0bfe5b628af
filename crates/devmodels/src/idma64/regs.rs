//! The model's register file as the driver sees it: reads and writes of the iDMA64
//! window (channel registers, the write-enable MASK/CH_EN convention, W1C CLEAR,
//! STATUS_INT, DMA_CFG).

use super::*;

pub(super) fn write_enable(old: u8, v: u32) -> u8 {
    let we = (v >> 8) as u8;
    (old & !we) | (v as u8 & we)
}

pub(super) fn set_lo(r: &mut u64, v: u32) {
    *r = (*r & !0xffff_ffff) | v as u64;
}

pub(super) fn set_hi(r: &mut u64, v: u32) {
    *r = (*r & 0xffff_ffff) | ((v as u64) << 32);
}

impl<M: PhysMemory> RegisterAccess for Idma64Model<M> {
    fn read8(&self, o: usize) -> u8 {
        (self.read32(o & !3) >> ((o & 3) * 8)) as u8
    }
    fn read16(&self, o: usize) -> u16 {
        (self.read32(o & !3) >> ((o & 2) * 8)) as u16
    }
    fn read32(&self, o: usize) -> u32 {
        let mut s = self.s.borrow_mut();
        s.reads += 1;
        if o < CHANNELS * CH_STRIDE {
            let c = o / CH_STRIDE;
            if o % CH_STRIDE == 0x40 {
                let drain = s.ch[c].cfg_lo & CFG_CH_DRAIN != 0;
                let empty = match s.fifo_hold[c] {
                    None => true,
                    Some(0) if drain => {
                        s.fifo_hold[c] = None;
                        true
                    }
                    Some(n) if drain => {
                        s.fifo_hold[c] = Some(n - 1);
                        false
                    }
                    Some(_) => false,
                };
                return s.ch[c].cfg_lo | if empty { CFG_FIFO_EMPTY } else { 0 };
            }
            let ch = &s.ch[c];
            return match o % CH_STRIDE {
                0x00 => ch.sar as u32,
                0x04 => (ch.sar >> 32) as u32,
                0x08 => ch.dar as u32,
                0x0c => (ch.dar >> 32) as u32,
                0x10 => ch.llp as u32,
                0x14 => (ch.llp >> 32) as u32,
                0x18 => ch.ctl_lo,
                0x1c => ch.ctl_hi,
                0x44 => ch.cfg_hi,
                _ => 0,
            };
        }
        let grp = |base: usize| {
            (o >= base && o < base + 5 * 8 && (o - base).is_multiple_of(8)).then(|| (o - base) / 8)
        };
        if let Some(t) = grp(RAW) {
            return s.raw[t] as u32;
        }
        if let Some(t) = grp(STATUS) {
            return (s.raw[t] & s.mask[t]) as u32;
        }
        if let Some(t) = grp(MASK) {
            return s.mask[t] as u32;
        }
        match o {
            STATUS_INT => Self::status_int(&s),
            DMA_CFG => s.dma_cfg,
            CH_EN => s.ch_en as u32,
            _ => 0,
        }
    }
    fn write8(&self, o: usize, _v: u8) {
        log::warn!("idma64 model: ignored 8-bit write at {o:#x}");
    }
    fn write16(&self, o: usize, _v: u16) {
        log::warn!("idma64 model: ignored 16-bit write at {o:#x}");
    }
    fn write32(&self, o: usize, v: u32) {
        let mut s = self.s.borrow_mut();
        if o < CHANNELS * CH_STRIDE {
            let ch = &mut s.ch[o / CH_STRIDE];
            match o % CH_STRIDE {
                0x00 => set_lo(&mut ch.sar, v),
                0x04 => set_hi(&mut ch.sar, v),
                0x08 => set_lo(&mut ch.dar, v),
                0x0c => set_hi(&mut ch.dar, v),
                0x10 => set_lo(&mut ch.llp, v),
                0x14 => set_hi(&mut ch.llp, v),
                0x18 => ch.ctl_lo = v,
                0x1c => ch.ctl_hi = v,
                0x40 => ch.cfg_lo = v & !CFG_FIFO_EMPTY,
                0x44 => ch.cfg_hi = v,
                _ => {}
            }
            return;
        }
        let grp = |base: usize| {
            (o >= base && o < base + 5 * 8 && (o - base).is_multiple_of(8)).then(|| (o - base) / 8)
        };
        if let Some(t) = grp(MASK) {
            s.mask[t] = write_enable(s.mask[t], v) & ((1 << CHANNELS) - 1);
            return;
        }
        if let Some(t) = grp(CLEAR) {
            s.raw[t] &= !(v as u8);
            return;
        }
        match o {
            DMA_CFG => s.dma_cfg = v & 1,
            CH_EN => {
                let old = s.ch_en;
                let new = write_enable(old, v) & ((1 << CHANNELS) - 1);
                s.ch_en = new;
                self.enable(&mut s, new & !old);
            }
            _ => {}
        }
    }
}
