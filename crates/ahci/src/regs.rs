//! The AHCI 1.3.1 register file, command list, received-FIS area and command table,
//! declared once (spec §3 and §4). Offsets are bytes in ABAR (PCI BAR5).

/// Generic host control: host capabilities.
pub const CAP: usize = 0x00;
/// Global host control.
pub const GHC: usize = 0x04;
/// Interrupt status: one bit per port (write 1 to clear).
pub const IS: usize = 0x08;
/// Ports implemented.
pub const PI: usize = 0x0c;
/// Version (major in 31:16, minor in 15:0, BCD-ish: 0x0001_0000 is 1.0).
pub const VS: usize = 0x10;
/// Host capabilities extended.
pub const CAP2: usize = 0x24;

/// First port register block.
pub const PORT_BASE: usize = 0x100;
/// Size of a port register block.
pub const PORT_STRIDE: usize = 0x80;
/// Highest number of ports an HBA can have.
pub const MAX_PORTS: usize = 32;

/// Offset of port register `reg` of port `port`.
pub const fn port(port: usize, reg: usize) -> usize {
    PORT_BASE + port * PORT_STRIDE + reg
}

/// Port: command list base (1 KiB aligned), low 32 bits.
pub const PX_CLB: usize = 0x00;
/// Port: command list base, high 32 bits (only with CAP.S64A).
pub const PX_CLBU: usize = 0x04;
/// Port: received-FIS base (256 B aligned), low 32 bits.
pub const PX_FB: usize = 0x08;
/// Port: received-FIS base, high 32 bits (only with CAP.S64A).
pub const PX_FBU: usize = 0x0c;
/// Port: interrupt status (write 1 to clear).
pub const PX_IS: usize = 0x10;
/// Port: interrupt enable.
pub const PX_IE: usize = 0x14;
/// Port: command and status.
pub const PX_CMD: usize = 0x18;
/// Port: task file data (status in 7:0, error in 15:8).
pub const PX_TFD: usize = 0x20;
/// Port: signature of the attached device.
pub const PX_SIG: usize = 0x24;
/// Port: SATA status (SStatus).
pub const PX_SSTS: usize = 0x28;
/// Port: SATA control (SControl).
pub const PX_SCTL: usize = 0x2c;
/// Port: SATA error (SError, write 1 to clear).
pub const PX_SERR: usize = 0x30;
/// Port: SATA active (NCQ tags).
pub const PX_SACT: usize = 0x34;
/// Port: command issue (one bit per slot).
pub const PX_CI: usize = 0x38;

bitflags::bitflags! {
    /// CAP bits the driver uses.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Cap: u32 {
        /// Supports 64-bit addressing.
        const S64A = 1 << 31;
        /// Supports native command queuing.
        const SNCQ = 1 << 30;
        /// Supports staggered spin-up.
        const SSS = 1 << 27;
        /// Supports command list override.
        const SCLO = 1 << 24;
        /// Supports AHCI mode only.
        const SAM = 1 << 18;
        const _ = !0;
    }
}

impl Cap {
    /// Number of ports (CAP.NP + 1).
    pub const fn ports(self) -> usize {
        (self.bits() & 0x1f) as usize + 1
    }
    /// Number of command slots (CAP.NCS + 1).
    pub const fn slots(self) -> usize {
        ((self.bits() >> 8) & 0x1f) as usize + 1
    }
}

bitflags::bitflags! {
    /// GHC bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Ghc: u32 {
        /// HBA reset (self-clearing).
        const HR = 1 << 0;
        /// Interrupt enable.
        const IE = 1 << 1;
        /// MSI revert to single message.
        const MRSM = 1 << 2;
        /// AHCI enable.
        const AE = 1 << 31;
        const _ = !0;
    }
}

bitflags::bitflags! {
    /// PxIS / PxIE bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PxIs: u32 {
        /// Device-to-host register FIS received.
        const DHRS = 1 << 0;
        /// PIO setup FIS received.
        const PSS = 1 << 1;
        /// DMA setup FIS received.
        const DSS = 1 << 2;
        /// Set device bits FIS received.
        const SDBS = 1 << 3;
        /// Unknown FIS.
        const UFS = 1 << 4;
        /// Descriptor processed (a PRD with I set).
        const DPS = 1 << 5;
        /// Port connect change.
        const PCS = 1 << 6;
        /// Device mechanical presence.
        const DMPS = 1 << 7;
        /// PhyRdy change.
        const PRCS = 1 << 22;
        /// Incorrect port multiplier.
        const IPMS = 1 << 23;
        /// Overflow: the device sent more data than the PRDT holds.
        const OFS = 1 << 24;
        /// Interface non-fatal error.
        const INFS = 1 << 26;
        /// Interface fatal error.
        const IFS = 1 << 27;
        /// Host bus data error.
        const HBDS = 1 << 28;
        /// Host bus fatal error (e.g. a DMA the bus refused).
        const HBFS = 1 << 29;
        /// Task file error: the device set STS.ERR.
        const TFES = 1 << 30;
        /// Cold port detect.
        const CPDS = 1 << 31;
        const _ = !0;
    }
}

