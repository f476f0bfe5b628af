//! Which remapping unit translates a device (VT-d spec §8.3, Linux's
//! `dmar_find_matched_drhd_unit` / `device_to_iommu`).
//!
//! A DRHD covers the devices its scopes name: an endpoint scope names one
//! function, a sub-hierarchy scope a bridge and everything below it, however
//! deep (devices behind a switch below a listed root port included). A DRHD
//! with INCLUDE_PCI_ALL covers every other device of its segment. The DMAR
//! scopes are resolved against the enumerated topology first (multi-hop paths
//! included), so here a scope is just a [`Bdf`].
//!
//! A unit whose bring-up failed still owns the devices its scopes name: their
//! DMA goes through that (unusable) unit on the real machine, never through
//! the catch-all one, so routing them elsewhere would program tables nothing
//! reads. [`Coverage::FailedUnit`] says so, and the device gets no IOMMU.

use alloc::vec::Vec;

use hal::Bdf;

/// One DRHD's reach, its scopes resolved to requester IDs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitScope {
    /// PCI segment of the DRHD.
    pub segment: u16,
    /// INCLUDE_PCI_ALL: every device of the segment no other unit names.
    pub include_all: bool,
    /// Endpoint scopes (type 1).
    pub endpoints: Vec<Bdf>,
    /// Sub-hierarchy scopes (type 2): these bridges and all below them.
    pub bridges: Vec<Bdf>,
    /// The unit came up and translates; `false` when bring-up failed.
    pub usable: bool,
}

/// Where a device's DMA is remapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// By the unit at this index.
    Unit(usize),
    /// By the unit at this index, whose bring-up failed: no IOMMU for it.
    FailedUnit(usize),
    /// No DRHD covers it.
    None,
}

impl Coverage {
    /// The usable unit, if any.
    pub fn unit(self) -> Option<usize> {
        match self {
            Coverage::Unit(i) => Some(i),
            _ => None,
        }
    }
}

/// The unit covering the device at `path[0]` on `segment`, where `path` is
/// the device followed by the bridges above it, nearest first (see
/// `pci::Topology::ancestors`). The nearest match wins: the device itself in
/// any scope, then each ancestor bridge in a sub-hierarchy scope (or an
/// endpoint scope naming the bridge, which Linux treats the same way), then
/// the INCLUDE_PCI_ALL unit of the segment.
pub fn coverage(units: &[UnitScope], segment: u16, path: &[Bdf]) -> Coverage {
    let found = |i: usize| {
        if units.get(i).is_some_and(|u| u.usable) {
            Coverage::Unit(i)
        } else {
            Coverage::FailedUnit(i)
        }
    };
    for b in path {
        let hit = units.iter().position(|u| {
            u.segment == segment && (u.bridges.contains(b) || u.endpoints.contains(b))
        });
        if let Some(i) = hit {
            return found(i);
        }
    }
    match units
        .iter()
        .position(|u| u.segment == segment && u.include_all)
    {
        Some(i) => found(i),
        None => Coverage::None,
    }
}
