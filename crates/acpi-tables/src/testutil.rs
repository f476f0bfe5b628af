//! Builders for synthetic tables in unit tests.

use alloc::vec::Vec;

use crate::sdt::fix_checksum;

/// A table with a standard header and `body` after it; length and checksum
/// filled in.
pub fn sdt(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(sig);
    t.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend_from_slice(b"BOCHS ");
    t.extend_from_slice(b"BXPC    ");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"BXPC");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    fix_checksum(&mut t);
    t
}

/// Re-stamps the length field to the buffer's size and fixes the checksum,
/// after a test edited the bytes.
pub fn restamp(t: &mut [u8]) {
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    fix_checksum(t);
}

/// A DMAR device scope.
pub fn scope(ty: u8, enum_id: u8, bus: u8, path: &[(u8, u8)]) -> Vec<u8> {
    let mut s = alloc::vec![ty, (6 + 2 * path.len()) as u8, 0, 0, enum_id, bus];
    for &(d, f) in path {
        s.push(d);
        s.push(f);
    }
    s
}

/// A DMAR remapping structure with `fixed` bytes after the type/length
/// header and `scopes` after those.
pub fn structure(ty: u16, fixed: &[u8], scopes: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = fixed
        .iter()
        .copied()
        .chain(scopes.iter().flatten().copied())
        .collect();
    let mut s = Vec::new();
    s.extend_from_slice(&ty.to_le_bytes());
    s.extend_from_slice(&((4 + body.len()) as u16).to_le_bytes());
    s.extend_from_slice(&body);
    s
}

pub fn drhd(flags: u8, size: u8, segment: u16, base: u64, scopes: &[Vec<u8>]) -> Vec<u8> {
    let mut f = alloc::vec![flags, size];
    f.extend_from_slice(&segment.to_le_bytes());
    f.extend_from_slice(&base.to_le_bytes());
    structure(0, &f, scopes)
}

pub fn rmrr(segment: u16, base: u64, limit: u64, scopes: &[Vec<u8>]) -> Vec<u8> {
    let mut f = alloc::vec![0, 0];
    f.extend_from_slice(&segment.to_le_bytes());
    f.extend_from_slice(&base.to_le_bytes());
    f.extend_from_slice(&limit.to_le_bytes());
    structure(1, &f, scopes)
}

/// A DMAR table: header, HAW byte, flags, 10 reserved bytes, structures.
pub fn dmar(haw: u8, flags: u8, structures: &[Vec<u8>]) -> Vec<u8> {
    let mut body = alloc::vec![haw, flags];
    body.extend_from_slice(&[0; 10]);
    for s in structures {
        body.extend_from_slice(s);
    }
    sdt(b"DMAR", 1, &body)
}