impl PxIs {
    /// The errors after which the port has stopped processing commands (spec §6.1.2)
    /// and needs recovery.
    pub const FATAL: PxIs = PxIs::TFES
        .union(PxIs::HBFS)
        .union(PxIs::HBDS)
        .union(PxIs::IFS)
        .union(PxIs::OFS);
    /// What the driver enables in PxIE: completion and every error.
    pub const DEFAULT_IE: PxIs = PxIs::DHRS
        .union(PxIs::PSS)
        .union(PxIs::SDBS)
        .union(PxIs::DPS)
        .union(PxIs::PCS)
        .union(PxIs::PRCS)
        .union(PxIs::FATAL);
}

bitflags::bitflags! {
    /// PxCMD bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PxCmd: u32 {
        /// Start: process the command list.
        const ST = 1 << 0;
        /// Spin-up device.
        const SUD = 1 << 1;
        /// Power on device.
        const POD = 1 << 2;
        /// Command list override.
        const CLO = 1 << 3;
        /// FIS receive enable.
        const FRE = 1 << 4;
        /// FIS receive running (read-only).
        const FR = 1 << 14;
        /// Command list running (read-only).
        const CR = 1 << 15;
        const _ = !0;
    }
}

/// PxTFD.STS.ERR.
pub const TFD_ERR: u32 = 1 << 0;
/// PxTFD.STS.DRQ.
pub const TFD_DRQ: u32 = 1 << 3;
/// PxTFD.STS.BSY.
pub const TFD_BSY: u32 = 1 << 7;
/// PxSSTS.DET / PxSCTL.DET field.
pub const DET_MASK: u32 = 0xf;
/// PxSSTS.DET: device present and PHY communication established.
pub const SSTS_DET_PRESENT: u32 = 3;
/// PxSCTL.DET: perform interface initialisation (COMRESET).
pub const SCTL_DET_COMRESET: u32 = 1;
/// PxSIG of an ATA disk.
pub const SIG_ATA: u32 = 0x0000_0101;
/// PxSIG of an ATAPI device.
pub const SIG_ATAPI: u32 = 0xeb14_0101;

/// Command list: 32 headers of 32 bytes, 1 KiB aligned.
pub const CMD_LIST_SIZE: usize = 1024;
/// One command header.
pub const CMD_HDR_SIZE: usize = 32;
/// Received-FIS area, 256 B aligned.
pub const RX_FIS_SIZE: usize = 256;
/// Offset of the D2H register FIS in the received-FIS area.
pub const RX_FIS_RFIS: usize = 0x40;
/// Offset of the Set Device Bits FIS in the received-FIS area (NCQ completions).
pub const RX_FIS_SDB: usize = 0x58;

/// Command header DW0: FIS length in dwords (bits 4:0).
pub const HDR_CFL_MASK: u32 = 0x1f;
/// Command header DW0: ATAPI.
pub const HDR_A: u32 = 1 << 5;
/// Command header DW0: write (host to device).
pub const HDR_W: u32 = 1 << 6;
/// Command header DW0: prefetchable.
pub const HDR_P: u32 = 1 << 7;
/// Command header DW0: PRDT length shift (bits 31:16).
pub const HDR_PRDTL_SHIFT: u32 = 16;
/// Command header dword offsets.
pub const HDR_DW0: usize = 0x00;
/// Command header: PRD byte count transferred.
pub const HDR_PRDBC: usize = 0x04;
/// Command header: command table base (128 B aligned), low.
pub const HDR_CTBA: usize = 0x08;
/// Command header: command table base, high.
pub const HDR_CTBAU: usize = 0x0c;

/// Command table: command FIS.
pub const CT_CFIS: usize = 0x00;
/// Command table: first PRD entry.
pub const CT_PRDT: usize = 0x80;
/// Command table alignment.
pub const CT_ALIGN: usize = 128;
/// One PRD entry.
pub const PRD_SIZE: usize = 16;
/// PRD DW3: byte count minus one (bits 21:0; bit 0 must be 1: even counts).
pub const PRD_DBC_MASK: u32 = 0x3f_ffff;
/// PRD DW3: interrupt on completion of this entry.
pub const PRD_I: u32 = 1 << 31;
/// Largest PRD entry.
pub const PRD_MAX_BYTES: usize = 4 << 20;

