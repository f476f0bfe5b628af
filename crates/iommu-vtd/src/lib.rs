//! `iommu-vtd`: Intel VT-d DMA remapping for Busmaster (DESIGN.md §5).
//!
//! * [`regs`] — the register map, GCMD/GSTS/FSTS bits, CAP/ECAP decoders.
//! * [`tables`] — root, context and second-level entry formats (legacy mode).
//! * [`inval`] — invalidation requests and queued-invalidation descriptors.
//! * [`intremap`] — interrupt remapping: IRTEs, remappable MSI/IO-APIC formats, IEC.
//! * [`fault`] — fault recording registers decoded into [`FaultRecord`]s.
//! * [`iova`] — the per-domain IOVA allocator with "reuse only after flush":
//!   `queue_iova` (defer until the IOTLB flush), `free_iova` (free at once),
//!   `iotlb_flushed` (the flush completed: release what was queued).
//! * [`policy`] — boot decisions: the mode (with the platform opt-in), graphics
//!   and empty units, the skip-TE-disable quirk.
//! * [`scope`] — which unit covers a device (ancestor bridges, failed units).
//! * [`unit`](mod@unit) — [`RemappingUnit`], which drives one DRHD, one module per
//!   part of the hardware: bring-up and GCMD/GSTS, root/context tables and
//!   attach/detach, invalidation (register and queued), faults, domains, page
//!   tables, interrupt remapping.
//! * [`flush_queue`] — the strict/lazy IOTLB flush policy and the DMA API's
//!   map/unmap path above the unit (Linux's dma-iommu flush queue).
//!
//! Spec references are to the Intel VT-d Architecture Specification rev 4.x; QEMU
//! behaviour notes come from hw-facts §4.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

extern crate alloc;

pub mod fault;
pub mod flush_queue;
pub mod frames;
pub mod intremap;
pub mod inval;
pub mod iova;
pub mod policy;
pub mod regs;
pub mod scope;
pub mod tables;
pub mod unit;

pub use fault::{FaultReason, FaultRecord, RateLimit};
pub use frames::{BumpFrames, FrameAlloc};
pub use intremap::{IecInval, Irte, IrteAllocator, IrteError, SourceValidation};
pub use inval::{ContextInval, InvalMode, IotlbInval};
pub use iova::{IovaAllocator, IovaError};
pub use regs::{Cap, Ecap};
pub use scope::{coverage, Coverage, UnitScope};
pub use tables::Perm;
pub use unit::{
    quiesce, Config, DomainId, DomainKind, Error, Handoff, RemappingUnit, Stats, Translation,
    UnmapInfo,
};
