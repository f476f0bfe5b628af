//! `devmodels`: behavioural models of hardware for host tests (DESIGN.md §6).
//!
//! A model implements the same traits the kernel implements over real hardware
//! (`hal::RegisterAccess` for registers, and it reaches memory through
//! `hal::PhysMemory`), and reacts the way the hardware — as QEMU 7.2 emulates it
//! (hw-facts) — does. Models are written from the specifications, independently of the
//! drivers they test, so a test can ask the model what a device would see.
//!
//! * [`ahci`] — AHCI host bus adapter with SATA disks: command list, FIS and PRDT
//!   walked in memory through a DMA bus (RAM or an IOMMU), fault injection.
//! * [`lpss`] — an Intel LPSS PCI function's BAR0: power state (starts in D3hot),
//!   private registers, a loopback-capable UART with DMA request lines, the iDMA64.
//! * [`nvme`] — NVMe 1.4 controller with one namespace: admin and I/O queues in
//!   memory, PRP walking with QEMU's rules, MDTS, fault injection (media error, a
//!   command that never completes, controller fatal status).
//! * [`vtd`] — Intel VT-d remapping unit: register file with GCMD/GSTS handshakes,
//!   register and queued invalidation, fault recording, and a DMA request engine that
//!   walks the root/context/second-level tables in memory through its own caches.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod ahci;
pub mod edu;
pub mod i8237;
pub mod idma64;
pub mod lpss;
pub mod nvme;
pub mod vtd;
