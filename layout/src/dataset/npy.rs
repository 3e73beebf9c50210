//! NumPy `.npy` headers (format 1.0, 2.0, 3.0): a 2-D C-order array of `<f4`, `|u1` or `|i1`;
//! the header's shape is checked against the file's real length. [`npy_bytes`] writes one
//! (format 1.0).

use super::{read_u32_at, ElementType, VectorFile};
use crate::error::LayoutError;
use crate::Result;
use std::path::Path;

/// A `.npy` file (format 1.0, C order) of a `rows × cols` array of dtype `descr` (e.g.
/// `<u8` for u64, `<f4` for f32) holding the little-endian bytes `body`; the header is padded
/// so the data starts at a multiple of 64 bytes, as NumPy writes it.
///
/// # Panics
/// If `body.len()` is not `rows × cols` × the dtype's size (a broken caller invariant).
pub fn npy_bytes(descr: &str, rows: usize, cols: usize, body: &[u8]) -> Vec<u8> {
    let size: usize = descr[2..].parse().unwrap_or(0);
    assert_eq!(body.len(), rows * cols * size, "npy body size");
    npy_file(
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}"),
        body,
    )
}

/// Magic, version 1.0, the header dict `h` padded so the data starts at a multiple of 64
/// bytes, then `body`.
fn npy_file(mut h: String, body: &[u8]) -> Vec<u8> {
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(body);
    b
}

