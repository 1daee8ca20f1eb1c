//! Shared by the loom models (the `loom` modules next to the code they check).

use loom::sync::Arc;
use loom::thread;

/// Run `body` on a new loom thread with a shared reference to `shared`.
pub fn spawn_with<T: 'static, R: 'static>(
    shared: &Arc<T>,
    body: impl FnOnce(&T) -> R + 'static,
) -> thread::JoinHandle<R> {
    let shared = Arc::clone(shared);
    thread::spawn(move || body(&shared))
}
