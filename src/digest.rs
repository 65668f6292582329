//! SHA-256 digests as lowercase hex: of one buffer ([`sha256_hex`]), of a file read
//! in chunks ([`sha256_file`]), and of a sequence of fields each prefixed by its length ([`Fields`]), so that where one
//! field ends and the next begins is part of what is hashed.

use sha2::{Digest as _, Sha256};

/// SHA-256 of `bytes`, as 64 hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Size in bytes and SHA-256 of the file at `path`, read in chunks.
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<(u64, String)> {
    let mut h = Sha256::new();
    let n = std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
    Ok((n, hex(&h.finalize())))
}

/// A SHA-256 over length-prefixed fields.
#[derive(Default)]
pub struct Fields(Sha256);

impl Fields {
    /// Adds one field: its length (u64, little endian), then its bytes.
    pub fn put(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// The digest of every field so far, as 64 hex digits.
    pub fn hex(self) -> String {
        hex(&self.0.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