/// Parses the header of the `.npy` file `path` (mapped as `bytes`): (element type, n, d,
/// byte offset of the data, row stride in bytes).
///
/// # Errors
/// [`LayoutError::Corrupt`] for a bad magic, version or header text;
/// [`LayoutError::InvalidField`] for an unsupported dtype, order or shape;
/// [`LayoutError::SizeMismatch`] when the shape does not match the file's length.
pub(super) fn parse_npy(
    path: &Path,
    bytes: &[u8],
) -> Result<(ElementType, usize, usize, usize, usize)> {
    let len = bytes.len() as u64;
    if len < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(LayoutError::corrupt(
            path,
            "npy header",
            "missing the \\x93NUMPY magic",
        ));
    }
    let major = bytes[6];
    let (hlen, hstart) = match major {
        1 => (
            usize::from(u16::from_le_bytes([bytes[8], bytes[9]])),
            10usize,
        ),
        2 | 3 if len >= 12 => (read_u32_at(bytes, 8) as usize, 12usize),
        _ => {
            return Err(LayoutError::field(
                path,
                "npy version",
                major,
                "supported versions are 1, 2 and 3",
            ))
        }
    };
    let hend = hstart
        .checked_add(hlen)
        .filter(|&e| e as u64 <= len)
        .ok_or_else(|| LayoutError::SizeMismatch {
            path: path.into(),
            expected_bytes: (hstart + hlen) as u64,
            actual_bytes: len,
            detail: "the npy header length".into(),
        })?;
    let header = std::str::from_utf8(&bytes[hstart..hend])
        .map_err(|_| LayoutError::corrupt(path, "npy header", "not valid text"))?;
    let field = |key: &str| -> Option<&str> {
        let k = header.find(&format!("'{key}'"))?;
        let rest = &header[k + key.len() + 2..];
        let colon = rest.find(':')?;
        Some(rest[colon + 1..].trim_start())
    };
    let descr = field("descr")
        .and_then(|v| v.strip_prefix('\''))
        .and_then(|v| v.split('\'').next())
        .ok_or_else(|| LayoutError::corrupt(path, "npy header", "no 'descr'"))?;
    let elem = match descr {
        "<f4" | "f4" => ElementType::F32,
        "|u1" | "u1" | "<u1" => ElementType::U8,
        "|i1" | "i1" | "<i1" => ElementType::I8,
        other => {
            return Err(LayoutError::field(
                path,
                "descr",
                other,
                "supported dtypes are float32 (<f4), uint8 (|u1) and int8 (|i1)",
            ))
        }
    };
    let fortran = field("fortran_order")
        .ok_or_else(|| LayoutError::corrupt(path, "npy header", "no 'fortran_order'"))?;
    if fortran.starts_with("True") {
        return Err(LayoutError::field(
            path,
            "fortran_order",
            "True",
            "only C-order arrays are supported (use np.ascontiguousarray)",
        ));
    }
    let shape = field("shape")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or_else(|| LayoutError::corrupt(path, "npy header", "no 'shape'"))?;
    let dims: Vec<&str> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if dims.len() != 2 {
        return Err(LayoutError::field(
            path,
            "shape",
            format!("({shape})"),
            "expected a 2-D array (n, d)",
        ));
    }
    let parse = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| LayoutError::field(path, "shape", format!("({shape})"), "not integers"))
    };
    let (n, d) = (parse(dims[0])?, parse(dims[1])?);
    VectorFile::check_counts(path, n, d)?;
    let row = d * elem.size_bytes() as u64;
    let expected = n
        .checked_mul(row)
        .and_then(|x| x.checked_add(hend as u64))
        .ok_or_else(|| {
            LayoutError::field(path, "shape", format!("({shape})"), "n × d overflows")
        })?;
    if expected != len {
        return Err(LayoutError::SizeMismatch {
            path: path.into(),
            expected_bytes: expected,
            actual_bytes: len,
            detail: format!("npy shape ({n}, {d}) {descr}"),
        });
    }
    Ok((elem, n as usize, d as usize, hend, row as usize))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::dataset::tests::tmp;
    use crate::dataset::{ElementType, VectorFile};
    use crate::error::LayoutError;

    fn npy(descr: &str, shape: &str, fortran: bool, body: &[u8]) -> Vec<u8> {
        super::npy_file(
            format!(
                "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
                if fortran { "True" } else { "False" }
            ),
            body,
        )
    }

    #[test]
    fn npy_bytes_round_trips_through_the_reader() {
        let body: Vec<u8> = [1.5f32, -2.0, 3.25, 4.0, 5.0, 6.5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b = super::npy_bytes("<f4", 3, 2, &body);
        assert_eq!(
            b.len() % 64,
            body.len() % 64,
            "data starts at a multiple of 64"
        );
        let (_d, p) = tmp("w.npy", &b);
        let f = VectorFile::open(&p).unwrap();
        assert_eq!((f.len(), f.dim()), (3, 2));
        assert_eq!(
            &*f.contiguous::<f32>().unwrap(),
            &[1.5, -2.0, 3.25, 4.0, 5.0, 6.5]
        );
    }

    #[test]
    fn npy_f32_u8_i8() {
        let body: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let (_d, p) = tmp("a.npy", &npy("<f4", "(2, 3)", false, &body));
        let f = VectorFile::open(&p).unwrap();
        assert_eq!(
            (f.len(), f.dim(), f.element_type()),
            (2, 3, ElementType::F32)
        );
        assert_eq!(
            &*f.contiguous::<f32>().unwrap(),
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        let (_d, p) = tmp("b.npy", &npy("|u1", "(3, 1)", false, &[7, 8, 9]));
        assert_eq!(
            VectorFile::open(&p).unwrap().element_type(),
            ElementType::U8
        );
        let (_d, p) = tmp("c.npy", &npy("|i1", "(1, 2)", false, &[255, 1]));
        assert_eq!(
            VectorFile::open(&p).unwrap().element_type(),
            ElementType::I8
        );
        let (_d, p) = tmp("d.npy", &npy("<f8", "(1, 1)", false, &[0; 8]));
        assert!(matches!(
            VectorFile::open(&p),
            Err(LayoutError::InvalidField { field: "descr", .. })
        ));
        let (_d, p) = tmp("e.npy", &npy("<f4", "(1, 1)", true, &[0; 4]));
        assert!(matches!(
            VectorFile::open(&p),
            Err(LayoutError::InvalidField {
                field: "fortran_order",
                ..
            })
        ));
        let (_d, p) = tmp("f.npy", &npy("<f4", "(6,)", false, &body));
        assert!(matches!(
            VectorFile::open(&p),
            Err(LayoutError::InvalidField { field: "shape", .. })
        ));
        let (_d, p) = tmp("g.npy", &npy("<f4", "(2, 3)", false, &body[..20]));
        assert!(matches!(
            VectorFile::open(&p),
            Err(LayoutError::SizeMismatch { .. })
        ));
    }
}
