//! Behavioural model of the Intel LPSS iDMA64 controller (hw-facts §1.3–1.8), as seen
//! through its register window (LPSS BAR0 + 0x800).
//!
//! Two channels. The model implements `hal::RegisterAccess` and reaches memory through
//! `hal::PhysMemory` (bus address = physical address: no IOMMU in front of it). Nothing
//! moves until the test calls [`Idma64Model::step`] or [`Idma64Model::run_until_idle`];
//! each step moves at most [`Idma64Model::set_step_bytes`] bytes per enabled channel, so
//! a test can stop a transfer half way and look at LLP / CTL_HI.BLOCK_TS.
//!
//! Semantics modelled:
//! * CH_EN and MASK registers with the write-enable convention (bits 15:8 select which
//!   bits 7:0 change); RAW (read-only), STATUS = RAW & MASK, CLEAR (W1C), STATUS_INT
//!   (bit 0 XFER, 1 BLOCK, 2 SRC_TRAN, 3 DST_TRAN, 4 ERROR), DMA_CFG.DMA_EN.
//! * Enabling a channel whose CTL_LO has LLP_SRC_EN|LLP_DST_EN fetches the LLI at LLP
//!   (40 bytes: SAR, DAR, LLP, CTL_LO, CTL_HI); otherwise one block runs from the
//!   registers. While a block runs LLP holds the next LLI's address and CTL_HI.BLOCK_TS
//!   counts bytes done. A block ends the chain if its LLP enables are clear or llp = 0;
//!   then the channel disables itself and raises XFER if the block had INT_EN.
//! * SINC/DINC fixed addresses that were registered with [`Idma64Model::add_fifo`] are a
//!   peripheral data port with two queues: the engine's reads pop the device-to-memory
//!   queue ([`Idma64Model::push_fifo`] feeds it; empty stalls the channel), its writes
//!   push the memory-to-device queue ([`Idma64Model::take_fifo`] drains it).
//! * Hardware handshake, once a peripheral drives the request lines
//!   ([`Idma64Model::set_request_lines`]): a memory-to-peripheral block moves only while
//!   the line CFG_HI.DST_PER names is asserted, a peripheral-to-memory block only while
//!   CFG_HI.SRC_PER's line is, one burst (CTL_LO.DST_MSIZE / SRC_MSIZE items of the
//!   peripheral-side width) per step; the peripheral re-evaluates its lines between
//!   steps. Without a peripheral (no call) slave blocks run free, as before.
//! * ERROR (and channel disable) for an LLI or data address outside memory, an address
//!   not aligned to its transfer width, or BLOCK_TS larger than 0x1FFFF.
//! * CFG_LO.CH_SUSP freezes the channel; clearing CH_EN mid-chain stops it and leaves
//!   LLP / CTL_HI as they were. FIFO_EMPTY reads 1 unless a test made the channel FIFO
//!   hold data ([`Idma64Model::hold_fifo`]): then it reads 0 until CH_DRAIN has been set
//!   for a number of CFG_LO reads; without CH_DRAIN (a plain pause) the data stays.
//! * RAW bits stay set until the driver writes CLEAR, across channel disable and
//!   re-enable (a stale bit makes STATUS_INT fire for a new transfer).
//! * [`Idma64Model::corrupt_next_byte`] flips the next byte the engine copies.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::cell::RefCell;
use hal::{PhysAddr, PhysMemory, RegisterAccess};

mod regs;

/// Number of channels.
pub const CHANNELS: usize = 2;
/// Per-channel register stride.
pub const CH_STRIDE: usize = 0x58;
const RAW: usize = 0x2c0;
const STATUS: usize = 0x2e8;
const MASK: usize = 0x310;
const CLEAR: usize = 0x338;
const STATUS_INT: usize = 0x360;
const DMA_CFG: usize = 0x398;
const CH_EN: usize = 0x3a0;
/// Interrupt type index: transfer (chain) complete.
pub const IRQ_XFER: usize = 0;
/// Interrupt type index: block complete.
pub const IRQ_BLOCK: usize = 1;
/// Interrupt type index: error.
pub const IRQ_ERROR: usize = 4;

