//! Splitting a batch by rows, so that the writer can write a batch that did not fit on a full
//! disk in smaller frames ([`Batch::split_off`]).
//!
//! Invariant: the two halves hold exactly the cells of the whole, each row whole in one of
//! them. Rows are told apart by their steps: a batch's rows come in non-decreasing step
//! order, every row has a `_timestamp` cell (key 0), and a column's entries follow its rows,
//! so a split falls only between two rows whose steps differ.

use super::{Batch, Column, DType};

impl Batch {
    /// Moves the rows from about `at` on into a new batch and returns it; `self` keeps the
    /// rows before. The split moves to the nearest point where the step changes (later rows
    /// first); `None`, and nothing moved, when there is none (one row, or one step).
    pub fn split_off(&mut self, at: usize) -> Option<Batch> {
        let ts = self.slots.first()?[DType::F64 as usize].checked_sub(1)? as usize;
        let steps = &self.cols.get(ts)?.steps;
        let differs = |k: usize| k > 0 && k < steps.len() && steps[k - 1] != steps[k];
        let at = at.clamp(1, steps.len().max(1));
        let k = (at..steps.len())
            .find(|&k| differs(k))
            .or_else(|| (1..at).rev().find(|&k| differs(k)))?;
        let first_back = steps[k] as i64;
        let mut back = Batch {
            started: self.started,
            ..Batch::default()
        };
        let cols = std::mem::take(&mut self.cols);
        for mut col in cols {
            let cut = col.steps.partition_point(|&s| (s as i64) < first_back);
            let tail = Column {
                key: col.key,
                dtype: col.dtype,
                steps: col.steps.split_off(cut),
                values: col.values.split_off(cut),
            };
            if !tail.steps.is_empty() {
                back.cols.push(tail);
            }
            if col.steps.is_empty() {
                self.spare.push(col);
            } else {
                self.cols.push(col);
            }
        }
        let cut = self.others.partition_point(|(s, _, _)| *s < first_back);
        back.others = self.others.split_off(cut);
        back.rows = self.rows - k;
        self.rows = k;
        self.recount();
        back.recount();
        Some(back)
    }

    /// Recomputes what is derived from the columns and `others`: slots and sizes.
    fn recount(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = [0; 3]);
        let (mut bytes, mut scalars) = (0, 0);
        for (i, col) in self.cols.iter().enumerate() {
            let k = col.key as usize;
            if self.slots.len() <= k {
                self.slots.resize(k + 1, [0; 3]);
            }
            self.slots[k][col.dtype as usize] = i as u32 + 1;
            bytes += 16 * col.steps.len();
            if col.key != 0 {
                scalars += col.steps.len();
            }
        }
        for (_, _, value) in &self.others {
            bytes += value.approx_bytes() + 16;
        }
        (self.bytes, self.scalars) = (bytes, scalars);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyRegistry;
    use crate::msgpack::Enc;
    use crate::value::{Cell, KeyId, Value};

    fn cell(key: KeyId, value: Value) -> Cell {
        Cell { key, value }
    }

    fn sample(rows: i64) -> Batch {
        let mut b = Batch::default();
        for step in 0..rows {
            let mut cells = vec![cell(1, Value::F64(step as f64))];
            if step % 3 == 0 {
                cells.push(cell(2, Value::I64(step)));
            }
            if step % 5 == 0 {
                cells.push(cell(3, Value::Text(format!("t{step}").into())));
            }
            b.add_row_micros(step, 1_000_000 + step, cells.into_iter());
        }
        b
    }

    fn encoded(b: &mut Batch, reg: &KeyRegistry) -> Vec<u8> {
        let (mut enc, mut out, mut seq) = (Enc::default(), Vec::new(), 0);
        b.write_frames(reg, &mut enc, None, &mut seq, &mut out);
        out
    }

    #[test]
    fn halves_hold_every_cell_once_and_encode_like_separate_batches() {
        let reg = KeyRegistry::new();
        let mut whole = sample(100);
        let (rows, scalars, bytes) = (whole.rows(), whole.scalars(), whole.bytes());
        let back = whole.split_off(40).unwrap();
        assert_eq!((whole.rows(), back.rows()), (40, 60));
        assert_eq!(whole.scalars() + back.scalars(), scalars);
        assert_eq!(whole.bytes() + back.bytes(), bytes);
        assert_eq!(rows, 100);
        // Each half encodes exactly as a batch built from its rows alone.
        let (mut front_ref, mut back_ref) = (Batch::default(), Batch::default());
        for step in 0..100i64 {
            let mut cells = vec![cell(1, Value::F64(step as f64))];
            if step % 3 == 0 {
                cells.push(cell(2, Value::I64(step)));
            }
            if step % 5 == 0 {
                cells.push(cell(3, Value::Text(format!("t{step}").into())));
            }
            let target = if step < 40 {
                &mut front_ref
            } else {
                &mut back_ref
            };
            target.add_row_micros(step, 1_000_000 + step, cells.into_iter());
        }
        let mut back = back;
        assert_eq!(encoded(&mut whole, &reg), encoded(&mut front_ref, &reg));
        assert_eq!(encoded(&mut back, &reg), encoded(&mut back_ref, &reg));
    }

    #[test]
    fn a_split_falls_between_different_steps_only() {
        let mut b = Batch::default();
        for (i, step) in [0i64, 0, 0, 1, 1].into_iter().enumerate() {
            let cells = vec![cell(1, Value::F64(i as f64))];
            b.add_row_micros(step, i as i64, cells.into_iter());
        }
        let back = b.split_off(1).unwrap();
        assert_eq!((b.rows(), back.rows()), (3, 2));
        let mut one_step = Batch::default();
        for i in 0..4 {
            one_step.add_row_micros(7, i, vec![cell(1, Value::F64(0.0))].into_iter());
        }
        assert!(one_step.split_off(2).is_none());
        assert_eq!(one_step.rows(), 4);
        assert!(sample(1).split_off(0).is_none());
        assert!(Batch::default().split_off(1).is_none());
    }
}
