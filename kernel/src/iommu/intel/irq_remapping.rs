//! Interrupt remapping in the kernel (Linux: drivers/iommu/intel/irq_remapping.c):
//! turned on once the units are up (`intremap=on`, the default; `intremap=off`
//! keeps compatibility-format interrupts), on every unit or none, as Linux
//! does. Every MSI/MSI-X a driver sets up afterwards and every IO-APIC line
//! gets an interrupt remapping table entry (IRTE) in the unit that covers its
//! requester, usable only by that requester (source-id validation), and the
//! message names only the entry. The table and its owners are what the shell's
//! `iommu ir` shows.
//!
//! QEMU 7.2 (hw-facts §4.12, checked in its `hw/i386/intel_iommu.c`): it does
//! not implement GCMD.CFI, so a compatibility-format MSI is still delivered with
//! remapping on, and it checks an IRTE's source-id only for real MSIs, not for a
//! device's DMA writes into the interrupt window. The attack bench shows both.

use alloc::vec::Vec;

use acpi_tables::dmar::ScopeType;
use iommu_vtd::intremap::{self, Irte, IrteError};
use iommu_vtd::InvalMode;
use spin::{Mutex, Once};

use super::dmar::{dma_aliases, resolve, unit_for};
use super::{get, with_unit, Iommu};
use crate::arch::irq_remap::{self, RemapError, RemappedMsi, Remapper};
use crate::arch::{apic, ioapic};

/// What was given an IRTE, for reuse and for the `iommu ir` view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrteUser {
    /// A device's MSI or MSI-X message (the requester ID its messages carry).
    Msi(pci::Bdf),
    /// An IO-APIC line (the IO-APIC's ID and source-id from the DMAR scope).
    IoApic(u8, pci::Bdf),
}

/// One IRTE handed out.
#[derive(Clone, Copy, Debug)]
pub struct Given {
    pub unit: usize,
    pub index: u16,
    pub vector: u8,
    pub user: IrteUser,
}

/// Interrupt remapping's state, once it is on.
pub struct IrState {
    /// The units it is on (indices into `Iommu::units`): all of them.
    pub units: Vec<usize>,
    /// Each IO-APIC: (APIC ID, unit index, source-id from the DMAR scope).
    pub ioapics: Vec<(u8, usize, pci::Bdf)>,
}

static IR: Once<IrState> = Once::new();
static GIVEN: Mutex<Vec<Given>> = Mutex::new(Vec::new());

/// The state, when interrupt remapping is on.
pub fn state() -> Option<&'static IrState> {
    IR.get()
}

/// Every IRTE handed out, in order.
pub fn given() -> Vec<Given> {
    GIVEN.lock().clone()
}

/// Why interrupt remapping stayed off (for the log and `iommu ir`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Off {
    /// `intremap=off`.
    Option,
    /// A unit lacks ECAP.IR (base address).
    NoIr(u64),
    /// A unit does not use queued invalidation (the IEC is flushed only by the queue).
    NoQueue(u64),
    /// An IO-APIC of the MADT is in no DRHD's scope (its APIC ID).
    IoApicNotScoped(u8),
    /// A unit refused to turn it on.
    EnableFailed(u64, iommu_vtd::Error),
}

impl core::fmt::Display for Off {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Off::Option => f.write_str("intremap=off"),
            Off::NoIr(b) => write!(f, "unit {b:#x} has no interrupt remapping (ECAP.IR clear)"),
            Off::NoQueue(b) => write!(
                f,
                "unit {b:#x} has no queued invalidation (needed for the interrupt entry cache)"
            ),
            Off::IoApicNotScoped(id) => {
                write!(f, "IO-APIC {id} is in no DRHD's device scope (its interrupts could not be remapped)")
            }
            Off::EnableFailed(b, e) => write!(f, "unit {b:#x} refused: {e}"),
        }
    }
}

static WHY_OFF: Once<Off> = Once::new();

/// Why interrupt remapping is off this boot, when the units came up but it did not.
pub fn why_off() -> Option<Off> {
    WHY_OFF.get().copied()
}

/// Turns interrupt remapping on every unit (or none), then registers the
/// remapper with the interrupt code and rewrites the IO-APIC's routed lines in
/// remappable format. Called once the units are up, before any driver binds.
pub(super) fn enable(io: &Iommu, want: bool) {
    match try_enable(io, want) {
        Ok((units, lines)) => log::info!(
            "iommu: interrupt remapping on ({units} unit(s), xAPIC destinations, compatibility format blocked): {lines} IO-APIC line(s) rewritten, MSIs remapped as drivers bind"
        ),
        Err(why) => {
            WHY_OFF.call_once(|| why);
            log::info!("iommu: interrupt remapping off ({why}); interrupts in compatibility format");
        }
    }
}

