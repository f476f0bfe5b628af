//! Device properties (`_DSD`) of PCI functions in the loaded namespace (Linux:
//! drivers/acpi/property.c and `pci_acpi_set_external_facing` in
//! drivers/pci/pci-acpi.c): a root port's ACPI companion is found by `_ADR`
//! under its host bridge, its `_DSD` evaluated and handed, as an
//! `acpi_tables::property::Value` tree, to the decoder the host tests check.

use alloc::string::String;
use core::fmt;

use acpi_tables::property::{self, DsdError, Value};
use aml::{AmlName, AmlValue};

use super::{err_text, node_for, NAMESPACE};

/// Why a function's `ExternalFacingPort` could not be read. The first three
/// are ordinary (most ports have no companion or no `_DSD`); the last two
/// are firmware bugs worth a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyError {
    /// The AML namespace is not loaded.
    NotLoaded,
    /// No PCI host bridge in the namespace decodes this bus.
    NoHostBridge(u8),
    /// No Device under the host bridge has this function's `_ADR`.
    NoCompanion,
    /// The companion (named) has no `_DSD`.
    NoDsd(String),
    /// Evaluating the companion's `_DSD` failed.
    Eval(String, String),
    /// The `_DSD` did not hold a usable answer.
    Malformed(String, DsdError),
}

impl fmt::Display for PropertyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertyError::NotLoaded => f.write_str("the AML namespace is not loaded"),
            PropertyError::NoHostBridge(b) => {
                write!(
                    f,
                    "no PCI host bridge in the ACPI namespace for bus {b:#04x}"
                )
            }
            PropertyError::NoCompanion => f.write_str("no ACPI device with its _ADR"),
            PropertyError::NoDsd(node) => write!(f, "{node} has no _DSD"),
            PropertyError::Eval(node, e) => write!(f, "evaluating {node}._DSD: {e}"),
            PropertyError::Malformed(node, e) => write!(f, "{node}._DSD: {e}"),
        }
    }
}

impl PropertyError {
    /// Whether the firmware described the port wrongly (as opposed to not
    /// describing it at all).
    pub fn is_firmware_bug(&self) -> bool {
        matches!(self, PropertyError::Eval(..) | PropertyError::Malformed(..))
    }
}

/// Deep enough for any `_DSD` (pairs, property packages, value packages);
/// deeper nesting is cut off, never followed without bound.
const MAX_DEPTH: usize = 6;

/// The interpreter's value as the decoder's tree.
fn to_value(v: &AmlValue, depth: usize) -> Value {
    match v {
        AmlValue::Integer(i) => Value::Integer(*i),
        AmlValue::Boolean(b) => Value::Integer(u64::from(*b)),
        AmlValue::String(s) => Value::String(s.clone()),
        AmlValue::Buffer(b) => Value::Buffer(b.lock().clone()),
        AmlValue::Package(p) if depth < MAX_DEPTH => {
            Value::Package(p.iter().map(|e| to_value(e, depth + 1)).collect())
        }
        AmlValue::Package(_) => Value::Other("a package nested too deep"),
        AmlValue::Method { .. } => Value::Other("a method"),
        AmlValue::Device => Value::Other("a device"),
        _ => Value::Other("an object of another type"),
    }
}

/// Whether the PCIe root port at `root_bus`:`dev`.`func` (on the bus its host
/// bridge decodes) has the `ExternalFacingPort` device property, non-zero.
/// Linux reads it on root ports only, so only the host bridge's direct
/// children are looked at.
pub fn root_port_external_facing(root_bus: u8, dev: u8, func: u8) -> Result<bool, PropertyError> {
    let mut ns = NAMESPACE.lock();
    let l = ns.as_mut().ok_or(PropertyError::NotLoaded)?;
    let root = l
        .roots
        .iter()
        .find(|(_, b)| *b == root_bus)
        .map(|(n, _)| n.clone())
        .ok_or(PropertyError::NoHostBridge(root_bus))?;
    let node = node_for(&mut l.ctx, &root, dev, func).ok_or(PropertyError::NoCompanion)?;
    let name = node.as_string();
    let path = AmlName::from_str("_DSD")
        .and_then(|n| n.resolve(&node))
        .map_err(|e| PropertyError::Eval(name.clone(), err_text(&e)))?;
    if l.ctx.namespace.get_by_path(&path).is_err() {
        return Err(PropertyError::NoDsd(name));
    }
    let dsd = l
        .ctx
        .invoke_method(&path, aml::value::Args::EMPTY)
        .map_err(|e| PropertyError::Eval(name.clone(), err_text(&e)))?;
    let tree = to_value(&dsd, 0);
    property::external_facing_port(&tree).map_err(|e| PropertyError::Malformed(name, e))
}
