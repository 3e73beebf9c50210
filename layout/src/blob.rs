//! Checksummed auxiliary files (PQ pivots, PQ codes, and later the label map), as specified
//! in docs/FORMAT.md, "Blob files":
//!
//! ```text
//! offset        size   field
//! 0             8      magic (names the file kind)
//! 8             4      version (u32)
//! 12            4      F = number of u64 fields (≤ 16)
//! 16            8·F    fields (u64 each; meaning per file kind)
//! 16+8F         8      body_bytes (u64)
//! 24+8F         4      CRC32 of bytes 0 .. 24+8F
//! 28+8F         B      body
//! 28+8F+B       4      CRC32 of the body
//! ```

use crate::error::LayoutError;
use crate::storage::StorageRef;
use crate::Result;
use std::io::Read;
use std::path::Path;

/// Most u64 fields a blob header may carry.
pub const MAX_BLOB_FIELDS: usize = 16;

/// A decoded blob: header fields and the verified body.
#[derive(Debug, Clone, PartialEq)]
pub struct Blob {
    /// Format version.
    pub version: u32,
    /// Header fields.
    pub fields: Vec<u64>,
    /// Body bytes (CRC-checked).
    pub body: Vec<u8>,
}

/// Byte offset of the body in a blob with `n_fields` header fields (see the module docs).
pub const fn body_offset(n_fields: usize) -> u64 {
    28 + 8 * n_fields as u64
}

/// The header bytes of a blob (magic, version, fields, body length, header CRC): exactly the
/// first [`body_offset`]`(fields.len())` bytes of the file.
pub fn encode_header(magic: &[u8; 8], version: u32, fields: &[u64], body_bytes: u64) -> Vec<u8> {
    let mut head = Vec::with_capacity(body_offset(fields.len()) as usize);
    head.extend_from_slice(magic);
    head.extend_from_slice(&version.to_le_bytes());
    head.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    fields
        .iter()
        .for_each(|f| head.extend_from_slice(&f.to_le_bytes()));
    head.extend_from_slice(&body_bytes.to_le_bytes());
    let crc = crc32fast::hash(&head);
    head.extend_from_slice(&crc.to_le_bytes());
    head
}

/// Writes a blob file and fsyncs it (with the OS's file I/O).
///
/// # Errors
/// [`LayoutError::Io`]; [`LayoutError::InvalidArgument`] for more than [`MAX_BLOB_FIELDS`] fields.
pub fn write_blob(
    path: &Path,
    magic: &[u8; 8],
    version: u32,
    fields: &[u64],
    body: &[u8],
) -> Result<()> {
    write_blob_via(
        &StorageRef::default(),
        "blob",
        path,
        magic,
        version,
        fields,
        body,
    )
}

/// [`write_blob`] through `storage`, its fsync named `site`.
///
/// # Errors
/// As [`write_blob`].
pub fn write_blob_via(
    storage: &StorageRef,
    site: &'static str,
    path: &Path,
    magic: &[u8; 8],
    version: u32,
    fields: &[u64],
    body: &[u8],
) -> Result<()> {
    let mut w = BlobWriter::create_via(
        storage,
        site,
        path,
        magic,
        version,
        fields,
        body.len() as u64,
    )?;
    w.write(body)?;
    w.finish()
}

/// Bytes a [`BlobWriter`] gathers before each write.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// Writes a blob file whose body arrives in pieces (so that no copy of the whole body need
/// exist in RAM): the body length is fixed up front, the body CRC accumulates as it is
/// written, [`BlobWriter::finish`] appends it and fsyncs. Every write and the fsync go
/// through a [`Storage`] backend.
pub struct BlobWriter {
    path: std::path::PathBuf,
    storage: StorageRef,
    site: &'static str,
    file: std::fs::File,
    /// Bytes not written yet (at most [`WRITE_CHUNK_BYTES`] before a write).
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    offset: u64,
    crc: crc32fast::Hasher,
    remaining: u64,
}

impl BlobWriter {
    /// Creates `path` and writes the header for a body of `body_bytes` bytes (with the OS's
    /// file I/O).
    ///
    /// # Errors
    /// [`LayoutError::Io`]; [`LayoutError::InvalidArgument`] for more than
    /// [`MAX_BLOB_FIELDS`] fields.
    pub fn create(
        path: &Path,
        magic: &[u8; 8],
        version: u32,
        fields: &[u64],
        body_bytes: u64,
    ) -> Result<BlobWriter> {
        Self::create_via(
            &StorageRef::default(),
            "blob",
            path,
            magic,
            version,
            fields,
            body_bytes,
        )
    }

