//! Device drivers.

pub mod edu;
