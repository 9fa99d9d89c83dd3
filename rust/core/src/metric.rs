//! Metric definitions (`define_metric`): which summary statistics a key shows, the goal that
//! picks its `best` value, and the metric used as its x-axis; a definition applies to the keys
//! its name matches as a [`glob_match`] pattern.
//!
//! Invariants: a [`MetricDef`] built by [`MetricDef::parse`] is valid (a `best` statistic
//! always has a goal, `none` stands alone); [`MetricDefs`] holds at most one definition per
//! name, ordered from the oldest to the most recent, and the most recent match wins.

use crate::error::{Error, Result};
use crate::glob::glob_match;
use crate::keys::MAX_KEY_BYTES;
use crate::msgpack::{Enc, Mp};

/// One summary statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stat {
    /// Smallest value (NaN skipped).
    Min,
    /// Largest value (NaN skipped).
    Max,
    /// Mean of the values (NaN skipped).
    Mean,
    /// First logged value.
    First,
    /// Last logged value.
    Last,
    /// Smallest or largest value, by the definition's goal (NaN skipped).
    Best,
}

impl Stat {
    /// Every statistic, in the order summaries list them.
    pub const ALL: [Stat; 6] = [
        Stat::Min,
        Stat::Max,
        Stat::Mean,
        Stat::First,
        Stat::Last,
        Stat::Best,
    ];

    /// The name used in `summary=` and in files.
    pub fn name(self) -> &'static str {
        match self {
            Stat::Min => "min",
            Stat::Max => "max",
            Stat::Mean => "mean",
            Stat::First => "first",
            Stat::Last => "last",
            Stat::Best => "best",
        }
    }

    /// Parses a statistic's name in any case (`"MAX"`, `"Best"`), as wandb does.
    pub fn parse(s: &str) -> Option<Self> {
        Stat::ALL
            .into_iter()
            .find(|st| st.name().eq_ignore_ascii_case(s))
    }
}

/// Which direction is better, for the `best` statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Smaller is better.
    Minimize,
    /// Larger is better.
    Maximize,
}

impl Goal {
    /// The name stored in files.
    pub fn name(self) -> &'static str {
        match self {
            Goal::Minimize => "minimize",
            Goal::Maximize => "maximize",
        }
    }

    /// Parses a goal in any case and with surrounding spaces (`"Maximize"`), as wandb does;
    /// wandb's short spellings `min` and `max` are accepted.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let is = |name: &str| s.eq_ignore_ascii_case(name);
        if is("minimize") || is("min") {
            Some(Goal::Minimize)
        } else if is("maximize") || is("max") {
            Some(Goal::Maximize)
        } else {
            None
        }
    }
}

/// One `define_metric` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricDef {
    /// A key name, or a pattern with `*` / `?`.
    pub name: Box<str>,
    /// The metric used as this metric's x-axis.
    pub step_metric: Option<Box<str>>,
    /// Statistics shown in the summary: `None` keeps the default (the last value, plain);
    /// an empty list (`summary="none"`) leaves the key out of the summary.
    pub summary: Option<Vec<Stat>>,
    /// The goal for `best`.
    pub goal: Option<Goal>,
}

fn bad(arg: &'static str, value: Option<&str>, reason: impl Into<String>) -> Error {
    let value = match value {
        Some(v) => format!("{:?}", v.chars().take(80).collect::<String>()),
        None => "None".into(),
    };
    Error::BadArgument {
        context: "define_metric",
        arg,
        value,
        reason: reason.into(),
    }
}

fn check_name(arg: &'static str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(bad(arg, Some(s), "must not be empty"));
    }
    if s.len() > MAX_KEY_BYTES {
        return Err(bad(
            arg,
            Some(s),
            format!("keys are limited to {MAX_KEY_BYTES} bytes"),
        ));
    }
    if s.contains('\0') {
        return Err(bad(arg, Some(s), "must not contain NUL characters"));
    }
    Ok(())
}

