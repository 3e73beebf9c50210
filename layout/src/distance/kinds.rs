//! What a stored vector is made of ([`ElementType`]) and how two are compared ([`Metric`]):
//! the two enums every file format, parameter and kernel choice is keyed on.

/// The distance a query is ranked by.
///
/// - `L2`: squared Euclidean distance.
/// - `InnerProduct`: the negated inner product (smaller is closer), as in DiskANN's `mips`
///   search on graphs built with the same function.
/// - `Cosine`: vectors are L2-normalized at build and query time and ranked by squared L2;
///   the reported distance is `1 - cos(a, b) = ||a - b||² / 2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// Negated inner product.
    InnerProduct,
    /// Cosine distance on normalized vectors.
    Cosine,
}

impl Metric {
    /// Code stored in the index header (docs/FORMAT.md, "Header slot").
    pub fn code(self) -> u8 {
        match self {
            Metric::L2 => 0,
            Metric::InnerProduct => 1,
            Metric::Cosine => 2,
        }
    }

    /// Inverse of [`Metric::code`].
    pub fn from_code(code: u8) -> Option<Metric> {
        match code {
            0 => Some(Metric::L2),
            1 => Some(Metric::InnerProduct),
            2 => Some(Metric::Cosine),
            _ => None,
        }
    }

    /// Name used by the CLI and `ssdann info`: "l2", "ip", "cosine".
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::InnerProduct => "ip",
            Metric::Cosine => "cosine",
        }
    }

    /// Whether the graph and the search rank by squared L2 (true for L2 and cosine).
    pub fn uses_l2(self) -> bool {
        !matches!(self, Metric::InnerProduct)
    }

    /// Converts an internal ranking distance (squared L2 or negated inner product) into the
    /// distance reported to users (for cosine: `1 - cos = l2² / 2`).
    pub fn reported(self, internal: f32) -> f32 {
        match self {
            Metric::Cosine => internal * 0.5,
            _ => internal,
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        // Exactly the three names (issue 14: another library's spelling is refused with the
        // name meant, never silently mapped).
        match s {
            "l2" => Ok(Metric::L2),
            "ip" => Ok(Metric::InnerProduct),
            "cosine" => Ok(Metric::Cosine),
            other => {
                let meant = match other.to_ascii_lowercase().as_str() {
                    "l2" | "euclidean" | "sqeuclidean" => Some("l2"),
                    "ip" | "mips" | "inner_product" | "dot" => Some("ip"),
                    "cosine" | "cos" | "angular" => Some("cosine"),
                    _ => None,
                };
                Err(match meant {
                    Some(m) => format!(
                        "unknown metric {other:?}: did you mean {m:?}? (the metrics are l2 = squared Euclidean, ip = inner product, larger is closer, cosine)"
                    ),
                    None => format!(
                        "unknown metric {other:?} (expected l2 = squared Euclidean, ip = inner product, larger is closer, or cosine)"
                    ),
                })
            }
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Element type of stored vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElementType {
    /// 32-bit IEEE float.
    F32,
    /// Unsigned byte.
    U8,
    /// Signed byte.
    I8,
}

impl ElementType {
    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            ElementType::F32 => 4,
            ElementType::U8 | ElementType::I8 => 1,
        }
    }
    /// Code stored in the index header.
    pub fn code(self) -> u8 {
        match self {
            ElementType::F32 => 0,
            ElementType::U8 => 1,
            ElementType::I8 => 2,
        }
    }
    /// Inverse of [`ElementType::code`].
    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(ElementType::F32),
            1 => Some(ElementType::U8),
            2 => Some(ElementType::I8),
            _ => None,
        }
    }
    /// "f32", "u8" or "i8".
    pub fn name(self) -> &'static str {
        match self {
            ElementType::F32 => "f32",
            ElementType::U8 => "u8",
            ElementType::I8 => "i8",
        }
    }
}

impl std::fmt::Display for ElementType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
