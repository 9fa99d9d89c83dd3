//! Random msgpack values for the fuzzer (`tests/fuzz.rs`): arbitrary values, and maps shaped
//! like batch, metrics and metadata payloads, including what a writer never produces (lying
//! length headers, deep nesting, reserved markers, ids far past the key table, long names).

use proptest::collection::vec;
use proptest::prelude::*;
use steplog_core::msgpack::Enc;

/// A msgpack value to encode, including things a writer never produces.
#[derive(Debug, Clone)]
pub enum Mv {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    F64(f64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Mv>),
    Map(Vec<(Mv, Mv)>),
    /// A str/bin/array/map header (marker byte) declaring `n`, usually more than follows.
    Lie(u8, u32),
    /// `n` nested one-element arrays around a nil (past the depth limit when n > 32).
    Deep(u16),
    /// The same value `n` times inside an array (many entries for few compressed bytes).
    Repeat(u16, Box<Mv>),
    /// Arbitrary bytes: ext types, reserved markers, invalid UTF-8.
    Raw(Vec<u8>),
}

pub fn encode(v: &Mv, e: &mut Enc) {
    match v {
        Mv::Nil => e.nil(),
        Mv::Bool(b) => e.bool(*b),
        Mv::Int(i) => e.int(*i),
        Mv::UInt(u) => e.uint(*u),
        Mv::F64(f) => e.f64(*f),
        Mv::Str(s) => e.str(s),
        Mv::Bin(b) => e.bin(b),
        Mv::Array(items) => {
            e.array(items.len());
            items.iter().for_each(|i| encode(i, e));
        }
        Mv::Map(pairs) => {
            e.map(pairs.len());
            for (k, v) in pairs {
                encode(k, e);
                encode(v, e);
            }
        }
        Mv::Lie(marker, n) => {
            e.buf.push(*marker);
            let width = match marker {
                0xd9 | 0xc4 => 1,
                0xda | 0xc5 | 0xdc | 0xde => 2,
                _ => 4,
            };
            e.buf.extend_from_slice(&n.to_be_bytes()[4 - width..]);
        }
        Mv::Deep(n) => {
            e.buf.extend(std::iter::repeat_n(0x91, usize::from(*n)));
            e.nil();
        }
        Mv::Repeat(n, item) => {
            e.array(usize::from(*n));
            (0..*n).for_each(|_| encode(item, e));
        }
        Mv::Raw(b) => e.buf.extend_from_slice(b),
    }
}

pub fn s(text: &str) -> Mv {
    Mv::Str(text.into())
}

/// Key names: short, or long enough to make copies expensive. Never digits, so never a
/// sentinel's name.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z_/]{0,10}",
        1 => (1usize..2048).prop_map(|n| "k".repeat(n)),
    ]
}

/// Key ids: mostly small, sometimes negative, huge or far past the table.
fn id() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 0i64..6,
        1 => -3i64..0,
        1 => (1i64 << 19)..(1i64 << 21),
        1 => any::<i64>(),
    ]
}

pub fn leaf() -> impl Strategy<Value = Mv> {
    let markers = prop::sample::select(vec![
        0xd9u8, 0xda, 0xdb, 0xc4, 0xc5, 0xc6, 0xdc, 0xdd, 0xde, 0xdf,
    ]);
    prop_oneof![
        Just(Mv::Nil),
        any::<bool>().prop_map(Mv::Bool),
        any::<i64>().prop_map(Mv::Int),
        any::<u64>().prop_map(Mv::UInt),
        any::<f64>().prop_map(Mv::F64),
        name().prop_map(Mv::Str),
        vec(any::<u8>(), 0..48).prop_map(Mv::Bin),
        (markers, any::<u32>()).prop_map(|(m, n)| Mv::Lie(m, n)),
        (0u16..80).prop_map(Mv::Deep),
        vec(any::<u8>(), 0..12).prop_map(Mv::Raw),
    ]
}

pub fn value() -> BoxedStrategy<Mv> {
    leaf()
        .prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Mv::Array),
                vec((inner.clone(), inner), 0..6).prop_map(Mv::Map),
            ]
        })
        .boxed()
}

/// Packed little-endian bytes of `n` 8-byte items, sometimes not a whole number of them.
fn packed() -> impl Strategy<Value = Mv> {
    (0usize..6, any::<bool>(), any::<u8>())
        .prop_map(|(n, odd, b)| Mv::Bin(vec![b; n * 8 + usize::from(odd)]))
}

pub fn batch() -> BoxedStrategy<Mv> {
    let key = (id(), name()).prop_map(|(i, n)| Mv::Array(vec![Mv::Int(i), Mv::Str(n)]));
    let dtype = prop::sample::select(vec!["f64", "i64", "bool", "u8"]).prop_map(s);
    let col = (id(), dtype, packed(), packed())
        .prop_map(|(i, d, st, v)| Mv::Array(vec![Mv::Int(i), d, st, v]));
    let hist = (packed(), packed(), value())
        .prop_map(|(c, e, n)| Mv::Map(vec![(s("counts"), c), (s("edges"), e), (s("nan"), n)]));
    let kind = prop::sample::select(vec!["text", "list", "hist", "f64", "i64", "bool", "?"]);
    let val = |payload: BoxedStrategy<Mv>| {
        (any::<i64>(), id(), kind.clone(), payload)
            .prop_map(|(st, i, k, p)| Mv::Array(vec![Mv::Int(st), Mv::Int(i), s(k), p]))
            .boxed()
    };
    // A list of entries, or one small entry repeated (many entries for few compressed bytes).
    let many = |entry: BoxedStrategy<Mv>, small: BoxedStrategy<Mv>| {
        prop_oneof![
            3 => vec(prop_oneof![4 => entry, 1 => value()], 0..5).prop_map(Mv::Array),
            1 => (0u16..1500, small).prop_map(|(n, e)| Mv::Repeat(n, Box::new(e))),
            1 => value(),
        ]
    };
    let key = key.boxed();
    let col = col.boxed();
    let fields = (
        many(key.clone(), key),
        many(col.clone(), col),
        many(
            val(prop_oneof![value(), packed(), hist].boxed()),
            val(leaf().boxed()),
        ),
        any::<i64>(),
    );
    (fields, prop_oneof![3 => Just(0u8), 1 => any::<u8>()])
        .prop_map(|((keys, cols, vals, rows), drop)| {
            let all = [
                ("rows", Mv::Int(rows)),
                ("keys", keys),
                ("cols", cols),
                ("vals", vals),
            ];
            let kept = all
                .into_iter()
                .enumerate()
                .filter(|(i, _)| drop & (1 << i) == 0);
            Mv::Map(kept.map(|(_, (k, v))| (s(k), v)).collect())
        })
        .boxed()
}

pub fn metadata() -> BoxedStrategy<Mv> {
    let field = prop::sample::select(vec![
        "format",
        "version",
        "rows",
        "reason",
        "metrics",
        "name",
        "summary",
        "goal",
        "step_metric",
        "nonfinite",
        "rows_written",
    ]);
    let def = vec((field.clone().prop_map(s), value()), 0..5).prop_map(Mv::Map);
    let defs = prop_oneof![vec(def, 0..5).prop_map(Mv::Array), value()];
    prop_oneof![
        vec((field.prop_map(s), value()), 0..6).prop_map(Mv::Map),
        defs.prop_map(|d| Mv::Map(vec![(s("metrics"), d)])),
        vec((name().prop_map(Mv::Str), value()), 0..6).prop_map(Mv::Map),
    ]
    .boxed()
}
