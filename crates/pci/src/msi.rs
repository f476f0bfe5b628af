//! MSI and MSI-X (PCI Local Bus spec 3.0 §6.8; PCIe base spec 5.0 §7.7) and the x86
//! message format (Intel SDM Vol. 3, "Message Signalled Interrupts": §10.11 in older
//! editions, §11.11 in newer).

use core::fmt;

use hal::RegisterAccess;

use crate::addr::Bdf;
use crate::command::set_intx_disabled;
use crate::config::ConfigAccess;

/// An MSI message: the address the device writes and the data it writes there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    /// Message address.
    pub address: u64,
    /// Message data (16 bits for MSI, 32 for MSI-X).
    pub data: u32,
}

/// Base of the x86 interrupt message window.
pub const X86_MSI_BASE: u64 = 0xFEE0_0000;

impl MsiMessage {
    /// The x86 message for fixed delivery of `vector` to the local APIC `apic_id`,
    /// physical destination mode, edge triggered: address
    /// `0xFEE0_0000 | apic_id << 12` (redirection hint and destination mode 0), data
    /// `vector` (delivery mode 000 = fixed, trigger bit 15 = 0 = edge).
    ///
    /// Vectors 0..=15 are reserved for exceptions and cannot be delivered as fixed
    /// interrupts (SDM: illegal vector).
    pub fn x86(apic_id: u8, vector: u8) -> Result<MsiMessage, MsiError> {
        if vector < 16 {
            return Err(MsiError::ReservedVector(vector));
        }
        Ok(MsiMessage {
            address: X86_MSI_BASE | u64::from(apic_id) << 12,
            data: u32::from(vector),
        })
    }
}

/// Why MSI/MSI-X programming failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsiError {
    /// No capability of this kind at the offset (ID mismatch).
    NotMsi {
        /// Offset given.
        offset: u16,
        /// ID found there.
        found: u8,
    },
    /// More vectors asked for than the device can do, or not a power of two.
    BadVectorCount {
        /// Vectors asked for.
        requested: u32,
        /// Vectors the device supports.
        supported: u32,
    },
    /// Address above 4 GiB for a device with 32-bit message addresses.
    AddressTooHigh(u64),
    /// MSI-X entry index outside the table.
    EntryOutOfRange {
        /// Entry asked for.
        entry: u16,
        /// Table size.
        size: u16,
    },
    /// Vector 0..=15 asked for.
    ReservedVector(u8),
    /// Per-vector masking asked for on a device without it.
    NoMasking,
    /// Data does not fit in MSI's 16-bit data register.
    DataTooWide(u32),
}

impl fmt::Display for MsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MsiError::NotMsi { offset, found } => {
                write!(
                    f,
                    "capability at {offset:#x} has ID {found:#04x}, not MSI/MSI-X"
                )
            }
            MsiError::BadVectorCount {
                requested,
                supported,
            } => write!(
                f,
                "{requested} vectors requested; device supports {supported} (power of two)"
            ),
            MsiError::AddressTooHigh(a) => {
                write!(f, "message address {a:#x} needs 64-bit MSI")
            }
            MsiError::EntryOutOfRange { entry, size } => {
                write!(f, "MSI-X entry {entry} outside table of {size}")
            }
            MsiError::ReservedVector(v) => write!(f, "vector {v} is reserved (< 16)"),
            MsiError::NoMasking => f.write_str("device has no per-vector masking"),
            MsiError::DataTooWide(d) => write!(f, "MSI data {d:#x} wider than 16 bits"),
        }
    }
}

/// MSI Message Control bits (§6.8.1.3).
mod msi_ctl {
    pub const ENABLE: u16 = 1 << 0;
    pub const MMC_SHIFT: u16 = 1;
    pub const MME_SHIFT: u16 = 4;
    pub const MME_MASK: u16 = 0x7 << 4;
    pub const ADDR64: u16 = 1 << 7;
    pub const PER_VECTOR_MASK: u16 = 1 << 8;
}

/// A function's MSI capability, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    /// Function.
    pub bdf: Bdf,
    /// Capability offset.
    pub offset: u16,
    /// 64-bit message address capable.
    pub is_64bit: bool,
    /// Per-vector masking capable.
    pub per_vector_masking: bool,
    /// Multiple Message Capable: log2 of the vectors the device can use (0..=5).
    pub multiple_message_capable: u8,
}

