//! The step rules, merging and staging of the accumulator, through a small harness that
//! logs rows and reads back what was committed.

use super::*;
use crate::keys::KeyRegistry;

struct Harness {
    acc: Accumulator,
    rows: Vec<(i64, Vec<(String, f64)>)>,
}

impl Harness {
    fn new() -> Self {
        Harness {
            acc: Accumulator::new(Interner::new(KeyRegistry::new()), Timebase::new(), 3),
            rows: Vec::new(),
        }
    }

    fn log(
        &mut self,
        kv: &[(&str, f64)],
        step: Option<i64>,
        commit: Option<bool>,
    ) -> Result<(), StepRejected> {
        for (k, v) in kv {
            let id = self.acc.interner().intern(k).unwrap();
            self.acc.stage(id, Value::F64(*v));
        }
        if self.acc.apply(step, commit)? {
            let full = self.acc.swap_chunk(Chunk::default());
            self.collect(&full);
        }
        Ok(())
    }

    fn collect(&mut self, chunk: &Chunk) {
        let reg = self.acc.interner.registry().clone();
        for r in 0..chunk.rows() {
            let (step, _, cells) = chunk.row(r);
            let cells = cells
                .iter()
                .map(|c| {
                    (
                        reg.name(c.key).unwrap().to_string(),
                        c.value.as_f64().unwrap(),
                    )
                })
                .collect();
            self.rows.push((step, cells));
        }
    }

    /// Everything committed so far, including rows still in the current chunk.
    fn table(&mut self) -> Vec<(i64, Vec<(String, f64)>)> {
        if let Some(c) = self.acc.take_committed(Chunk::default()) {
            self.collect(&c);
        }
        self.rows.clone()
    }
}

fn row(step: i64, kv: &[(&str, f64)]) -> (i64, Vec<(String, f64)>) {
    (step, kv.iter().map(|(k, v)| (k.to_string(), *v)).collect())
}

#[test]
fn each_log_without_step_is_a_new_step() {
    let mut h = Harness::new();
    h.log(&[("loss", 1.0)], None, None).unwrap();
    h.log(&[("loss", 0.5)], None, None).unwrap();
    h.log(&[("acc", 0.9)], None, None).unwrap();
    h.log(&[("acc", 0.8)], None, None).unwrap();
    assert_eq!(
        h.table(),
        vec![
            row(0, &[("loss", 1.0)]),
            row(1, &[("loss", 0.5)]),
            row(2, &[("acc", 0.9)]),
            row(3, &[("acc", 0.8)])
        ]
    );
    assert_eq!(h.acc.step(), 4);
}

#[test]
fn same_explicit_step_merges_and_larger_step_commits() {
    let mut h = Harness::new();
    h.log(&[("loss", 1.0)], Some(10), None).unwrap();
    h.log(&[("acc", 0.5)], Some(10), None).unwrap();
    assert!(
        h.table().is_empty(),
        "explicit step must not commit by itself"
    );
    h.log(&[("loss", 0.8)], Some(12), None).unwrap();
    assert_eq!(h.table(), vec![row(10, &[("loss", 1.0), ("acc", 0.5)])]);
    h.acc.commit_open();
    assert_eq!(h.table()[1], row(12, &[("loss", 0.8)]));
}

#[test]
fn later_value_for_the_same_key_in_a_step_wins() {
    let mut h = Harness::new();
    h.log(&[("loss", 1.0)], None, Some(false)).unwrap();
    h.log(&[("loss", 2.0), ("acc", 3.0)], None, Some(false))
        .unwrap();
    h.log(&[("loss", 4.0)], None, None).unwrap();
    assert_eq!(h.table(), vec![row(0, &[("loss", 4.0), ("acc", 3.0)])]);
}

#[test]
fn a_key_staged_twice_in_one_call_keeps_its_last_value_and_the_order_of_the_rest() {
    let mut h = Harness::new();
    h.log(&[("a", 1.0)], None, Some(false)).unwrap();
    // "b" twice, "a" again (already in the open row), then new keys after the duplicates.
    let kv = [("b", 2.0), ("a", 3.0), ("b", 4.0), ("c", 5.0), ("d", 6.0)];
    h.log(&kv, None, None).unwrap();
    h.log(&[("c", 7.0), ("c", 8.0)], None, None).unwrap();
    assert_eq!(
        h.table(),
        vec![
            row(0, &[("a", 3.0), ("b", 4.0), ("c", 5.0), ("d", 6.0)]),
            row(1, &[("c", 8.0)]),
        ]
    );
}

#[test]
fn a_larger_step_commits_the_open_row_before_the_new_values_join_the_next() {
    let mut h = Harness::new();
    h.log(&[("a", 1.0), ("b", 2.0)], Some(3), None).unwrap();
    h.log(&[("a", 9.0), ("c", 4.0)], Some(5), None).unwrap();
    h.log(&[("a", 10.0)], Some(5), Some(true)).unwrap();
    assert_eq!(
        h.table(),
        vec![
            row(3, &[("a", 1.0), ("b", 2.0)]),
            row(5, &[("a", 10.0), ("c", 4.0)]),
        ]
    );
}