impl MetricDef {
    /// Checks and normalises the arguments of `define_metric`. Errors name the argument.
    pub fn parse(
        name: &str,
        step_metric: Option<&str>,
        summary: Option<&str>,
        goal: Option<&str>,
    ) -> Result<Self> {
        check_name("name", name)?;
        if let Some(sm) = step_metric {
            check_name("step_metric", sm)?;
            if sm.contains(['*', '?']) {
                return Err(bad(
                    "step_metric",
                    Some(sm),
                    "must name one metric, not a pattern",
                ));
            }
        }
        let goal = match goal {
            None => None,
            Some(g) => Some(Goal::parse(g).ok_or_else(|| {
                bad(
                    "goal",
                    Some(g),
                    "expected \"minimize\" or \"maximize\" (or \"min\"/\"max\")",
                )
            })?),
        };
        let summary = match summary {
            None => None,
            Some(s) => Some(parse_summary(s)?),
        };
        if summary.as_ref().is_some_and(|s| s.contains(&Stat::Best)) && goal.is_none() {
            return Err(bad(
                "goal",
                None,
                "summary \"best\" needs goal=\"minimize\" or goal=\"maximize\"",
            ));
        }
        Ok(MetricDef {
            name: name.into(),
            step_metric: step_metric.map(Into::into),
            summary,
            goal,
        })
    }

    /// Whether this definition applies to `key`.
    pub fn matches(&self, key: &str) -> bool {
        glob_match(&self.name, key)
    }

    /// Encodes the definition as a msgpack map (see `docs/FORMAT.md`, metrics frame).
    pub fn encode(&self, out: &mut Enc) {
        out.map(4);
        out.str("name");
        out.str(&self.name);
        out.str("step_metric");
        match &self.step_metric {
            Some(s) => out.str(s),
            None => out.nil(),
        }
        out.str("summary");
        match &self.summary {
            Some(stats) => {
                out.array(stats.len());
                for s in stats {
                    out.str(s.name());
                }
            }
            None => out.nil(),
        }
        out.str("goal");
        match self.goal {
            Some(g) => out.str(g.name()),
            None => out.nil(),
        }
    }

    /// Decodes a definition map; statistic names this version does not know are skipped.
    pub fn decode(v: &Mp<'_>) -> Option<Self> {
        let name = v.get("name")?.as_str()?;
        let text = |k: &str| v.get(k).and_then(Mp::as_str);
        let summary = match v.get("summary") {
            Some(Mp::Array(items)) => Some(
                items
                    .iter()
                    .filter_map(|s| s.as_str().and_then(Stat::parse))
                    .collect(),
            ),
            _ => None,
        };
        Some(MetricDef {
            name: name.into(),
            step_metric: text("step_metric").map(Into::into),
            summary,
            goal: text("goal").and_then(Goal::parse),
        })
    }
}

fn parse_summary(s: &str) -> Result<Vec<Stat>> {
    let expected = "expected a comma-separated subset of min, max, mean, first, last, best, \
                    or \"none\"";
    let mut stats = Vec::new();
    let mut none = false;
    for part in s.split(',').map(str::trim) {
        if part.eq_ignore_ascii_case("none") {
            none = true;
        } else if let Some(st) = Stat::parse(part) {
            if !stats.contains(&st) {
                stats.push(st);
            }
        } else if part.is_empty() {
            return Err(bad(
                "summary",
                Some(s),
                format!("empty statistic; {expected}"),
            ));
        } else {
            return Err(bad(
                "summary",
                Some(s),
                format!("unknown statistic {part:?}; {expected}"),
            ));
        }
    }
    if none && !stats.is_empty() {
        return Err(bad(
            "summary",
            Some(s),
            "\"none\" cannot be combined with other statistics",
        ));
    }
    stats.sort();
    Ok(stats)
}

/// Definitions in the order they were made; a new definition of the same name replaces the
/// old one and becomes the most recent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricDefs {
    defs: Vec<MetricDef>,
}

impl MetricDefs {
    /// Adds `def`, replacing an earlier definition of the same name.
    pub fn define(&mut self, def: MetricDef) {
        self.defs.retain(|d| d.name != def.name);
        self.defs.push(def);
    }

    /// The index of the most recent definition matching `key`.
    pub fn resolve(&self, key: &str) -> Option<usize> {
        self.defs.iter().rposition(|d| d.matches(key))
    }

    /// The definition at `index` (from [`MetricDefs::resolve`]).
    pub fn get(&self, index: usize) -> Option<&MetricDef> {
        self.defs.get(index)
    }

