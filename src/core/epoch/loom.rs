//! loom models of the epoch protocol (`src/core/epoch.rs`): a reader pins,
//! loads a slot, reads the value and unpins while the writer unpublishes,
//! retires and collects. The value's drop writes its cell and the reader
//! reads it: loom reports any read the drop is not ordered after (a use
//! after free), and its `Arc` checks that every value is dropped in the end
//! (no leak). membarrier is modelled as the module documentation says: both
//! barriers are `fence(SeqCst)`. Run with `make loom`.

use crate::core::epoch::{pin, Retired, Slot};
use crate::core::loom_support::spawn_with;
use crate::core::sync::DataCell;
use loom::sync::Arc;

/// A published value: its drop overwrites the cell a reader reads.
struct Value(DataCell<u64>);

impl Value {
    fn new(value: u64) -> Arc<Value> {
        Arc::new(Value(DataCell::new(value)))
    }

    fn read(&self) -> u64 {
        // SAFETY: a shared read; loom checks it against the drop's write.
        self.0.with(|value| unsafe { *value })
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: the last owner; loom checks that no read
        // races with this write.
        self.0.with_mut(|value| unsafe { *value = 0 });
    }
}

/// One pinned read of the slot: the value seen, if any (never a dropped one).
fn read_pinned(slot: &Slot<Value>) -> Option<u64> {
    pin(|guard| slot.load(guard).map(|value| value.read()))
}

/// A reader's pinned read races with the value's deletion: it sees the
/// value whole or nothing, and the value is dropped (by this collect, or
/// by the one after the reader is done).
#[test]
fn a_pinned_reader_never_sees_a_reclaimed_value() {
    loom::model(|| {
        let slot = Arc::new(Slot::default());
        let mut retired = Retired::default();
        slot.store(Some(Value::new(7)), &mut retired);
        let reader = spawn_with(&slot, read_pinned);
        slot.store(None, &mut retired);
        retired.collect();
        let seen = reader.join().unwrap();
        assert!(matches!(seen, None | Some(7)), "saw {seen:?}");
        retired.collect();
        assert_eq!(retired.len(), 0, "nothing is pinned: all dropped");
    });
}

/// Two replacements, each collected at once, against a reader that pins
/// twice (the second pin may read an advanced epoch): every read sees a
/// published value whole, and all are dropped in the end.
#[test]
fn repinning_readers_and_successive_retirements() {
    loom::model(|| {
        let slot = Arc::new(Slot::default());
        let mut retired = Retired::default();
        slot.store(Some(Value::new(1)), &mut retired);
        let reader = spawn_with(&slot, |slot| [read_pinned(slot), read_pinned(slot)]);
        slot.store(Some(Value::new(2)), &mut retired);
        retired.collect();
        slot.store(None, &mut retired);
        retired.collect();
        for seen in reader.join().unwrap() {
            assert!(matches!(seen, None | Some(1) | Some(2)), "saw {seen:?}");
        }
        retired.collect();
        assert_eq!(retired.len(), 0);
    });
}

/// A nested pin keeps the outer one: the value loaded by the outer pin
/// stays alive after the inner section ends, while the writer collects.
#[test]
fn a_nested_pin_keeps_the_outer_pin() {
    loom::model(|| {
        let slot = Arc::new(Slot::default());
        let mut retired = Retired::default();
        slot.store(Some(Value::new(3)), &mut retired);
        let reader = spawn_with(&slot, |slot| {
            pin(|guard| {
                let value = slot.load(guard);
                pin(|_| ());
                value.map(|value| value.read())
            })
        });
        slot.store(None, &mut retired);
        retired.collect();
        let seen = reader.join().unwrap();
        assert!(matches!(seen, None | Some(3)), "saw {seen:?}");
        retired.collect();
        assert_eq!(retired.len(), 0);
    });
}
