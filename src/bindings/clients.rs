//! Clients in the binding: hashable Python objects interned into the
//! core's `u64` keys, and back (for `events()` and `subpools()`).
//!
//! The map is a Python dict (Python's hash and equality, as the reference
//! model's dict of client states) from object to key, beside a Rust map from
//! key to object, under one mutex of the pool. Keys are forgotten when the
//! core no longer knows them (`Pool::take_forgotten`, and a key interned
//! for a call that failed). Interning, the core call that may make a
//! client's state, and forgetting happen under that mutex, so a key is
//! never forgotten while a call is about to use it; the core drops a key
//! from its forgotten list when it makes a state for it again.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::PyDict;

use crate::core::{Error, Pool};

pub struct Interner {
    keys: Py<PyDict>,
    objects: HashMap<u64, Py<PyAny>>,
    next: u64,
}

/// The interner of one pool.
pub struct Clients(Mutex<Interner>);

impl Clients {
    pub fn new(py: Python<'_>) -> Self {
        Clients(Mutex::new(Interner {
            keys: PyDict::new(py).unbind(),
            objects: HashMap::new(),
            next: 0,
        }))
    }

    /// The interner of a restored pool: `clients` (the client table's
    /// identities, by number: none may equal another, as keys, else
    /// `SnapshotError`) get keys `0..`, then `events` (the queued events'
    /// clients) theirs: a table client's key, or a new one. Returns the
    /// clients' keys and the events' keys.
    pub fn restored<'py>(
        py: Python<'py>,
        clients: impl IntoIterator<Item = Bound<'py, PyAny>>,
        events: impl IntoIterator<Item = Bound<'py, PyAny>>,
    ) -> PyResult<(Self, Vec<u64>, Vec<u64>)> {
        let mut interner = Interner {
            keys: PyDict::new(py).unbind(),
            objects: HashMap::new(),
            next: 0,
        };
        let mut client_keys = Vec::new();
        for client in clients {
            if interner.keys.bind(py).contains(&client)? {
                return Err(Error::Snapshot(
                    "two clients of the client table are equal keys (1 and 1.0, say)".into(),
                )
                .into());
            }
            client_keys.push(interner.intern(&client)?);
        }
        let event_keys = events
            .into_iter()
            .map(|client| interner.intern(&client))
            .collect::<PyResult<_>>()?;
        Ok((Clients(Mutex::new(interner)), client_keys, event_keys))
    }

    /// The interner, locked without holding up other Python threads.
    pub fn lock(&self, py: Python<'_>) -> MutexGuard<'_, Interner> {
        self.0
            .lock_py_attached(py)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Interner {
    /// The key of `client` (hashable: `TypeError` otherwise), made if new.
    pub fn intern(&mut self, client: &Bound<'_, PyAny>) -> PyResult<u64> {
        let keys = self.keys.bind(client.py());
        if let Some(key) = keys.get_item(client)? {
            return key.extract();
        }
        let key = self.next;
        self.next += 1;
        keys.set_item(client, key)?;
        self.objects.insert(key, client.clone().unbind());
        Ok(key)
    }

    /// The object of `key` (`None` for a key it does not know).
    pub fn object(&self, py: Python<'_>, key: u64) -> Py<PyAny> {
        self.objects
            .get(&key)
            .map_or_else(|| py.None(), |object| object.clone_ref(py))
    }

    /// Forget the keys the core no longer knows; `used` too, unless it does.
    pub fn tidy<T: Default + Send + Sync>(
        &mut self,
        py: Python<'_>,
        core: &Pool<T>,
        used: Option<u64>,
    ) -> PyResult<()> {
        let mut gone = core.take_forgotten();
        gone.extend(used.filter(|&key| !core.knows_client(key)));
        let keys = self.keys.bind(py);
        for key in gone {
            if let Some(object) = self.objects.remove(&key) {
                keys.del_item(object.bind(py))?;
            }
        }
        Ok(())
    }
}