#[test]
fn distinct_keys_committed_at_once_skip_the_merge_but_an_open_row_still_merges() {
    let mut h = Harness::new();
    let stage = |h: &mut Harness, kv: &[(&str, f64)]| {
        for (k, v) in kv {
            let id = h.acc.interner().intern(k).unwrap();
            h.acc.stage(id, Value::F64(*v));
        }
        h.acc.mark_staged_distinct();
    };
    stage(&mut h, &[("a", 1.0), ("b", 2.0)]);
    h.acc.apply(None, None).unwrap();
    stage(&mut h, &[("a", 3.0)]);
    h.acc.apply(None, Some(false)).unwrap();
    // The open row holds "a": the distinct keys of this call must still merge into it.
    stage(&mut h, &[("a", 4.0), ("c", 5.0)]);
    h.acc.apply(None, None).unwrap();
    assert_eq!(
        h.table(),
        vec![
            row(0, &[("a", 1.0), ("b", 2.0)]),
            row(1, &[("a", 4.0), ("c", 5.0)]),
        ]
    );
}

#[test]
fn a_failed_call_on_an_open_row_leaves_the_row_as_it_was() {
    let mut h = Harness::new();
    h.log(&[("a", 1.0)], Some(2), None).unwrap();
    let id = h.acc.interner().intern("b").unwrap();
    h.acc.stage(id, Value::F64(5.0));
    h.acc.clear_staged();
    assert!(h.log(&[("a", 7.0)], Some(1), None).is_err(), "smaller step");
    h.log(&[("c", 3.0)], None, None).unwrap();
    assert_eq!(h.table(), vec![row(2, &[("a", 1.0), ("c", 3.0)])]);
}

#[test]
fn commit_false_accumulates_until_a_committing_call() {
    let mut h = Harness::new();
    h.log(&[("a", 1.0)], None, Some(false)).unwrap();
    h.log(&[("b", 2.0)], None, Some(false)).unwrap();
    assert!(h.table().is_empty());
    h.log(&[("c", 3.0)], None, None).unwrap();
    h.log(&[("a", 4.0)], None, None).unwrap();
    assert_eq!(
        h.table(),
        vec![
            row(0, &[("a", 1.0), ("b", 2.0), ("c", 3.0)]),
            row(1, &[("a", 4.0)])
        ]
    );
}

#[test]
fn the_open_row_survives_taking_committed_rows() {
    let mut h = Harness::new();
    h.log(&[("a", 1.0)], None, None).unwrap();
    h.log(&[("b", 2.0)], None, Some(false)).unwrap();
    assert_eq!(h.table(), vec![row(0, &[("a", 1.0)])]);
    h.log(&[("b", 5.0), ("c", 3.0)], None, None).unwrap();
    assert_eq!(h.table()[1], row(1, &[("b", 5.0), ("c", 3.0)]));
}

#[test]
fn explicit_commit_true_with_a_step_commits_at_once() {
    let mut h = Harness::new();
    h.log(&[("a", 1.0)], Some(5), Some(true)).unwrap();
    assert_eq!(h.table(), vec![row(5, &[("a", 1.0)])]);
    assert_eq!(h.acc.step(), 6);
    h.log(&[("a", 2.0)], None, None).unwrap();
    assert_eq!(h.table()[1], row(6, &[("a", 2.0)]));
}

#[test]
fn smaller_step_is_rejected_counted_and_not_written() {
    let mut h = Harness::new();
    h.log(&[("a", 1.0)], Some(5), None).unwrap();
    let err = h.log(&[("a", 9.0)], Some(3), None).unwrap_err();
    assert_eq!(
        err,
        StepRejected {
            step: 3,
            current: 5
        }
    );
    assert_eq!(h.acc.rejected(), 1);
    h.acc.commit_open();
    assert_eq!(h.table(), vec![row(5, &[("a", 1.0)])]);
}

#[test]
fn step_less_log_after_explicit_step_lands_in_that_step() {
    let mut h = Harness::new();
    h.log(&[("a", 1.0)], Some(7), None).unwrap();
    h.log(&[("b", 2.0)], None, None).unwrap();
    h.log(&[("a", 3.0)], None, None).unwrap();
    assert_eq!(
        h.table(),
        vec![row(7, &[("a", 1.0), ("b", 2.0)]), row(8, &[("a", 3.0)])]
    );
}

#[test]
fn empty_calls_advance_the_step_without_a_row() {
    let mut h = Harness::new();
    h.log(&[], None, None).unwrap();
    assert_eq!(h.acc.step(), 1);
    h.log(&[("a", 1.0)], None, None).unwrap();
    // An empty call with commit=False changes nothing; the next committing call writes.
    h.log(&[], None, Some(false)).unwrap();
    h.log(&[("b", 2.0)], None, Some(false)).unwrap();
    h.log(&[], None, None).unwrap();
    // An empty call at a larger step moves to it; its row is written only with cells.
    h.log(&[], Some(10), None).unwrap();
    h.log(&[], Some(12), None).unwrap();
    h.log(&[("c", 3.0)], None, None).unwrap();
    h.log(&[], Some(20), None).unwrap();
    h.acc.commit_open();
    assert_eq!(h.acc.step(), 21);
    assert_eq!(
        h.table(),
        vec![
            row(1, &[("a", 1.0)]),
            row(2, &[("b", 2.0)]),
            row(12, &[("c", 3.0)])
        ]
    );
}

