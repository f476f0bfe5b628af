//! `hal`: the bottom layer of Busmaster.
//!
//! Everything above this crate is generic over the traits defined here, so it can run
//! on the real machine (the kernel implements the traits with its direct map, volatile
//! MMIO and port I/O) and on the host (tests use `Arena`, feature `arena`, as fake physical memory).
//!
//! * [`DmaAddr`] — bus/device addresses, kept apart from [`PhysAddr`] (DESIGN.md §1).
//! * [`Bdf`] — a PCI function address (segment, bus, device, function) and its
//!   requester ID.
//! * [`PhysMemory`] — byte access to physical memory; [`DirectMap`] implements it for the
//!   kernel through its linear map of all RAM.
//! * [`RegisterAccess`] — 8/16/32/64-bit register access at an offset (MMIO or port I/O).
//! * [`barrier`] — `wmb`/`rmb`/`mb` and `clflush_range`.
//! * [`DmaParams`] — a device's DMA masks and segment limits, shared by the PCI and DMA layers.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

// `cargo test --workspace` unifies features across the workspace, and the
// kernel (built for x86_64-unknown-none, which has no std) shares this crate
// with tests that enable `arena`; so the std parts also require a target
// with an OS.
#[cfg(all(feature = "std", not(target_os = "none")))]
extern crate std;

pub mod addr;
#[cfg(any(test, all(feature = "arena", not(target_os = "none"))))]
pub mod arena;
pub mod barrier;
pub mod direct;
pub mod dma_params;
pub mod phys;
pub mod regs;

pub use addr::{Bdf, BdfError, DmaAddr};
#[cfg(any(test, all(feature = "arena", not(target_os = "none"))))]
pub use arena::Arena;
pub use barrier::{clflush_range, dma_rmb, dma_wmb, mb, rmb, wmb};
pub use direct::DirectMap;
pub use dma_params::{dma_bit_mask, DmaMaskError, DmaParams};
pub use phys::PhysMemory;
pub use regs::{Mmio, PortIo, RegisterAccess};
pub use x86_64::{PhysAddr, VirtAddr};

/// Size of a base page (4 KiB) in bytes.
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
