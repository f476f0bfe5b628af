//! Device drivers.

pub mod edu;
pub mod floppy;