const INT_EN: u32 = 1 << 0;
const DST_FIX: u32 = 1 << 8;
const SRC_FIX: u32 = 1 << 10;
const LLP_DST_EN: u32 = 1 << 27;
const LLP_SRC_EN: u32 = 1 << 28;
const CTLHI_DONE: u32 = 1 << 17;
const BLOCK_TS_MAX: u32 = 0x1_ffff;
const CFG_CH_SUSP: u32 = 1 << 8;
const CFG_FIFO_EMPTY: u32 = 1 << 9;
const CFG_CH_DRAIN: u32 = 1 << 10;
const LLI_SIZE: usize = 40;

/// Why the model raised ERROR on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelError {
    /// The LLI at this address is outside memory or misaligned.
    BadLli(u64),
    /// A data access at this address is outside memory (and not a FIFO).
    BadAddress(u64),
    /// An address or length not aligned to the transfer width.
    Misaligned(u64),
    /// CTL_HI.BLOCK_TS too large.
    BlockTooLarge(u32),
}

/// One block the engine started, for assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLog {
    /// Channel.
    pub chan: usize,
    /// Source address.
    pub sar: u64,
    /// Destination address.
    pub dar: u64,
    /// CTL_LO of the block.
    pub ctl_lo: u32,
    /// Block length (BLOCK_TS).
    pub len: u32,
}

impl BlockLog {
    /// Source transfer width in bytes (CTL_LO.SRC_TR_WIDTH).
    pub fn src_width(&self) -> usize {
        1 << ((self.ctl_lo >> 4) & 7)
    }
    /// Destination transfer width in bytes.
    pub fn dst_width(&self) -> usize {
        1 << ((self.ctl_lo >> 1) & 7)
    }
    /// Transfer type / flow control (0 M2M, 1 M2P, 2 P2M).
    pub fn tt_fc(&self) -> u32 {
        (self.ctl_lo >> 20) & 7
    }
}

/// A peripheral data port: what the engine reads, what it wrote.
#[derive(Default)]
struct Port {
    from_dev: VecDeque<u8>,
    to_dev: VecDeque<u8>,
}

#[derive(Default, Clone, Copy)]
struct Chan {
    sar: u64,
    dar: u64,
    llp: u64,
    ctl_lo: u32,
    ctl_hi: u32,
    cfg_lo: u32,
    cfg_hi: u32,
    need_fetch: bool,
    in_block: bool,
    block_len: u32,
    done: u32,
}

struct State {
    ch: [Chan; CHANNELS],
    raw: [u8; 5],
    mask: [u8; 5],
    dma_cfg: u32,
    ch_en: u8,
    corrupt: bool,
    step_bytes: usize,
    fifos: BTreeMap<u64, Port>,
    /// Request lines, once a peripheral drives them (bit n = handshake interface n).
    requests: Option<u32>,
    blocks: Vec<BlockLog>,
    errors: Vec<(usize, ModelError)>,
    reads: usize,
    /// Per channel: Some(n) = the FIFO holds data, empty after n CFG_LO reads with
    /// CH_DRAIN set.
    fifo_hold: [Option<usize>; CHANNELS],
}

/// The iDMA64 model over memory `M` covering `[mem_base, mem_base + mem_size)`.
pub struct Idma64Model<M: PhysMemory> {
    mem: M,
    mem_base: u64,
    mem_size: u64,
    s: RefCell<State>,
}

impl<M: PhysMemory> Idma64Model<M> {
    /// A model in reset state (DMA disabled, everything masked) over `mem`.
    pub fn new(mem: M, mem_base: PhysAddr, mem_size: usize) -> Self {
        Idma64Model {
            mem,
            mem_base: mem_base.as_u64(),
            mem_size: mem_size as u64,
            s: RefCell::new(State {
                ch: [Chan::default(); CHANNELS],
                raw: [0; 5],
                mask: [0; 5],
                dma_cfg: 0,
                ch_en: 0,
                corrupt: false,
                step_bytes: 4096,
                fifos: BTreeMap::new(),
                requests: None,
                blocks: Vec::new(),
                errors: Vec::new(),
                reads: 0,
                fifo_hold: [None; CHANNELS],
            }),
        }
    }

