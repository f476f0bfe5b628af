//! ACPI device properties: the `_DSD` object's packages under the
//! device-properties UUID (ACPI 6.4 §6.2.5 and the "_DSD Device Properties
//! UUID" document), decoded from a value tree the caller builds from its AML
//! interpreter's result, so the rules run on the host too.
//!
//! A `_DSD` is a package of (UUID buffer, package) pairs. Under the
//! device-properties UUID daffd814-6eba-4d8c-8a91-bc9bbf4aa301 the package
//! holds properties, each `Package () { "Name", value }`. The validity rules
//! are Linux's (`acpi_extract_properties`, drivers/acpi/property.c): an odd
//! element count gives no properties; a pair that is not a 16-byte buffer and
//! a package ends the scan (what came before it stays); a property package
//! that is not all `{ string, value }` pairs is skipped whole; other UUIDs are
//! skipped. When nothing usable is left and something was malformed, the
//! answer is that error, so the caller can say why.
//!
//! The one property the kernel reads is `ExternalFacingPort` on a PCIe root
//! port (Linux `pci_acpi_set_external_facing`, read as a u8): non-zero means
//! everything below the port is outside the machine, so untrusted. Windows
//! documents it in "_DSD for PCIe root ports". Microsoft's `DmaProperty` (a
//! different UUID) was proposed for Linux but is not in mainline, and is not
//! read here.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// daffd814-6eba-4d8c-8a91-bc9bbf4aa301 as ASL's `ToUUID` stores it: the
/// first three fields little-endian, the last two as written.
pub const DEVICE_PROPERTIES_UUID: [u8; 16] = [
    0x14, 0xd8, 0xff, 0xda, 0xba, 0x6e, 0x8c, 0x4d, 0x8a, 0x91, 0xbc, 0x9b, 0xbf, 0x4a, 0xa3, 0x01,
];

/// The property naming a root port that leads out of the machine.
pub const EXTERNAL_FACING_PORT: &str = "ExternalFacingPort";

/// An evaluated AML object, as far as `_DSD` decoding needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Integer(u64),
    String(String),
    Buffer(Vec<u8>),
    Package(Vec<Value>),
    /// Any other object type, by name ("method", "device", "reference", ...).
    Other(&'static str),
}

impl Value {
    /// The object type's name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Integer(_) => "an integer",
            Value::String(_) => "a string",
            Value::Buffer(_) => "a buffer",
            Value::Package(_) => "a package",
            Value::Other(t) => t,
        }
    }
}

/// Why a `_DSD` gave no usable answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DsdError {
    /// `_DSD` is not a package (the type it is).
    NotPackage(&'static str),
    /// (UUID, package) pairs make an even count; this one is odd.
    OddCount(usize),
    /// Element `index` is not a 16-byte UUID buffer followed by a package
    /// (what it is instead).
    BadPair { index: usize, found: &'static str },
    /// In a device-properties package, entry `index` is not
    /// `Package () { "name", value }`.
    BadProperty { index: usize },
    /// The property has a value of the wrong type.
    WrongType { name: String, found: &'static str },
    /// The value does not fit the width the property is read as.
    Overflow { name: String, value: u64, max: u64 },
}

impl fmt::Display for DsdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DsdError::NotPackage(t) => write!(f, "_DSD is {t}, not a package"),
            DsdError::OddCount(n) => {
                write!(f, "_DSD has {n} elements; it must be (UUID, package) pairs")
            }
            DsdError::BadPair { index, found } => write!(
                f,
                "_DSD element {index}: expected a 16-byte UUID buffer and a package, found {found}"
            ),
            DsdError::BadProperty { index } => write!(
                f,
                "device-properties entry {index} is not Package () {{ \"name\", value }}"
            ),
            DsdError::WrongType { name, found } => {
                write!(f, "property {name} is {found}, not an integer")
            }
            DsdError::Overflow { name, value, max } => {
                write!(
                    f,
                    "property {name} = {value:#x} does not fit (max {max:#x})"
                )
            }
        }
    }
}

/// One device-properties package: every entry must be `{ string, value }`.
fn property_set(entries: &[Value]) -> Result<Vec<(&str, &Value)>, DsdError> {
    entries
        .iter()
        .enumerate()
        .map(|(index, e)| match e {
            Value::Package(p) => match p.as_slice() {
                [Value::String(name), value] => Ok((name.as_str(), value)),
                _ => Err(DsdError::BadProperty { index }),
            },
            _ => Err(DsdError::BadProperty { index }),
        })
        .collect()
}

/// Every (name, value) device property in `dsd`, in order, with Linux's
/// validity rules (see the module documentation).
pub fn device_properties(dsd: &Value) -> Result<Vec<(&str, &Value)>, DsdError> {
    let Value::Package(elements) = dsd else {
        return Err(DsdError::NotPackage(dsd.type_name()));
    };
    if !elements.len().is_multiple_of(2) {
        return Err(DsdError::OddCount(elements.len()));
    }
    let mut props = Vec::new();
    let mut first_error = None;
    for (i, pair) in elements.as_chunks::<2>().0.iter().enumerate() {
        let (uuid, set) = match pair {
            [Value::Buffer(uuid), Value::Package(set)] if uuid.len() == 16 => (uuid, set),
            [a, b] => {
                let found = match a {
                    Value::Buffer(u) if u.len() == 16 => b.type_name(),
                    _ => a.type_name(),
                };
                first_error.get_or_insert(DsdError::BadPair {
                    index: 2 * i,
                    found,
                });
                break;
            }
        };
        if uuid.as_slice() != DEVICE_PROPERTIES_UUID {
            continue;
        }
        match property_set(set) {
            Ok(p) => props.extend(p),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if props.is_empty() => Err(e),
        _ => Ok(props),
    }
}

/// The value of property `name` (case-sensitive; the first one if named
/// twice), or `None` when the `_DSD` does not have it.
pub fn property<'a>(dsd: &'a Value, name: &str) -> Result<Option<&'a Value>, DsdError> {
    Ok(device_properties(dsd)?
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v))
}

/// Property `name` read as a u8 (Linux `device_property_read_u8`): an integer
/// that fits, `None` when absent.
pub fn read_u8(dsd: &Value, name: &str) -> Result<Option<u8>, DsdError> {
    match property(dsd, name)? {
        None => Ok(None),
        Some(Value::Integer(v)) => u8::try_from(*v).map(Some).map_err(|_| DsdError::Overflow {
            name: name.into(),
            value: *v,
            max: u8::MAX.into(),
        }),
        Some(other) => Err(DsdError::WrongType {
            name: name.into(),
            found: other.type_name(),
        }),
    }
}

/// Whether a root port's `_DSD` says `ExternalFacingPort` (present and
/// non-zero, as Linux reads it).
pub fn external_facing_port(dsd: &Value) -> Result<bool, DsdError> {
    Ok(read_u8(dsd, EXTERNAL_FACING_PORT)?.is_some_and(|v| v != 0))
}