impl Msi {
    /// Reads the MSI capability at `offset`.
    pub fn read<C: ConfigAccess + ?Sized>(cfg: &C, bdf: Bdf, offset: u16) -> Result<Msi, MsiError> {
        let id = cfg.read8(bdf, offset);
        if id != crate::caps::id::MSI {
            return Err(MsiError::NotMsi { offset, found: id });
        }
        let ctl = cfg.read16(bdf, offset + 2);
        Ok(Msi {
            bdf,
            offset,
            is_64bit: ctl & msi_ctl::ADDR64 != 0,
            per_vector_masking: ctl & msi_ctl::PER_VECTOR_MASK != 0,
            // Values 6 and 7 are reserved; clamp to the 32-vector maximum.
            multiple_message_capable: (((ctl >> msi_ctl::MMC_SHIFT) & 0x7) as u8).min(5),
        })
    }

    /// Number of vectors the device can use.
    pub fn max_vectors(&self) -> u32 {
        1 << self.multiple_message_capable
    }

    /// Offset of Message Control.
    pub fn control_offset(&self) -> u16 {
        self.offset + 2
    }
    /// Offset of Message Address (low).
    pub fn address_offset(&self) -> u16 {
        self.offset + 4
    }
    /// Offset of Message Upper Address (64-bit only).
    pub fn upper_address_offset(&self) -> Option<u16> {
        self.is_64bit.then_some(self.offset + 8)
    }
    /// Offset of Message Data.
    pub fn data_offset(&self) -> u16 {
        if self.is_64bit {
            self.offset + 0xC
        } else {
            self.offset + 8
        }
    }
    /// Offset of Mask Bits (per-vector masking only).
    pub fn mask_offset(&self) -> Option<u16> {
        self.per_vector_masking.then_some(if self.is_64bit {
            self.offset + 0x10
        } else {
            self.offset + 0xC
        })
    }
    /// Offset of Pending Bits (per-vector masking only).
    pub fn pending_offset(&self) -> Option<u16> {
        self.mask_offset().map(|m| m + 4)
    }

    /// Programs `msg` for `vectors` vectors (a power of two up to
    /// [`Msi::max_vectors`]; the device puts the vector number in the low data bits),
    /// enables MSI and disables INTx. MSI is off while address and data change so the
    /// device never sends a half-written message.
    pub fn enable<C: ConfigAccess + ?Sized>(
        &self,
        cfg: &C,
        msg: MsiMessage,
        vectors: u32,
    ) -> Result<(), MsiError> {
        if !vectors.is_power_of_two() || vectors > self.max_vectors() {
            return Err(MsiError::BadVectorCount {
                requested: vectors,
                supported: self.max_vectors(),
            });
        }
        if msg.address >> 32 != 0 && !self.is_64bit {
            return Err(MsiError::AddressTooHigh(msg.address));
        }
        let data = u16::try_from(msg.data).map_err(|_| MsiError::DataTooWide(msg.data))?;
        let ctl = cfg.read16(self.bdf, self.control_offset());
        cfg.write16(self.bdf, self.control_offset(), ctl & !msi_ctl::ENABLE);
        cfg.write32(self.bdf, self.address_offset(), msg.address as u32);
        if let Some(up) = self.upper_address_offset() {
            cfg.write32(self.bdf, up, (msg.address >> 32) as u32);
        }
        cfg.write16(self.bdf, self.data_offset(), data);
        let mme = (vectors.trailing_zeros() as u16) << msi_ctl::MME_SHIFT;
        let ctl = (ctl & !(msi_ctl::MME_MASK | msi_ctl::ENABLE)) | mme;
        cfg.write16(self.bdf, self.control_offset(), ctl);
        // INTx off before MSI on: a device must not signal both (PCI 3.0 §6.8).
        set_intx_disabled(cfg, self.bdf, true);
        cfg.write16(self.bdf, self.control_offset(), ctl | msi_ctl::ENABLE);
        Ok(())
    }

    /// Disables MSI (INTx stays disabled; re-enable it with
    /// [`crate::command::set_intx_disabled`] if falling back to INTx).
    pub fn disable<C: ConfigAccess + ?Sized>(&self, cfg: &C) {
        let ctl = cfg.read16(self.bdf, self.control_offset());
        cfg.write16(self.bdf, self.control_offset(), ctl & !msi_ctl::ENABLE);
    }