#[test]
fn a_failed_call_leaves_nothing_behind() {
    let mut h = Harness::new();
    let id = h.acc.interner().intern("a").unwrap();
    h.acc.stage(id, Value::F64(1.0));
    h.acc.clear_staged();
    h.log(&[("b", 2.0)], None, None).unwrap();
    assert_eq!(h.table(), vec![row(0, &[("b", 2.0)])]);
}

#[test]
fn commits_carry_a_clock_tick() {
    let mut h = Harness::new();
    h.log(&[("a", 1.0)], None, None).unwrap();
    h.log(&[("a", 1.0)], None, None).unwrap();
    let c = h.acc.take_committed(Chunk::default()).unwrap();
    assert!(c.rows[0].tick <= c.rows[1].tick);
}

#[test]
fn fresh_chunks_are_sized_from_use_so_one_huge_row_does_not_stick() {
    let mut acc = Accumulator::new(Interner::new(KeyRegistry::new()), Timebase::new(), 4);
    let keys: Vec<KeyId> = (0..RESERVE_MAX_CELLS + 10)
        .map(|i| acc.interner().intern(&format!("k{i}")).unwrap())
        .collect();
    let log = |acc: &mut Accumulator, ks: &[KeyId]| {
        for &k in ks {
            acc.stage_f64(k, 1.0);
        }
        acc.mark_staged_distinct();
        acc.apply(None, None).unwrap()
    };
    // One row wider than the reservation cap, handed over: the next chunk reserves the cap.
    log(&mut acc, &keys);
    let huge = acc.take_committed(Chunk::default()).unwrap();
    assert_eq!(huge.cells.len(), keys.len());
    assert!(acc.chunk.cells.capacity() >= RESERVE_MAX_CELLS);
    assert!(acc.chunk.cells.capacity() < keys.len());
    // Small rows after it: the chunk after those is sized for them, not for the huge row.
    for _ in 0..3 {
        log(&mut acc, &keys[..2]);
    }
    acc.take_committed(Chunk::default()).unwrap();
    assert!(
        acc.chunk.cells.capacity() < 64,
        "{}",
        acc.chunk.cells.capacity()
    );
    // A chunk that is not recycled is sized for the one handed over in a single allocation.
    for _ in 0..3 {
        log(&mut acc, &keys[..10]);
    }
    acc.take_committed(Chunk::default()).unwrap();
    assert!(acc.chunk.cells.capacity() >= 30);
    assert!(acc.chunk.rows.capacity() >= 3);
}

#[test]
fn a_chunk_put_back_keeps_its_rows_before_the_open_row() {
    let mut h = Harness::new();
    h.log(&[("a", 1.0)], None, None).unwrap();
    h.log(&[("a", 2.0)], None, None).unwrap();
    h.log(&[("b", 3.0)], Some(5), None).unwrap(); // step 5 stays open
    let taken = h.acc.take_committed(Chunk::default()).unwrap();
    assert_eq!((taken.rows(), h.acc.rows_out()), (2, 2));
    let spare = h.acc.restore(taken);
    assert!(spare.cells.is_empty() && spare.rows.is_empty());
    assert_eq!((h.acc.committed_rows(), h.acc.rows_out()), (2, 0));
    let (step, open) = h.acc.open_row().unwrap();
    assert_eq!((step, open.len()), (5, 1));
    h.log(&[("b", 4.0)], Some(5), None).unwrap(); // merges into the open row again
    h.log(&[("c", 5.0)], Some(6), None).unwrap();
    assert_eq!(
        h.table(),
        vec![
            row(0, &[("a", 1.0)]),
            row(1, &[("a", 2.0)]),
            row(5, &[("b", 4.0)])
        ]
    );
}

#[test]
fn taking_the_oldest_rows_keeps_the_later_ones_and_the_open_row() {
    let mut h = Harness::new();
    for i in 0..2 {
        h.log(&[("a", f64::from(i)), ("b", 1.0)], None, None)
            .unwrap();
    }
    h.log(&[("c", 9.0)], Some(7), None).unwrap(); // open
    let dropped = h.acc.take_oldest(1);
    assert_eq!((dropped.rows(), dropped.cells.len()), (1, 2));
    assert_eq!((h.acc.committed_rows(), h.acc.rows_out()), (1, 1));
    assert_eq!(h.acc.take_oldest(0).rows(), 0);
    h.log(&[("c", 10.0)], Some(7), None).unwrap();
    h.log(&[("d", 1.0)], Some(8), None).unwrap();
    assert_eq!(
        h.table(),
        vec![row(1, &[("a", 1.0), ("b", 1.0)]), row(7, &[("c", 10.0)])]
    );
}
