//! Warnings about odd configuration space: reported, logged, never a panic.

use core::fmt;

use crate::addr::Bdf;

/// Something odd found in one function's configuration space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The function it was found in.
    pub bdf: Bdf,
    /// What was found.
    pub kind: WarningKind,
}

/// The kinds of [`Warning`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarningKind {
    /// A bridge's secondary bus cannot be reached with this config mechanism.
    BusUnreachable {
        /// Bus number.
        bus: u8,
    },
    /// A bridge's secondary bus is not above the bridge's own bus (0 included), so
    /// following it would walk backwards; firmware did not program it.
    BridgeSecondaryNotAbove {
        /// Secondary bus.
        secondary: u8,
    },
    /// Subordinate bus below secondary: the bus range is inconsistent.
    BridgeSubordinateBelowSecondary {
        /// Secondary bus.
        secondary: u8,
        /// Subordinate bus.
        subordinate: u8,
    },
    /// The secondary bus was already scanned (a loop or two bridges claiming it).
    BridgeBusAlreadyVisited {
        /// Secondary bus.
        bus: u8,
    },
    /// The secondary bus lies outside the bus window of the bridge above.
    BridgeOutsideParentWindow {
        /// Secondary bus.
        secondary: u8,
        /// Parent window start.
        start: u8,
        /// Parent window end.
        end: u8,
    },
    /// Functions 1..7 are copies of function 0: the device ignores the function
    /// number, so only function 0 is kept.
    FunctionsAliased,
    /// Header layout other than 0, 1 or 2: only the common part is read.
    UnknownHeaderType {
        /// The layout field.
        layout: u8,
    },
    /// A 64-bit BAR in the last BAR slot has no upper half.
    Bar64InLastSlot {
        /// BAR index.
        index: u8,
    },
    /// Memory BAR type 0b11 (reserved).
    BarReservedType {
        /// BAR index.
        index: u8,
    },
    /// A BAR read back type bits but no size bits.
    BarNoSizeBits {
        /// BAR index.
        index: u8,
        /// Value read back after writing all-ones.
        readback: u32,
    },
    /// A capability pointer outside 0x40..=0xFC.
    CapPointerOutOfRange {
        /// The pointer.
        pointer: u16,
    },
    /// A capability pointer revisits an entry already walked.
    CapLoop {
        /// The pointer.
        pointer: u16,
    },
    /// More capabilities than the walk bound.
    CapTooMany {
        /// The bound.
        limit: usize,
    },
    /// An extended capability pointer outside 0x100..0x1000.
    ExtCapPointerOutOfRange {
        /// The pointer.
        pointer: u16,
    },
    /// An extended capability pointer revisits an entry already walked.
    ExtCapLoop {
        /// The pointer.
        pointer: u16,
    },
    /// More extended capabilities than the walk bound.
    ExtCapTooMany {
        /// The bound.
        limit: usize,
    },
    /// The scan hit its bound on the number of functions.
    TooManyFunctions {
        /// The bound.
        limit: usize,
    },
}

impl fmt::Display for WarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use WarningKind::*;
        match *self {
            BusUnreachable { bus } => write!(f, "bus {bus:02x} not reachable by config access"),
            BridgeSecondaryNotAbove { secondary } => write!(
                f,
                "bridge secondary bus {secondary:02x} not above its own bus; not following"
            ),
            BridgeSubordinateBelowSecondary {
                secondary,
                subordinate,
            } => write!(
                f,
                "bridge bus range [bus {secondary:02x}-{subordinate:02x}] inverted; scanning secondary only"
            ),
            BridgeBusAlreadyVisited { bus } => {
                write!(f, "bridge secondary bus {bus:02x} already scanned; not following")
            }
            BridgeOutsideParentWindow {
                secondary,
                start,
                end,
            } => write!(
                f,
                "bridge secondary bus {secondary:02x} outside parent window [bus {start:02x}-{end:02x}]; not following"
            ),
            FunctionsAliased => f.write_str(
                "functions 1-7 mirror function 0 (function number ignored); keeping function 0",
            ),
            UnknownHeaderType { layout } => write!(f, "unknown header type {layout:02x}"),
            Bar64InLastSlot { index } => write!(f, "BAR {index}: 64-bit BAR in last slot; ignored"),
            BarReservedType { index } => write!(f, "BAR {index}: reserved memory type; ignored"),
            BarNoSizeBits { index, readback } => write!(
                f,
                "BAR {index}: sizing read back {readback:#010x} (no size bits); ignored"
            ),
            CapPointerOutOfRange { pointer } => {
                write!(f, "capability pointer {pointer:#x} out of range; list cut")
            }
            CapLoop { pointer } => write!(f, "capability list loops at {pointer:#x}; list cut"),
            CapTooMany { limit } => write!(f, "more than {limit} capabilities; list cut"),
            ExtCapPointerOutOfRange { pointer } => {
                write!(f, "extended capability pointer {pointer:#x} out of range; list cut")
            }
            ExtCapLoop { pointer } => {
                write!(f, "extended capability list loops at {pointer:#x}; list cut")
            }
            ExtCapTooMany { limit } => {
                write!(f, "more than {limit} extended capabilities; list cut")
            }
            TooManyFunctions { limit } => write!(f, "more than {limit} functions; scan stopped"),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pci {}: {}", self.bdf, self.kind)
    }
}

/// Collects warnings and logs each one as it is found.
#[derive(Debug, Default)]
pub(crate) struct Warnings(pub(crate) alloc::vec::Vec<Warning>);

impl Warnings {
    pub(crate) fn push(&mut self, bdf: Bdf, kind: WarningKind) {
        let w = Warning { bdf, kind };
        log::warn!("{w}");
        self.0.push(w);
    }
}
