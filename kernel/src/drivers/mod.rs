//! Device drivers.

pub mod ahci;
pub mod edu;
pub mod floppy;
pub mod i8042;
pub mod nvme;
