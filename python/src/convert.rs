//! numpy in and out: array-likes to arrays (the one rule every call follows), labels, result
//! rows padded to k, and per-query statistics as arrays.

use crate::errors::{dtype_error, dtype_name};
use numpy::{PyArray1, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use ssdann::engine::{Neighbor, SearchStats};

pub(crate) fn stats_dict<'py>(
    py: Python<'py>,
    stats: &[SearchStats],
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new_bound(py);
    d.set_item(
        "sector_reads",
        PyArray1::from_iter_bound(py, stats.iter().map(|s| s.sector_reads)),
    )?;
    d.set_item(
        "hops",
        PyArray1::from_iter_bound(py, stats.iter().map(|s| s.hops)),
    )?;
    d.set_item(
        "cache_hits",
        PyArray1::from_iter_bound(py, stats.iter().map(|s| s.cache_hits)),
    )?;
    d.set_item(
        "nodes_expanded",
        PyArray1::from_iter_bound(py, stats.iter().map(|s| s.nodes_expanded)),
    )?;
    d.set_item(
        "io_wait_us",
        PyArray1::from_iter_bound(py, stats.iter().map(|s| s.io_wait_us)),
    )?;
    d.set_item(
        "total_us",
        PyArray1::from_iter_bound(py, stats.iter().map(|s| s.total_us)),
    )?;
    Ok(d)
}

pub(crate) fn fill_row(hits: &[Neighbor], k: usize, ids: &mut [u64], dists: &mut [f32]) {
    for j in 0..k {
        match hits.get(j) {
            Some(h) => {
                ids[j] = h.id;
                dists[j] = h.distance;
            }
            None => {
                ids[j] = u64::MAX;
                dists[j] = f32::INFINITY;
            }
        }
    }
}

/// `obj` as a numpy array: an ndarray as it is (any strides), anything else (a list, a
/// memoryview, ...) through `numpy.asarray`, which keeps its values exactly (a list of
/// Python floats becomes float64, refused later with the conversion hint).
pub(crate) fn as_array<'py>(
    obj: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    if let Ok(a) = obj.downcast::<PyUntypedArray>() {
        return Ok(a.clone());
    }
    let np = obj.py().import_bound("numpy")?;
    let a = np.getattr("asarray")?.call1((obj,)).map_err(|e| {
        PyValueError::new_err(format!("{what}: not convertible to a numpy array ({e})"))
    })?;
    a.downcast_into::<PyUntypedArray>()
        .map_err(|_| PyValueError::new_err(format!("{what}: not convertible to a numpy array")))
}

/// The labels argument: one int or a sequence of ints in 0..2**64.
pub(crate) fn labels_arg(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    if let Ok(l) = obj.extract::<u64>() {
        return Ok(vec![l]);
    }
    if let Ok(a) = obj.downcast::<PyUntypedArray>() {
        if a.ndim() == 0 {
            return Ok(vec![obj.call_method0("item")?.extract::<u64>()?]);
        }
    }
    obj.extract::<Vec<u64>>().map_err(|_| {
        PyValueError::new_err(
            "labels: expected an int or a sequence of ints in 0..2**64 (a numpy array of unsigned or non-negative integers works)",
        )
    })
}

pub(crate) fn query_array<'py>(
    obj: &Bound<'py, PyAny>,
    ndim: usize,
    what: &str,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let arr = &as_array(obj, what)?;
    if arr.ndim() != ndim {
        let shape = if ndim == 1 { "(d,)" } else { "(nq, d)" };
        return Err(PyValueError::new_err(format!(
            "{what}: expected shape {shape}, got {:?}",
            arr.shape()
        )));
    }
    let dt = dtype_name(arr);
    if dt != "float32" {
        return Err(dtype_error(what, &dt, "float32"));
    }
    Ok(arr.clone())
}
