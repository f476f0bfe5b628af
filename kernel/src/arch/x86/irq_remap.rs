//! Interrupt messages with and without remapping (Linux: the x86 half of
//! drivers/iommu/irq_remapping.c). Without interrupt remapping a device's MSI
//! carries its vector and destination in the message itself (compatibility
//! format). Once the IOMMU has turned remapping on it registers a
//! [`Remapper`]: from then on every MSI/MSI-X message and every IO-APIC entry
//! is composed through it, in remappable format, naming an interrupt
//! remapping table entry (IRTE) that holds the vector and destination and says
//! which requester may use it. The interrupt code names no IOMMU: the hook is
//! how the layer above reaches down.

use core::sync::atomic::{AtomicU32, Ordering};

use hal::Bdf;
use spin::Once;

/// Why no IRTE could be given for an interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemapError {
    /// No remapping unit with interrupt remapping covers the requester (or
    /// the IO-APIC).
    NoUnit,
    /// The unit's interrupt remapping table is full.
    TableFull,
    /// The unit refused to write the entry (its queue failed).
    Refused,
}

impl core::fmt::Display for RemapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RemapError::NoUnit => "no remapping unit with interrupt remapping covers it",
            RemapError::TableFull => "the interrupt remapping table is full",
            RemapError::Refused => "the remapping unit refused the entry",
        })
    }
}

/// A remappable MSI: (address, data, IRTE index).
pub type RemappedMsi = (u64, u32, u16);

/// What the IOMMU offers once interrupt remapping is on.
pub struct Remapper {
    /// A present IRTE delivering `vector` to this CPU that only `requester`
    /// may use; returns the remappable MSI (address, data) and the entry's index.
    pub msi: fn(requester: Bdf, vector: u8) -> Result<RemappedMsi, RemapError>,
    /// The same for IO-APIC `ioapic_id`'s line: returns the IRTE index for a
    /// remappable redirection entry.
    pub ioapic: fn(ioapic_id: u8, vector: u8, level: bool) -> Result<u16, RemapError>,
}

static REMAPPER: Once<Remapper> = Once::new();

/// The IRTE index each vector was given, plus one (0: not remapped).
static VECTOR_IRTE: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];

/// Registers the IOMMU's remapper: the messages composed after this are in
/// remappable format. Those composed before stay as they are; the IOMMU
/// rewrites the IO-APIC's (`ioapic::remap_routed_lines`) and no driver has
/// set up an MSI yet when it turns remapping on.
pub fn register(r: Remapper) {
    REMAPPER.call_once(|| r);
}

/// Whether interrupt messages are composed in remappable format.
pub fn enabled() -> bool {
    REMAPPER.get().is_some()
}

/// The IRTE index `vector` comes through, when it is remapped.
pub fn irte_of(vector: u8) -> Option<u16> {
    match VECTOR_IRTE[vector as usize].load(Ordering::Relaxed) {
        0 => None,
        n => Some((n - 1) as u16),
    }
}

/// The compatibility-format MSI address/data pair that delivers `vector` to
/// this CPU: address 0xFEE0_0000 | destination APIC ID << 12, data = vector,
/// fixed, edge (SDM Vol. 3A §11.11). Only for messages no device is given
/// (the attack bench's forged ones, the VT-d unit's own fault event, which is
/// never remapped); a device's MSI comes from [`msi_for`].
pub fn msi_message(vector: u8) -> (u64, u32) {
    (
        0xFEE0_0000 | ((super::apic::lapic_id() as u64) << 12),
        vector as u32,
    )
}

/// The MSI (address, data) `requester` must write to raise `vector` on this
/// CPU: remappable format through a new IRTE when interrupt remapping is on,
/// otherwise (or when no unit can give one, logged) compatibility format.
pub fn msi_for(requester: Bdf, vector: u8) -> (u64, u32) {
    if let Some(r) = REMAPPER.get() {
        match (r.msi)(requester, vector) {
            Ok((addr, data, index)) => {
                VECTOR_IRTE[vector as usize].store(index as u32 + 1, Ordering::Relaxed);
                return (addr, data);
            }
            Err(e) => log::warn!(
                "irq: {requester}: vector {vector:#04x} not remapped ({e}); compatibility format"
            ),
        }
    }
    msi_message(vector)
}

/// The remappable redirection entry for a GSI, when remapping is on and the
/// IOMMU gave an IRTE; `None`: program a compatibility-format one.
pub(super) fn ioapic_entry(
    ioapic_id: u8,
    gsi: u32,
    vector: u8,
    level: bool,
    active_low: bool,
) -> Option<u64> {
    let r = REMAPPER.get()?;
    match (r.ioapic)(ioapic_id, vector, level) {
        Ok(index) => {
            VECTOR_IRTE[vector as usize].store(index as u32 + 1, Ordering::Relaxed);
            Some(iommu_vtd::intremap::ioapic_rte(
                index, vector, level, active_low, false,
            ))
        }
        Err(e) => {
            log::warn!("irq: GSI {gsi}: not remapped ({e}); compatibility format");
            None
        }
    }
}
