//! IOMMUs (Linux: drivers/iommu/). Only Intel VT-d exists here (`intel`).

pub mod intel;

pub use intel::*;