    /// The definitions, oldest first.
    pub fn as_slice(&self) -> &[MetricDef] {
        &self.defs
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// The metrics frame's payload: `{"metrics": [definition, ...]}`, oldest first.
    pub fn encode(&self, out: &mut Enc) {
        out.buf.clear();
        out.map(1);
        out.str("metrics");
        out.array(self.defs.len());
        for d in &self.defs {
            d.encode(out);
        }
    }

    /// Decodes a metrics frame's payload.
    pub fn decode(v: &Mp<'_>) -> std::result::Result<Self, String> {
        let items = v
            .get("metrics")
            .and_then(Mp::as_array)
            .ok_or("metrics frame: no \"metrics\" array")?;
        // As if each were `define`d in turn, in linear time (a hostile frame may hold millions
        // of distinct names): the last definition of each name, in the order of those.
        let mut seen = std::collections::HashSet::new();
        let mut defs = Vec::with_capacity(items.len());
        for item in items.iter().rev() {
            let def = MetricDef::decode(item).ok_or("metrics frame: bad definition")?;
            if seen.insert(def.name.clone()) {
                defs.push(def);
            }
        }
        defs.reverse();
        Ok(MetricDefs { defs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_normalises_and_names_the_bad_argument() {
        let d = MetricDef::parse("val/*", Some("epoch"), Some(" max,min , max"), None).unwrap();
        assert_eq!(d.summary, Some(vec![Stat::Min, Stat::Max]));
        assert_eq!(d.step_metric.as_deref(), Some("epoch"));
        let d = MetricDef::parse("loss", None, Some("best"), Some("min")).unwrap();
        assert_eq!(d.goal, Some(Goal::Minimize));
        let d = MetricDef::parse("acc", None, Some("none"), Some("maximize")).unwrap();
        assert_eq!(d.summary, Some(vec![]));
        assert_eq!(d.goal, Some(Goal::Maximize));
        let d = MetricDef::parse("x", None, None, None).unwrap();
        assert_eq!((d.summary, d.goal, d.step_metric), (None, None, None));
        // Any case and surrounding spaces, as wandb accepts them.
        let d = MetricDef::parse("acc", None, Some(" MAX,Best "), Some(" Maximize ")).unwrap();
        assert_eq!(d.summary, Some(vec![Stat::Max, Stat::Best]));
        assert_eq!(d.goal, Some(Goal::Maximize));
        let d = MetricDef::parse("acc", None, Some("None"), Some("MIN")).unwrap();
        assert_eq!((d.summary, d.goal), (Some(vec![]), Some(Goal::Minimize)));

        let cases = [
            ("loss", None, Some("avg"), None, "summary"),
            ("loss", None, Some(""), None, "summary"),
            ("loss", None, Some("min,,max"), None, "summary"),
            ("loss", None, Some("min,none"), None, "summary"),
            ("loss", None, Some("best"), None, "goal"),
            ("loss", None, Some("min"), Some("down"), "goal"),
            ("", None, None, None, "name"),
            ("a\0b", None, None, None, "name"),
            ("loss", Some("ep*"), None, None, "step_metric"),
            ("loss", Some(""), None, None, "step_metric"),
        ];
        for (name, sm, summary, goal, arg) in cases {
            let e = MetricDef::parse(name, sm, summary, goal).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("define_metric: {arg}=")),
                "{msg} should name {arg}"
            );
        }
    }

    #[test]
    fn the_most_recent_matching_definition_wins_and_redefinition_moves_it_last() {
        let mut defs = MetricDefs::default();
        defs.define(MetricDef::parse("*", None, Some("last"), None).unwrap());
        defs.define(MetricDef::parse("val/*", None, Some("min"), None).unwrap());
        assert_eq!(defs.resolve("val/loss"), Some(1));
        assert_eq!(defs.resolve("train/loss"), Some(0));
        defs.define(MetricDef::parse("*", None, Some("max"), None).unwrap());
        assert_eq!(defs.as_slice().len(), 2);
        assert_eq!(defs.resolve("val/loss"), Some(1));
        let d = defs.get(1).unwrap();
        assert_eq!((&*d.name, d.summary.clone()), ("*", Some(vec![Stat::Max])));
        assert_eq!(MetricDefs::default().resolve("x"), None);
    }

    #[test]
    fn definitions_round_trip_through_msgpack() {
        let mut defs = MetricDefs::default();
        defs.define(
            MetricDef::parse("val/*", Some("epoch"), Some("min,best"), Some("max")).unwrap(),
        );
        defs.define(MetricDef::parse("acc", None, Some("none"), None).unwrap());
        defs.define(MetricDef::parse("lr", None, None, None).unwrap());
        let mut enc = Enc::default();
        defs.encode(&mut enc);
        let v = crate::msgpack::decode(&enc.buf).unwrap();
        assert_eq!(MetricDefs::decode(&v).unwrap(), defs);
    }
}