    /// Bytes each enabled channel moves per [`step`](Self::step).
    pub fn set_step_bytes(&self, n: usize) {
        self.s.borrow_mut().step_bytes = n.max(1);
    }

    /// Flips (XOR 0xFF) the next byte the engine copies.
    pub fn corrupt_next_byte(&self) {
        self.s.borrow_mut().corrupt = true;
    }

    /// Declares a peripheral FIFO at bus address `addr`.
    pub fn add_fifo(&self, addr: u64) {
        self.s.borrow_mut().fifos.entry(addr).or_default();
    }

    /// Feeds bytes into the port at `addr` for the engine to read (the peripheral
    /// produced them).
    pub fn push_fifo(&self, addr: u64, data: &[u8]) {
        self.s
            .borrow_mut()
            .fifos
            .entry(addr)
            .or_default()
            .from_dev
            .extend(data.iter().copied());
    }

    /// Takes everything the engine wrote into the port at `addr`.
    pub fn take_fifo(&self, addr: u64) -> Vec<u8> {
        self.s
            .borrow_mut()
            .fifos
            .get_mut(&addr)
            .map(|f| f.to_dev.drain(..).collect())
            .unwrap_or_default()
    }

    /// Bytes waiting in the port at `addr` for the engine to read.
    pub fn fifo_level(&self, addr: u64) -> usize {
        self.s
            .borrow()
            .fifos
            .get(&addr)
            .map_or(0, |f| f.from_dev.len())
    }

    /// Pops one byte the engine would read from the port at `addr` (the CPU read the
    /// peripheral's data register instead).
    pub fn pop_fifo(&self, addr: u64) -> Option<u8> {
        self.s
            .borrow_mut()
            .fifos
            .get_mut(&addr)
            .and_then(|f| f.from_dev.pop_front())
    }

    /// Drives the peripheral request lines (bit n = handshake interface n) and turns
    /// hardware handshaking on: from now on slave blocks wait for their line.
    pub fn set_request_lines(&self, lines: u32) {
        self.s.borrow_mut().requests = Some(lines);
    }

    /// Makes channel `ch`'s FIFO hold data: CFG_LO.FIFO_EMPTY reads 0 until CH_DRAIN
    /// has been set for `drain_reads` CFG_LO reads (suspend without drain keeps it).
    pub fn hold_fifo(&self, ch: usize, drain_reads: usize) {
        if let Some(h) = self.s.borrow_mut().fifo_hold.get_mut(ch) {
            *h = Some(drain_reads);
        }
    }

    /// Every block started so far.
    pub fn blocks(&self) -> Vec<BlockLog> {
        self.s.borrow().blocks.clone()
    }

    /// Every error raised so far, with its channel.
    pub fn errors(&self) -> Vec<(usize, ModelError)> {
        self.s.borrow().errors.clone()
    }

    /// Register reads so far (for "did the driver look" assertions).
    pub fn reads(&self) -> usize {
        self.s.borrow().reads
    }

    /// True if channel `ch` is enabled (CH_EN bit set).
    pub fn channel_enabled(&self, ch: usize) -> bool {
        self.s.borrow().ch_en & (1 << ch) != 0
    }

    /// RAW status of interrupt type `t` (see `IRQ_*`).
    pub fn raw(&self, t: usize) -> u8 {
        self.s.borrow().raw.get(t).copied().unwrap_or(0)
    }

    fn in_mem(&self, addr: u64, len: usize) -> bool {
        addr >= self.mem_base
            && (addr - self.mem_base)
                .checked_add(len as u64)
                .is_some_and(|e| e <= self.mem_size)
    }

    fn fail(&self, s: &mut State, c: usize, e: ModelError) {
        log::debug!("idma64 model: channel {c}: {e:?}");
        s.errors.push((c, e));
        s.raw[IRQ_ERROR] |= 1 << c;
        s.ch_en &= !(1 << c);
        s.ch[c].in_block = false;
        s.ch[c].need_fetch = false;
    }