    /// [`BlobWriter::create`] through `storage`; [`BlobWriter::finish`]'s fsync is named
    /// `site`.
    ///
    /// # Errors
    /// As [`BlobWriter::create`].
    pub fn create_via(
        storage: &StorageRef,
        site: &'static str,
        path: &Path,
        magic: &[u8; 8],
        version: u32,
        fields: &[u64],
        body_bytes: u64,
    ) -> Result<BlobWriter> {
        if fields.len() > MAX_BLOB_FIELDS {
            return Err(LayoutError::InvalidArgument {
                field: "fields",
                value: fields.len().to_string(),
                reason: format!("at most {MAX_BLOB_FIELDS}"),
            });
        }
        let head = encode_header(magic, version, fields, body_bytes);
        let file = storage
            .open_rw(path, true, true)
            .map_err(|e| LayoutError::io(path, e))?;
        let whole = body_bytes.saturating_add(head.len() as u64 + 4);
        let mut buf = Vec::with_capacity(whole.min(WRITE_CHUNK_BYTES as u64) as usize);
        buf.extend_from_slice(&head);
        Ok(BlobWriter {
            path: path.into(),
            storage: storage.clone(),
            site,
            file,
            buf,
            offset: 0,
            crc: crc32fast::Hasher::new(),
            remaining: body_bytes,
        })
    }