/// FIS type: register, host to device.
pub const FIS_H2D: u8 = 0x27;
/// FIS type: register, device to host.
pub const FIS_D2H: u8 = 0x34;
/// H2D FIS byte 1: this is a command (not a control update).
pub const FIS_H2D_C: u8 = 0x80;
/// H2D FIS length in dwords.
pub const FIS_H2D_DWORDS: u32 = 5;

/// ATA IDENTIFY DEVICE.
pub const ATA_IDENTIFY: u8 = 0xec;
/// ATA READ DMA EXT (48-bit LBA).
pub const ATA_READ_DMA_EXT: u8 = 0x25;
/// ATA WRITE DMA EXT (48-bit LBA).
pub const ATA_WRITE_DMA_EXT: u8 = 0x35;
/// ATA FLUSH CACHE EXT.
pub const ATA_FLUSH_CACHE_EXT: u8 = 0xea;
/// ATA READ FPDMA QUEUED (NCQ).
pub const ATA_READ_FPDMA_QUEUED: u8 = 0x60;
/// ATA WRITE FPDMA QUEUED (NCQ).
pub const ATA_WRITE_FPDMA_QUEUED: u8 = 0x61;
/// Most NCQ tags (the 5 bits of the tag field, and PxSACT's 32 bits).
pub const NCQ_MAX_TAGS: usize = 32;
/// Device register: LBA mode.
pub const ATA_DEV_LBA: u8 = 1 << 6;

/// ATA error register: uncorrectable data (a media error).
pub const ATA_ERR_UNC: u8 = 1 << 6;
/// ATA error register: ID not found (address out of range).
pub const ATA_ERR_IDNF: u8 = 1 << 4;
/// ATA error register: command aborted.
pub const ATA_ERR_ABRT: u8 = 1 << 2;

/// A register host-to-device FIS for `command` at 48-bit `lba` with `count` sectors.
pub fn h2d_fis(command: u8, lba: u64, count: u16) -> [u8; 20] {
    let l = lba.to_le_bytes();
    let c = count.to_le_bytes();
    [
        FIS_H2D,
        FIS_H2D_C,
        command,
        0, // features 7:0
        l[0],
        l[1],
        l[2],
        ATA_DEV_LBA,
        l[3],
        l[4],
        l[5],
        0, // features 15:8
        c[0],
        c[1],
        0, // ICC
        0, // control
        0,
        0,
        0,
        0,
    ]
}

/// A register host-to-device FIS for a READ/WRITE FPDMA QUEUED `command`: the
/// sector count moves to FEATURES (bytes 3 and 11, 0 meaning 65536) and the sector
/// count field carries the NCQ tag in bits 7:3 (ATA8-ACS 7.23/7.63).
pub fn fpdma_fis(command: u8, lba: u64, count: u16, tag: usize) -> [u8; 20] {
    let mut fis = h2d_fis(command, lba, 0);
    let c = count.to_le_bytes();
    fis[3] = c[0];
    fis[11] = c[1];
    fis[12] = ((tag as u8) & 0x1f) << 3;
    fis[13] = 0;
    fis
}

/// LBA from a register FIS (bytes 4-6 and 8-10), as a device reports the failing
/// sector in its D2H FIS.
pub fn fis_lba(fis: &[u8; 20]) -> u64 {
    u64::from_le_bytes([fis[4], fis[5], fis[6], fis[8], fis[9], fis[10], 0, 0])
}

/// The 4 dwords of a PRD entry for `bytes` at bus address `addr`.
pub fn prd(addr: u64, bytes: usize) -> [u32; 4] {
    // DW0: data base address bits 31:0 (DBA; bit 0 reserved, so word aligned),
    // DW1: bits 63:32 (DBAU), DW2: reserved (0), DW3: DBC in bits 21:0 (`PRD_DBC_MASK`)
    // and bit 31 (I, interrupt after this entry: not used here). AHCI 1.3.1 §4.2.3.3.
    // exercise(ahci-prdt): begin
    [
        addr as u32,
        (addr >> 32) as u32,
        0,
        (bytes as u32 - 1) & PRD_DBC_MASK,
    ]
    // exercise(ahci-prdt): stub
    // let _ = (addr, bytes);
    // todo!("exercise ahci-prdt: the four dwords of a PRD entry")
    // exercise(ahci-prdt): end
}