    fn begin_block(&self, s: &mut State, c: usize) -> bool {
        let ch = &mut s.ch[c];
        let ts = ch.ctl_hi & !CTLHI_DONE;
        if ts > BLOCK_TS_MAX {
            self.fail(s, c, ModelError::BlockTooLarge(ts));
            return false;
        }
        let sw = 1u64 << ((ch.ctl_lo >> 4) & 7);
        let dw = 1u64 << ((ch.ctl_lo >> 1) & 7);
        let (sar, dar) = (ch.sar, ch.dar);
        if !sar.is_multiple_of(sw) || !(ts as u64).is_multiple_of(sw) {
            self.fail(s, c, ModelError::Misaligned(sar));
            return false;
        }
        if !dar.is_multiple_of(dw) {
            self.fail(s, c, ModelError::Misaligned(dar));
            return false;
        }
        let ch = &mut s.ch[c];
        ch.block_len = ts;
        ch.done = 0;
        ch.ctl_hi = 0;
        ch.in_block = true;
        let log = BlockLog {
            chan: c,
            sar,
            dar,
            ctl_lo: ch.ctl_lo,
            len: ts,
        };
        s.blocks.push(log);
        true
    }

    fn fetch(&self, s: &mut State, c: usize) -> bool {
        let at = s.ch[c].llp;
        if !at.is_multiple_of(8) || !self.in_mem(at, LLI_SIZE) {
            self.fail(s, c, ModelError::BadLli(at));
            return false;
        }
        let mut b = [0u8; LLI_SIZE];
        self.mem.read(PhysAddr::new(at), &mut b);
        let q = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(w)
        };
        let d = |o: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&b[o..o + 4]);
            u32::from_le_bytes(w)
        };
        let ch = &mut s.ch[c];
        ch.sar = q(0);
        ch.dar = q(8);
        ch.llp = q(0x10);
        ch.ctl_lo = d(0x18);
        ch.ctl_hi = d(0x1c);
        ch.need_fetch = false;
        self.begin_block(s, c)
    }

    /// Moves up to `step_bytes` on channel `c`; returns true on progress.
    fn advance(&self, s: &mut State, c: usize) -> bool {
        if s.ch[c].need_fetch && !self.fetch(s, c) {
            return true;
        }
        if !s.ch[c].in_block {
            return false;
        }
        let ch = s.ch[c];
        let mut want = (ch.block_len - ch.done).min(s.step_bytes as u32) as usize;
        if let Some(lines) = s.requests {
            // Transfer type: 1 memory-to-peripheral, 2 peripheral-to-memory.
            let hs = match (ch.ctl_lo >> 20) & 7 {
                1 => Some((
                    (ch.cfg_hi >> 4) & 0xf,
                    (ch.ctl_lo >> 1) & 7,
                    (ch.ctl_lo >> 11) & 7,
                )),
                2 => Some((ch.cfg_hi & 0xf, (ch.ctl_lo >> 4) & 7, (ch.ctl_lo >> 14) & 7)),
                _ => None,
            };
            if let Some((line, width, msize)) = hs {
                if lines & (1 << line) == 0 {
                    return false; // no request from the peripheral: wait
                }
                want = want.min((1usize << width) << msize);
            }
        }
        let src_fixed = ch.ctl_lo & SRC_FIX != 0;
        let dst_fixed = ch.ctl_lo & DST_FIX != 0;
        let src = if src_fixed {
            ch.sar
        } else {
            ch.sar + ch.done as u64
        };
        let dst = if dst_fixed {
            ch.dar
        } else {
            ch.dar + ch.done as u64
        };
        // Source.
        let mut buf = Vec::new();
        if src_fixed && s.fifos.contains_key(&src) {
            if let Some(f) = s.fifos.get_mut(&src) {
                let n = want.min(f.from_dev.len());
                buf.extend(f.from_dev.drain(..n));
            }
        } else if self.in_mem(src, if src_fixed { 1 } else { want }) {
            buf.resize(want, 0);
            if src_fixed {
                for b in buf.iter_mut() {
                    let mut one = [0u8];
                    self.mem.read(PhysAddr::new(src), &mut one);
                    *b = one[0];
                }
            } else {
                self.mem.read(PhysAddr::new(src), &mut buf);
            }
        } else {
            self.fail(s, c, ModelError::BadAddress(src));
            return true;
        }
        if buf.is_empty() && want > 0 {
            return false; // peripheral has nothing yet: stalled
        }
        if s.corrupt {
            if let Some(b) = buf.first_mut() {
                *b ^= 0xff;
                s.corrupt = false;
            }
        }
        // Destination.
        if dst_fixed && s.fifos.contains_key(&dst) {
            if let Some(f) = s.fifos.get_mut(&dst) {
                f.to_dev.extend(buf.iter().copied());
            }
        } else if self.in_mem(dst, if dst_fixed { 1 } else { buf.len() }) {
            if dst_fixed {
                if let Some(&last) = buf.last() {
                    self.mem.write(PhysAddr::new(dst), &[last]);
                }
            } else {
                self.mem.write(PhysAddr::new(dst), &buf);
            }
        } else {
            self.fail(s, c, ModelError::BadAddress(dst));
            return true;
        }
        let ch = &mut s.ch[c];
        ch.done += buf.len() as u32;
        ch.ctl_hi = ch.done;
        if ch.done < ch.block_len {
            return true;
        }
        // Block complete.
        ch.ctl_hi |= CTLHI_DONE;
        ch.in_block = false;
        let int = ch.ctl_lo & INT_EN != 0;
        let last = ch.ctl_lo & (LLP_SRC_EN | LLP_DST_EN) == 0 || ch.llp == 0;
        if int {
            s.raw[IRQ_BLOCK] |= 1 << c;
        }
        if last {
            if int {
                s.raw[IRQ_XFER] |= 1 << c;
            }
            s.ch_en &= !(1 << c);
        } else {
            ch.need_fetch = true;
        }
        true
    }

    /// One engine step: every enabled, unsuspended channel moves up to `step_bytes`.
    /// Returns true if anything happened.
    pub fn step(&self) -> bool {
        let mut s = self.s.borrow_mut();
        if s.dma_cfg & 1 == 0 {
            return false;
        }
        let mut any = false;
        for c in 0..CHANNELS {
            if s.ch_en & (1 << c) != 0 && s.ch[c].cfg_lo & CFG_CH_SUSP == 0 {
                any |= self.advance(&mut s, c);
            }
        }
        any
    }

    /// One step of the peripheral channels only (memory-to-peripheral and back): each
    /// moves at most one more burst if its request line is asserted. A peripheral
    /// model calls this again while it keeps asking. Returns true if anything moved.
    pub fn step_slave(&self) -> bool {
        let mut s = self.s.borrow_mut();
        if s.dma_cfg & 1 == 0 {
            return false;
        }
        let mut any = false;
        for c in 0..CHANNELS {
            let tt = (s.ch[c].ctl_lo >> 20) & 7;
            if s.ch_en & (1 << c) != 0
                && s.ch[c].cfg_lo & CFG_CH_SUSP == 0
                && (s.ch[c].in_block || s.ch[c].need_fetch)
                && (tt == 1 || tt == 2)
            {
                any |= self.advance(&mut s, c);
            }
        }
        any
    }

    /// Steps until nothing moves (all channels idle, suspended or stalled). Returns the
    /// number of steps taken.
    pub fn run_until_idle(&self) -> usize {
        let mut n = 0;
        while self.step() {
            n += 1;
        }
        n
    }

    fn enable(&self, s: &mut State, newly: u8) {
        for c in 0..CHANNELS {
            if newly & (1 << c) == 0 {
                continue;
            }
            let ch = &mut s.ch[c];
            if ch.ctl_lo & (LLP_SRC_EN | LLP_DST_EN) != 0 {
                ch.need_fetch = true;
                ch.in_block = false;
            } else {
                ch.need_fetch = false;
                self.begin_block(s, c);
            }
        }
    }

    fn status_int(s: &State) -> u32 {
        let mut v = 0;
        for t in 0..5 {
            if s.raw[t] & s.mask[t] != 0 {
                v |= 1 << t;
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hal::Arena;

    const BASE: u64 = 0x10_0000;

    fn lli(a: &Arena, at: u64, sar: u64, dar: u64, llp: u64, ctl_lo: u32, len: u32) {
        a.write_u64(PhysAddr::new(at), sar);
        a.write_u64(PhysAddr::new(at + 8), dar);
        a.write_u64(PhysAddr::new(at + 0x10), llp);
        a.write_u32(PhysAddr::new(at + 0x18), ctl_lo);
        a.write_u32(PhysAddr::new(at + 0x1c), len);
    }

    #[test]
    fn write_enable_masks_and_w1c() {
        let a = Arena::new(PhysAddr::new(BASE), 0x4000);
        let m = Idma64Model::new(&a, a.base(), a.size());
        m.write32(MASK + 0x20, 0x0303);
        m.write32(MASK + 0x20, 0x0100); // clear ch0 only
        assert_eq!(m.read32(MASK + 0x20), 2);
        m.write32(MASK + 0x20, 0x0001); // no write-enable: ignored
        assert_eq!(m.read32(MASK + 0x20), 2);
        m.s.borrow_mut().raw[IRQ_ERROR] = 3;
        assert_eq!(m.read32(STATUS + 0x20), 2);
        assert_eq!(m.read32(STATUS_INT), 1 << 4);
        m.write32(CLEAR + 0x20, 2);
        assert_eq!((m.read32(RAW + 0x20), m.read32(STATUS_INT)), (1, 0));
    }

    #[test]
    fn chain_runs_and_interrupts_only_with_dma_en() {
        let a = Arena::new(PhysAddr::new(BASE), 0x4000);
        let m = Idma64Model::new(&a, a.base(), a.size());
        a.write(PhysAddr::new(BASE + 0x1000), b"hello world!");
        let l0 = BASE + 0x100;
        let l1 = BASE + 0x128;
        let w32 = (2 << 1) | (2 << 4);
        lli(
            &a,
            l0,
            BASE + 0x1000,
            BASE + 0x2000,
            l1,
            w32 | LLP_SRC_EN | LLP_DST_EN,
            8,
        );
        lli(&a, l1, BASE + 0x1008, BASE + 0x2008, 0, w32 | INT_EN, 4);
        m.write32(MASK, 0x0101);
        m.write32(0x18, LLP_SRC_EN | LLP_DST_EN);
        m.write64(0x10, l0);
        m.write32(CH_EN, 0x0101);
        assert!(!m.step(), "DMA_EN clear: nothing moves");
        m.write32(DMA_CFG, 1);
        m.set_step_bytes(4);
        assert!(m.step());
        assert_eq!((m.read64(0x10), m.read32(0x1c)), (l1, 4));
        m.run_until_idle();
        assert_eq!(a.to_vec(PhysAddr::new(BASE + 0x2000), 12), b"hello world!");
        assert_eq!((m.read32(RAW), m.read32(STATUS_INT)), (1, 1));
        assert!(!m.channel_enabled(0));
        assert_eq!(m.blocks().len(), 2);
    }

    #[test]
    fn errors_for_bad_lli_and_oversized_block() {
        let a = Arena::new(PhysAddr::new(BASE), 0x4000);
        let m = Idma64Model::new(&a, a.base(), a.size());
        m.write32(DMA_CFG, 1);
        m.write32(0x18, LLP_SRC_EN | LLP_DST_EN);
        m.write64(0x10, 0xdead_0000);
        m.write32(CH_EN, 0x0101);
        m.run_until_idle();
        assert_eq!(m.errors(), [(0, ModelError::BadLli(0xdead_0000))]);
        assert_eq!(m.raw(IRQ_ERROR), 1);
        // Channel 1, single-block mode from registers, BLOCK_TS too large.
        m.write32(CH_STRIDE + 0x18, 0);
        m.write32(CH_STRIDE + 0x1c, 0x4_0000);
        m.write32(CH_EN, 0x0202);
        assert_eq!(m.errors()[1], (1, ModelError::BlockTooLarge(0x4_0000)));
    }
}
