//! Device drivers.

pub mod edu;
pub mod floppy;
pub mod i8042;
