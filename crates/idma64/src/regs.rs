//! Register map of the iDMA64 (offsets in its window, LPSS BAR0 + 0x800), the LLI
//! layout and field encodings (hw-facts §1.3–1.8).

/// Number of channels the driver uses.
pub const NR_CHAN: usize = 2;
/// Per-channel register block stride.
pub const CH_LENGTH: usize = 0x58;
/// Source address (64-bit).
pub const SAR: usize = 0x00;
/// Destination address (64-bit).
pub const DAR: usize = 0x08;
/// Linked-list pointer (64-bit).
pub const LLP: usize = 0x10;
/// Control, low word.
pub const CTL_LO: usize = 0x18;
/// Control, high word (BLOCK_TS, DONE).
pub const CTL_HI: usize = 0x1c;
/// Configuration, low word.
pub const CFG_LO: usize = 0x40;
/// Configuration, high word.
pub const CFG_HI: usize = 0x44;

/// Interrupt type offsets within the RAW/STATUS/MASK/CLEAR groups.
pub const INT_XFER: usize = 0x00;
/// Block-complete interrupt type offset.
pub const INT_BLOCK: usize = 0x08;
/// Source-transaction interrupt type offset.
pub const INT_SRC_TRAN: usize = 0x10;
/// Destination-transaction interrupt type offset.
pub const INT_DST_TRAN: usize = 0x18;
/// Error interrupt type offset.
pub const INT_ERROR: usize = 0x20;
/// All five interrupt types.
pub const INT_TYPES: [usize; 5] = [INT_XFER, INT_BLOCK, INT_SRC_TRAN, INT_DST_TRAN, INT_ERROR];
/// Raw interrupt status group.
pub const RAW: usize = 0x2c0;
/// Masked interrupt status group.
pub const STATUS: usize = 0x2e8;
/// Interrupt mask group (write-enable convention).
pub const MASK: usize = 0x310;
/// Interrupt clear group (W1C).
pub const CLEAR: usize = 0x338;
/// Combined interrupt status.
pub const STATUS_INT: usize = 0x360;
/// Global configuration (bit 0 DMA_EN).
pub const DMA_CFG: usize = 0x398;
/// Channel enable (write-enable convention).
pub const CH_EN: usize = 0x3a0;
/// DMA_CFG.DMA_EN.
pub const DMA_EN: u32 = 1;

/// Value to set channel bits `m` in a write-enable register.
pub const fn we_set(m: u32) -> u32 {
    (m << 8) | m
}
/// Value to clear channel bits `m` in a write-enable register.
pub const fn we_clear(m: u32) -> u32 {
    m << 8
}

bitflags::bitflags! {
    /// Single-bit fields of CTL_LO (and of an LLI's `ctllo`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct CtlLo: u32 {
        /// Interrupt when this block completes.
        const INT_EN = 1 << 0;
        /// Destination address fixed.
        const DST_FIX = 1 << 8;
        /// Source address fixed.
        const SRC_FIX = 1 << 10;
        /// Fetch the next LLI for the destination.
        const LLP_DST_EN = 1 << 27;
        /// Fetch the next LLI for the source.
        const LLP_SRC_EN = 1 << 28;
        const _ = !0;
    }
}
/// CTL_LO.DST_TR_WIDTH (log2 bytes).
pub const fn ctl_dst_width(log2: u32) -> u32 {
    (log2 & 7) << 1
}
/// CTL_LO.SRC_TR_WIDTH (log2 bytes).
pub const fn ctl_src_width(log2: u32) -> u32 {
    (log2 & 7) << 4
}
/// CTL_LO.DEST_MSIZE (log2 items).
pub const fn ctl_dst_msize(code: u32) -> u32 {
    (code & 7) << 11
}
/// CTL_LO.SRC_MSIZE (log2 items).
pub const fn ctl_src_msize(code: u32) -> u32 {
    (code & 7) << 14
}
/// CTL_LO.TT_FC: memory to memory.
pub const FC_M2M: u32 = 0 << 20;
/// CTL_LO.TT_FC: memory to peripheral.
pub const FC_M2P: u32 = 1 << 20;
/// CTL_LO.TT_FC: peripheral to memory.
pub const FC_P2M: u32 = 2 << 20;
/// CTL_HI.BLOCK_TS mask (bytes, 17 bits).
pub const BLOCK_TS_MASK: u32 = 0x1_ffff;
/// Largest block the hardware takes (CTL_HI.BLOCK_TS, bytes).
pub const HW_MAX_BLOCK: usize = 0x1_ffff;
/// Largest block the driver builds: [`HW_MAX_BLOCK`] rounded down to the widest
/// transfer (4 bytes), so a split keeps later chunks aligned.
pub const MAX_BLOCK: usize = HW_MAX_BLOCK & !3;
/// CTL_HI.DONE.
pub const CTLHI_DONE: u32 = 1 << 17;

bitflags::bitflags! {
    /// CFG_LO bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct CfgLo: u32 {
        /// Destination burst align.
        const DST_BURST_ALIGN = 1 << 0;
        /// Source burst align.
        const SRC_BURST_ALIGN = 1 << 1;
        /// Suspend the channel.
        const CH_SUSP = 1 << 8;
        /// Channel FIFO empty (read-only).
        const FIFO_EMPTY = 1 << 9;
        /// Drain the FIFO while suspending.
        const CH_DRAIN = 1 << 10;
        /// Optimize destination burst length.
        const DST_OPT_BL = 1 << 20;
        /// Optimize source burst length.
        const SRC_OPT_BL = 1 << 21;
        const _ = !0;
    }
}
/// CFG_HI.SRC_PER.
pub const fn cfg_src_per(p: u32) -> u32 {
    p & 0xf
}
/// CFG_HI.DST_PER.
pub const fn cfg_dst_per(p: u32) -> u32 {
    (p & 0xf) << 4
}

/// Size of a hardware LLI.
pub const LLI_SIZE: usize = 40;
/// LLI field offsets.
pub const LLI_SAR: usize = 0x00;
/// LLI DAR offset.
pub const LLI_DAR: usize = 0x08;
/// LLI LLP offset.
pub const LLI_LLP: usize = 0x10;
/// LLI CTL_LO offset.
pub const LLI_CTL_LO: usize = 0x18;
/// LLI CTL_HI offset.
pub const LLI_CTL_HI: usize = 0x1c;
