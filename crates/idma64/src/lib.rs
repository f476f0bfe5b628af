//! `idma64`: Intel LPSS iDMA64 controller driver (a dmaengine provider).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