    /// Writes the gathered bytes at their offset.
    fn flush(&mut self) -> Result<()> {
        self.storage
            .write_at(&self.file, &self.path, &self.buf, self.offset)
            .map_err(|e| LayoutError::io(&self.path, e))?;
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Appends body bytes.
    ///
    /// # Errors
    /// [`LayoutError::Io`]; [`LayoutError::InvalidArgument`] past the declared body length.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 > self.remaining {
            return Err(LayoutError::InvalidArgument {
                field: "blob body",
                value: bytes.len().to_string(),
                reason: format!("only {} bytes of the declared body remain", self.remaining),
            });
        }
        self.remaining -= bytes.len() as u64;
        self.crc.update(bytes);
        let mut rest = bytes;
        while !rest.is_empty() {
            let k = rest
                .len()
                .min(WRITE_CHUNK_BYTES.saturating_sub(self.buf.len()).max(1));
            self.buf.extend_from_slice(&rest[..k]);
            rest = &rest[k..];
            if self.buf.len() >= WRITE_CHUNK_BYTES {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Appends the body CRC and fsyncs.
    ///
    /// # Errors
    /// [`LayoutError::Io`]; [`LayoutError::InvalidArgument`] when the body is short.
    pub fn finish(mut self) -> Result<()> {
        if self.remaining != 0 {
            return Err(LayoutError::InvalidArgument {
                field: "blob body",
                value: self.remaining.to_string(),
                reason: "bytes of the declared body were never written".into(),
            });
        }
        let crc = self.crc.clone().finalize();
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.flush()?;
        self.storage
            .sync(&self.file, &self.path, self.site)
            .map_err(|e| LayoutError::io(&self.path, e))
    }
}

/// Reads a blob's body in pieces (so no copy of the whole body need exist in RAM): the header
/// is verified and the body length checked against the file's size by [`BlobReader::open`];
/// the body CRC accumulates as it is read and [`BlobReader::finish`] checks it. A caller must
/// not act irrevocably on the bytes before `finish` succeeds, or must check them itself.
pub struct BlobReader {
    path: std::path::PathBuf,
    r: std::io::BufReader<std::fs::File>,
    crc: crc32fast::Hasher,
    remaining: u64,
    /// Format version.
    pub version: u32,
    /// Header fields.
    pub fields: Vec<u64>,
    /// Body bytes declared by the header.
    pub body_bytes: u64,
}

impl BlobReader {
    /// Opens `path` as a blob of kind `magic` (versions `1..=max_version`).
    ///
    /// # Errors
    /// As [`read_blob_fields`].
    pub fn open(path: &Path, magic: &[u8; 8], max_version: u32) -> Result<BlobReader> {
        let mut f = std::fs::File::open(path).map_err(|e| LayoutError::io(path, e))?;
        let (version, fields, body_bytes) = read_header(&mut f, path, magic, max_version)?;
        Ok(BlobReader {
            path: path.into(),
            // never more buffer than the file has bytes left (fuzzing's allocation rule)
            r: std::io::BufReader::with_capacity((body_bytes + 4).min(1 << 20) as usize, f),
            crc: crc32fast::Hasher::new(),
            remaining: body_bytes,
            version,
            fields,
            body_bytes,
        })
    }

    /// Body bytes not read yet.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Reads exactly `buf.len()` more body bytes.
    ///
    /// # Errors
    /// [`LayoutError::Io`]; [`LayoutError::InvalidArgument`] past the declared body length.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<()> {
        if buf.len() as u64 > self.remaining {
            return Err(LayoutError::InvalidArgument {
                field: "blob body",
                value: buf.len().to_string(),
                reason: format!(
                    "{}: only {} bytes of the declared body remain",
                    self.path.display(),
                    self.remaining
                ),
            });
        }
        self.r
            .read_exact(buf)
            .map_err(|e| LayoutError::io(&self.path, e))?;
        self.remaining -= buf.len() as u64;
        self.crc.update(buf);
        Ok(())
    }

    /// Checks that the whole body was read and that its CRC matches.
    ///
    /// # Errors
    /// [`LayoutError::InvalidArgument`] when body bytes are left;
    /// [`LayoutError::ChecksumMismatch`] naming "body"; [`LayoutError::Io`].
    pub fn finish(mut self) -> Result<()> {
        if self.remaining != 0 {
            return Err(LayoutError::InvalidArgument {
                field: "blob body",
                value: self.remaining.to_string(),
                reason: format!("{}: bytes of the body were never read", self.path.display()),
            });
        }
        let mut crc = [0u8; 4];
        self.r
            .read_exact(&mut crc)
            .map_err(|e| LayoutError::io(&self.path, e))?;
        let stored = u32::from_le_bytes(crc);
        let got = self.crc.finalize();
        if stored != got {
            return Err(LayoutError::ChecksumMismatch {
                path: self.path,
                what: "body".into(),
                expected: stored,
                got,
            });
        }
        Ok(())
    }
}

fn read_header(
    f: &mut std::fs::File,
    path: &Path,
    magic: &[u8; 8],
    max_version: u32,
) -> Result<(u32, Vec<u64>, u64)> {
    let io = |e| LayoutError::io(path, e);
    let len = f.metadata().map_err(io)?.len();
    let mut fixed = [0u8; 16];
    if len < 16 + 8 + 4 + 4 {
        return Err(LayoutError::SizeMismatch {
            path: path.into(),
            expected_bytes: 32,
            actual_bytes: len,
            detail: "the blob header".into(),
        });
    }
    f.read_exact(&mut fixed).map_err(io)?;
    if &fixed[..8] != magic {
        return Err(LayoutError::corrupt(
            path,
            "header",
            format!(
                "bad magic {:?}, expected {:?}",
                String::from_utf8_lossy(&fixed[..8]),
                String::from_utf8_lossy(magic)
            ),
        ));
    }
    let version = u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
    let nf = u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]) as usize;
    if nf > MAX_BLOB_FIELDS {
        return Err(LayoutError::corrupt(
            path,
            "header",
            format!("{nf} fields (at most {MAX_BLOB_FIELDS})"),
        ));
    }
    let head_len = 16 + 8 * nf + 8;
    if len < (head_len + 8) as u64 {
        return Err(LayoutError::SizeMismatch {
            path: path.into(),
            expected_bytes: (head_len + 8) as u64,
            actual_bytes: len,
            detail: "the blob header".into(),
        });
    }
    let mut rest = vec![0u8; 8 * nf + 8 + 4];
    f.read_exact(&mut rest).map_err(io)?;
    let mut head = fixed.to_vec();
    head.extend_from_slice(&rest[..8 * nf + 8]);
    let stored = u32::from_le_bytes([
        rest[8 * nf + 8],
        rest[8 * nf + 9],
        rest[8 * nf + 10],
        rest[8 * nf + 11],
    ]);
    let got = crc32fast::hash(&head);
    if stored != got {
        return Err(LayoutError::ChecksumMismatch {
            path: path.into(),
            what: "header".into(),
            expected: stored,
            got,
        });
    }
    if version == 0 || version > max_version {
        return Err(LayoutError::field(
            path,
            "version",
            version,
            format!("this build reads versions 1..={max_version}"),
        ));
    }
    let u64_at = |b: &[u8], o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a)
    };
    let fields: Vec<u64> = (0..nf).map(|i| u64_at(&head, 16 + 8 * i)).collect();
    let body_bytes = u64_at(&head, 16 + 8 * nf);
    let expected = (head_len as u64 + 4)
        .checked_add(body_bytes)
        .and_then(|x| x.checked_add(4));
    if expected != Some(len) {
        return Err(LayoutError::SizeMismatch {
            path: path.into(),
            expected_bytes: expected.unwrap_or(u64::MAX),
            actual_bytes: len,
            detail: format!("body_bytes = {body_bytes}"),
        });
    }
    Ok((version, fields, body_bytes))
}