/// Returns (units, IO-APIC lines rewritten).
fn try_enable(io: &Iommu, want: bool) -> Result<(usize, usize), Off> {
    if !want {
        return Err(Off::Option);
    }
    for e in &io.units {
        with_unit(&e.unit, |u| {
            if !u.ecap().ir {
                Err(Off::NoIr(e.base))
            } else if u.inval_mode() != InvalMode::Queued {
                Err(Off::NoQueue(e.base))
            } else {
                Ok(())
            }
        })?;
    }
    let ioapics = ioapic_scopes(io)?;
    // A line must not fire in compatibility format once the unit blocks it:
    // mask, turn remapping on, rewrite the entries (unmasked).
    ioapic::mask_routed_lines();
    let mut done = Vec::new();
    for (i, e) in io.units.iter().enumerate() {
        if let Err(err) = with_unit(&e.unit, |u| u.enable_interrupt_remapping()) {
            for &j in &done {
                let u: &super::UnitEntry = &io.units[j];
                let _ = with_unit(&u.unit, |u| u.disable_interrupt_remapping());
            }
            ioapic::remap_routed_lines();
            return Err(Off::EnableFailed(e.base, err));
        }
        done.push(i);
    }
    irq_remap::register(Remapper {
        msi: remap_msi,
        ioapic: remap_ioapic,
    });
    let units = done.len();
    IR.call_once(|| IrState {
        units: done,
        ioapics,
    });
    Ok((units, ioapic::remap_routed_lines()))
}

/// Each MADT IO-APIC's unit and source-id, from the DRHD scopes of type IOAPIC.
fn ioapic_scopes(io: &Iommu) -> Result<Vec<(u8, usize, pci::Bdf)>, Off> {
    let madt = crate::acpi::get()
        .map(|p| p.io_apics.as_slice())
        .unwrap_or(&[]);
    let mut out = Vec::new();
    for a in madt {
        let found = io.drhds.iter().find_map(|d| {
            let ui = d.unit?;
            d.scopes
                .iter()
                .filter(|s| s.scope_type == ScopeType::IoApic && s.enumeration_id == a.id)
                // A one-hop path (the usual IO-APIC scope) needs no topology.
                .find_map(|s| resolve(&io.topology, d.segment, s))
                .map(|sid| (a.id, ui, sid))
        });
        out.push(found.ok_or(Off::IoApicNotScoped(a.id))?);
    }
    Ok(out)
}

/// Writes (or rewrites) the IRTE `user` holds for `vector` in unit `ui`.
fn give(
    ui: usize,
    owner: pci::Bdf,
    user: IrteUser,
    vector: u8,
    level: bool,
) -> Result<u16, RemapError> {
    let io = get().ok_or(RemapError::NoUnit)?;
    let entry = io.units.get(ui).ok_or(RemapError::NoUnit)?;
    let mut given = GIVEN.lock();
    let before = given
        .iter()
        .find(|g| g.unit == ui && g.user == user && g.vector == vector)
        .map(|g| g.index);
    let r = with_unit(&entry.unit, |u| {
        let index = match before {
            Some(i) => i,
            None => u.alloc_irte(owner, 1)?,
        };
        let mut irte = Irte::msi(vector, apic::lapic_id(), owner.sid());
        irte.level = level;
        u.set_irte(owner, index, irte).map(|()| index)
    });
    match r {
        Ok(index) => {
            if before.is_none() {
                given.push(Given {
                    unit: ui,
                    index,
                    vector,
                    user,
                });
            }
            Ok(index)
        }
        Err(iommu_vtd::Error::Irte(IrteError::Exhausted)) => Err(RemapError::TableFull),
        Err(e) => {
            log::warn!("iommu: IRTE for {user:?} vector {vector:#04x}: {e}");
            Err(RemapError::Refused)
        }
    }
}

/// The remapper's MSI half: an IRTE in the unit covering `requester`, owned by
/// the requester ID its messages carry (a bridge's, behind a PCIe-to-PCI bridge).
fn remap_msi(requester: pci::Bdf, vector: u8) -> Result<RemappedMsi, RemapError> {
    let st = IR.get().ok_or(RemapError::NoUnit)?;
    let ui = unit_for(requester, None)
        .filter(|u| st.units.contains(u))
        .ok_or(RemapError::NoUnit)?;
    let rid = dma_aliases(requester).last().copied().unwrap_or(requester);
    let index = give(ui, rid, IrteUser::Msi(rid), vector, false)?;
    // SHV with subhandle 0, as Linux writes it: the data carries no vector.
    let (addr, data) = intremap::remappable_msi(index, Some(0));
    Ok((addr, data, index))
}

/// The remapper's IO-APIC half.
fn remap_ioapic(id: u8, vector: u8, level: bool) -> Result<u16, RemapError> {
    let st = IR.get().ok_or(RemapError::NoUnit)?;
    let &(_, ui, sid) = st
        .ioapics
        .iter()
        .find(|a| a.0 == id)
        .ok_or(RemapError::NoUnit)?;
    give(ui, sid, IrteUser::IoApic(id, sid), vector, level)
}
