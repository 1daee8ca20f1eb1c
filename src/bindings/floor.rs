//! `natpool._natpool._Floor`: the PyO3 floor for the benchmarks, a frozen
//! pyclass with an empty method. Timing `floor.noop()` beside
//! `pool.allocate()` shows how much of a call is the call itself. Not API.

use pyo3::prelude::*;

#[pyclass(frozen, name = "_Floor", module = "natpool._natpool")]
pub struct Floor;

#[pymethods]
impl Floor {
    #[new]
    fn new() -> Self {
        Floor
    }

    /// Does nothing: one method call through PyO3 (with up to two optional
    /// positional arguments, like `allocate`, `free` and `lookup`) and no
    /// work.
    #[pyo3(signature = (first=None, second=None, /))]
    fn noop(&self, first: Option<&Bound<'_, PyAny>>, second: Option<&Bound<'_, PyAny>>) {
        let _ = (first, second);
    }
}