    /// True when MSI is enabled.
    pub fn is_enabled<C: ConfigAccess + ?Sized>(&self, cfg: &C) -> bool {
        cfg.read16(self.bdf, self.control_offset()) & msi_ctl::ENABLE != 0
    }

    /// Masks or unmasks vector `n` (needs per-vector masking).
    pub fn set_masked<C: ConfigAccess + ?Sized>(
        &self,
        cfg: &C,
        n: u32,
        masked: bool,
    ) -> Result<(), MsiError> {
        let off = self.mask_offset().ok_or(MsiError::NoMasking)?;
        if n >= self.max_vectors() {
            return Err(MsiError::BadVectorCount {
                requested: n + 1,
                supported: self.max_vectors(),
            });
        }
        let old = cfg.read32(self.bdf, off);
        let new = if masked {
            old | 1 << n
        } else {
            old & !(1 << n)
        };
        cfg.write32(self.bdf, off, new);
        Ok(())
    }
}

/// MSI-X Message Control bits (PCIe base spec 5.0 §7.7.2.2).
mod msix_ctl {
    pub const TABLE_SIZE_MASK: u16 = 0x7FF;
    pub const FUNCTION_MASK: u16 = 1 << 14;
    pub const ENABLE: u16 = 1 << 15;
}

/// Bytes per MSI-X table entry.
pub const MSIX_ENTRY_SIZE: u64 = 16;
/// Vector Control bit 0: the entry is masked.
pub const MSIX_ENTRY_MASKED: u32 = 1;

/// A function's MSI-X capability, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiX {
    /// Function.
    pub bdf: Bdf,
    /// Capability offset.
    pub offset: u16,
    /// Number of table entries.
    pub table_size: u16,
    /// BAR holding the table (BIR).
    pub table_bar: u8,
    /// Offset of the table in that BAR (8-byte aligned).
    pub table_offset: u32,
    /// BAR holding the pending-bit array.
    pub pba_bar: u8,
    /// Offset of the PBA in that BAR.
    pub pba_offset: u32,
}

impl MsiX {
    /// Reads the MSI-X capability at `offset`.
    pub fn read<C: ConfigAccess + ?Sized>(
        cfg: &C,
        bdf: Bdf,
        offset: u16,
    ) -> Result<MsiX, MsiError> {
        let id = cfg.read8(bdf, offset);
        if id != crate::caps::id::MSIX {
            return Err(MsiError::NotMsi { offset, found: id });
        }
        let ctl = cfg.read16(bdf, offset + 2);
        let table = cfg.read32(bdf, offset + 4);
        let pba = cfg.read32(bdf, offset + 8);
        Ok(MsiX {
            bdf,
            offset,
            table_size: (ctl & msix_ctl::TABLE_SIZE_MASK) + 1,
            table_bar: (table & 0x7) as u8,
            table_offset: table & !0x7,
            pba_bar: (pba & 0x7) as u8,
            pba_offset: pba & !0x7,
        })
    }

    fn control_offset(&self) -> u16 {
        self.offset + 2
    }

    /// Length in bytes of the table (16 bytes per entry), for mapping it.
    pub fn table_len(&self) -> u64 {
        u64::from(self.table_size) * MSIX_ENTRY_SIZE
    }

    /// Length in bytes of the pending-bit array (one bit per entry, in qwords).
    pub fn pba_len(&self) -> u64 {
        u64::from(self.table_size).div_ceil(64) * 8
    }

    /// True when table and PBA lie inside BARs of the given sizes (from the BAR list;
    /// `bar_size(i)` is `None` for an unimplemented BAR). A table outside its BAR is
    /// a firmware or device bug; programming it would write elsewhere.
    pub fn fits(&self, bar_size: impl Fn(u8) -> Option<u64>) -> bool {
        let inside = |bar: u8, off: u32, len: u64| {
            bar_size(bar).is_some_and(|size| {
                u64::from(off)
                    .checked_add(len)
                    .is_some_and(|end| end <= size)
            })
        };
        inside(self.table_bar, self.table_offset, self.table_len())
            && inside(self.pba_bar, self.pba_offset, self.pba_len())
    }

