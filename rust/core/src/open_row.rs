//! The open row made durable: with `log(d, step=n)` the row of step n stays open on the
//! callers' side until a larger step or `finish()` commits it. At flush-interval ticks (and on
//! `sync()`) the writer copies it, under the accumulator's lock and only when it changed since
//! the last copy, and writes it as an **open-row** frame (kind 8): a provisional row that the
//! reader uses only when the shard holds no committed row of that step or a later one
//! (`docs/FORMAT.md`, "Open rows").
//!
//! Payload: `{"step": int, "time": float, "cells": [[name, kind, payload], ...]}`, each cell
//! as a batch's `vals` entry, but named by key name (not id), so the frame needs no key table.
//!
//! Invariants: the callers' hot path does nothing for it; the copy is never observed by the
//! summary (the committed row is, once), so statistics never count a provisional value.

use std::sync::Arc;

use crate::accumulator::Accumulator;
use crate::batch::encode_other;
use crate::keys::KeyRegistry;
use crate::msgpack::Enc;
use crate::value::{Cell, ListData, Value};

/// An open row as the writer copied it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRow {
    /// Its step.
    pub step: i64,
    /// Its cells, in the row's order.
    pub cells: Vec<Cell>,
}

/// The writer's memory of the last open row it wrote.
#[derive(Debug, Default)]
pub struct OpenRows {
    last: Option<OpenRow>,
}

/// Bit-exact equality (NaN equals NaN), so an unchanged row with a NaN is not written again.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::List(x), Value::List(y)) => {
            x.shape() == y.shape()
                && match (x.data(), y.data()) {
                    (ListData::F64(p), ListData::F64(q)) => {
                        p.len() == q.len()
                            && p.iter()
                                .zip(q.iter())
                                .all(|(p, q)| p.to_bits() == q.to_bits())
                    }
                    (p, q) => p == q,
                }
        }
        _ => a == b,
    }
}

impl OpenRows {
    /// A copy of `acc`'s open row if it differs from the last one returned (`None` when no
    /// row is open, or it did not change). Called with the accumulator's lock held.
    pub fn changed(&mut self, acc: &Accumulator) -> Option<OpenRow> {
        let Some((step, cells)) = acc.open_row() else {
            self.last = None;
            return None;
        };
        if let Some(last) = &self.last {
            let unchanged = last.step == step
                && last.cells.len() == cells.len()
                && last
                    .cells
                    .iter()
                    .zip(cells)
                    .all(|(a, b)| a.key == b.key && same(&a.value, &b.value));
            if unchanged {
                return None;
            }
        }
        let row = OpenRow {
            step,
            cells: cells.to_vec(),
        };
        self.last = Some(row.clone());
        Some(row)
    }

    /// Forgets the last copy (its write failed), so the next tick writes the row again.
    pub fn forget(&mut self) {
        self.last = None;
    }
}

/// Encodes `row`, taken at Unix time `time` (seconds), as an open-row frame's payload.
pub fn encode(row: &OpenRow, time: f64, registry: &KeyRegistry, out: &mut Enc) {
    out.buf.clear();
    out.map(3);
    out.str("step");
    out.int(row.step);
    out.str("time");
    out.f64(time);
    out.str("cells");
    out.array(row.cells.len());
    for cell in &row.cells {
        out.array(3);
        let name = registry.name(cell.key).unwrap_or_else(|| Arc::from(""));
        out.str(&name);
        encode_other(&cell.value, out);
    }
}