/// Reads and verifies only the header of a blob file of kind `magic` — its version and
/// fields — and checks the declared body length against the file's real size; the body is
/// neither read nor checked (`ssdann info`'s cross-checks).
///
/// # Errors
/// As [`read_blob`], but never a body checksum mismatch.
pub fn read_blob_fields(path: &Path, magic: &[u8; 8], max_version: u32) -> Result<(u32, Vec<u64>)> {
    let mut f = std::fs::File::open(path).map_err(|e| LayoutError::io(path, e))?;
    let (version, fields, _) = read_header(&mut f, path, magic, max_version)?;
    Ok((version, fields))
}

/// Reads and verifies a blob file of kind `magic`; the body length is checked against the
/// file's real size before anything is allocated.
///
/// # Errors
/// [`LayoutError::Io`]; [`LayoutError::Corrupt`] (bad magic, too many fields);
/// [`LayoutError::InvalidField`] (unsupported version); [`LayoutError::SizeMismatch`];
/// [`LayoutError::ChecksumMismatch`] naming "header" or "body".
pub fn read_blob(path: &Path, magic: &[u8; 8], max_version: u32) -> Result<Blob> {
    let io = |e| LayoutError::io(path, e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let (version, fields, body_bytes) = read_header(&mut f, path, magic, max_version)?;
    let mut body = vec![0u8; body_bytes as usize];
    f.read_exact(&mut body).map_err(io)?;
    let mut crc = [0u8; 4];
    f.read_exact(&mut crc).map_err(io)?;
    let stored = u32::from_le_bytes(crc);
    let got = crc32fast::hash(&body);
    if stored != got {
        return Err(LayoutError::ChecksumMismatch {
            path: path.into(),
            what: "body".into(),
            expected: stored,
            got,
        });
    }
    Ok(Blob {
        version,
        fields,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_written_in_pieces_equals_one_written_whole_and_lengths_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write_blob(&a, b"TESTBLOB", 3, &[1, 2], &body).unwrap();
        let mut w = BlobWriter::create(&b, b"TESTBLOB", 3, &[1, 2], body.len() as u64).unwrap();
        for piece in body.chunks(777) {
            w.write(piece).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let off = body_offset(2) as usize;
        assert_eq!(
            &std::fs::read(&a).unwrap()[off..off + body.len()],
            &body[..]
        );
        let mut r = BlobReader::open(&a, b"TESTBLOB", 3).unwrap();
        assert_eq!(
            (r.fields.clone(), r.body_bytes),
            (vec![1, 2], body.len() as u64)
        );
        let mut back = vec![0u8; body.len()];
        for piece in back.chunks_mut(1000) {
            r.read(piece).unwrap();
        }
        assert_eq!(back, body);
        r.finish().unwrap();
        // A flipped body byte is caught by finish(), and reading past the body is refused.
        let mut bytes = std::fs::read(&a).unwrap();
        bytes[100] ^= 1;
        let c = dir.path().join("c");
        std::fs::write(&c, &bytes).unwrap();
        let mut r = BlobReader::open(&c, b"TESTBLOB", 3).unwrap();
        let mut all = vec![0u8; body.len()];
        r.read(&mut all).unwrap();
        assert!(r.read(&mut [0u8]).is_err());
        assert!(matches!(
            r.finish(),
            Err(LayoutError::ChecksumMismatch { .. })
        ));
        assert_eq!(read_blob(&b, b"TESTBLOB", 3).unwrap().body, body);
        let mut w = BlobWriter::create(&b, b"TESTBLOB", 3, &[], 4).unwrap();
        let e = w.write(&[0; 5]).unwrap_err().to_string();
        assert!(
            e.contains("only 4 bytes of the declared body remain"),
            "{e}"
        );
        w.write(&[0; 3]).unwrap();
        let e = w.finish().unwrap_err().to_string();
        assert!(e.contains("1") && e.contains("never written"), "{e}");
    }

    #[test]
    fn round_trip_and_every_corruption_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        write_blob(&p, b"TESTBLOB", 1, &[7, 9], b"hello world").unwrap();
        let b = read_blob(&p, b"TESTBLOB", 1).unwrap();
        assert_eq!(
            (b.fields.clone(), b.body.clone()),
            (vec![7, 9], b"hello world".to_vec())
        );
        assert!(matches!(
            read_blob(&p, b"OTHERBLB", 1),
            Err(LayoutError::Corrupt { .. })
        ));
        let good = std::fs::read(&p).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            std::fs::write(&p, &bad).unwrap();
            assert!(
                read_blob(&p, b"TESTBLOB", 1).is_err(),
                "flip at byte {i} not detected"
            );
        }
        std::fs::write(&p, &good[..good.len() - 1]).unwrap();
        assert!(matches!(
            read_blob(&p, b"TESTBLOB", 1),
            Err(LayoutError::SizeMismatch { .. })
        ));
    }
}