    /// Byte offset of entry `n` in the table BAR.
    pub fn entry_offset(&self, n: u16) -> Result<usize, MsiError> {
        if n >= self.table_size {
            return Err(MsiError::EntryOutOfRange {
                entry: n,
                size: self.table_size,
            });
        }
        Ok((u64::from(self.table_offset) + u64::from(n) * MSIX_ENTRY_SIZE) as usize)
    }

    /// Enables MSI-X with the function mask set, so no vector fires before its entry
    /// is programmed, and disables INTx. Program entries with [`MsiX::program_entry`]
    /// and then call [`MsiX::set_function_mask`]`(false)`.
    pub fn enable_masked<C: ConfigAccess + ?Sized>(&self, cfg: &C) {
        let ctl = cfg.read16(self.bdf, self.control_offset());
        set_intx_disabled(cfg, self.bdf, true);
        cfg.write16(
            self.bdf,
            self.control_offset(),
            ctl | msix_ctl::ENABLE | msix_ctl::FUNCTION_MASK,
        );
    }

    /// Sets or clears the function mask (all vectors masked).
    pub fn set_function_mask<C: ConfigAccess + ?Sized>(&self, cfg: &C, masked: bool) {
        let ctl = cfg.read16(self.bdf, self.control_offset());
        let new = if masked {
            ctl | msix_ctl::FUNCTION_MASK
        } else {
            ctl & !msix_ctl::FUNCTION_MASK
        };
        cfg.write16(self.bdf, self.control_offset(), new);
    }

    /// Disables MSI-X.
    pub fn disable<C: ConfigAccess + ?Sized>(&self, cfg: &C) {
        let ctl = cfg.read16(self.bdf, self.control_offset());
        cfg.write16(
            self.bdf,
            self.control_offset(),
            ctl & !(msix_ctl::ENABLE | msix_ctl::FUNCTION_MASK),
        );
    }

    /// True when MSI-X is enabled.
    pub fn is_enabled<C: ConfigAccess + ?Sized>(&self, cfg: &C) -> bool {
        cfg.read16(self.bdf, self.control_offset()) & msix_ctl::ENABLE != 0
    }

    /// Writes entry `n` through `table_bar`, a register view of the BAR named by
    /// [`MsiX::table_bar`] (offset 0 = start of the BAR). The entry is masked while
    /// its address and data change and left masked or not as `masked` says
    /// (PCIe 5.0 §6.1.4.2: software must not change an unmasked entry).
    pub fn program_entry<R: RegisterAccess + ?Sized>(
        &self,
        table_bar: &R,
        n: u16,
        msg: MsiMessage,
        masked: bool,
    ) -> Result<(), MsiError> {
        let base = self.entry_offset(n)?;
        let ctrl = table_bar.read32(base + 12);
        table_bar.write32(base + 12, ctrl | MSIX_ENTRY_MASKED);
        table_bar.write32(base, msg.address as u32);
        table_bar.write32(base + 4, (msg.address >> 32) as u32);
        table_bar.write32(base + 8, msg.data);
        if !masked {
            table_bar.write32(base + 12, ctrl & !MSIX_ENTRY_MASKED);
        }
        Ok(())
    }

    /// Masks or unmasks entry `n`.
    pub fn set_entry_masked<R: RegisterAccess + ?Sized>(
        &self,
        table_bar: &R,
        n: u16,
        masked: bool,
    ) -> Result<(), MsiError> {
        let base = self.entry_offset(n)?;
        let ctrl = table_bar.read32(base + 12);
        let new = if masked {
            ctrl | MSIX_ENTRY_MASKED
        } else {
            ctrl & !MSIX_ENTRY_MASKED
        };
        table_bar.write32(base + 12, new);
        Ok(())
    }

    /// Pending bit of entry `n`, read through `pba_bar` (the BAR named by
    /// [`MsiX::pba_bar`]).
    pub fn is_pending<R: RegisterAccess + ?Sized>(
        &self,
        pba_bar: &R,
        n: u16,
    ) -> Result<bool, MsiError> {
        self.entry_offset(n)?;
        let qword = self.pba_offset as usize + usize::from(n / 64) * 8;
        let bit = n % 64;
        let dword = pba_bar.read32(qword + usize::from(bit / 32) * 4);
        Ok(dword >> (bit % 32) & 1 == 1)
    }
}
