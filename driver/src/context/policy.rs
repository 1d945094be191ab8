//! Context classes: which class a [`Context`] falls in, and the budget the gate of each class is
//! built for. Read from TOML (`configs/contexts/default.toml` is the shipped policy):
//!
//! ```toml
//! schema_version = 1
//! [hysteresis]            # margins for leaving the active class; all optional, default 0
//! battery_pct = 3.0
//! mem_free_mib = 16.0
//! latency_budget_ms = 0.01
//! min_dwell_s = 0.0
//! [[class]]               # in priority order: the first whose conditions all hold is chosen
//! name = "memory"
//! when = { mem_free_mib_below = 64.0 }
//! budget = { resident_fraction = 0.45 }
//! [[class]]               # the last class has no conditions
//! name = "normal"
//! ```
//!
//! Budgets are fractions of what the model costs with every layer at full precision; the gate
//! builder reads them, the selector does not.

use std::path::Path;

use caq_spec::ConfigProblem;
use serde::{Deserialize, Serialize};

use super::{Context, ContextError};

/// The policy schema this build reads. Any other `schema_version` is rejected.
pub const POLICY_SCHEMA_VERSION: u32 = 1;

/// The shipped policy, `configs/contexts/default.toml`.
const DEFAULT_POLICY: &str = include_str!("../../../configs/contexts/default.toml");

/// Context classes in priority order, and the hysteresis of switching between them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextPolicy {
    pub schema_version: u32,
    #[serde(default)]
    pub hysteresis: Hysteresis,
    /// In priority order; the last has no conditions (`[[class]]` in TOML).
    #[serde(rename = "class")]
    pub classes: Vec<ContextClass>,
}

/// How much further than its threshold a value must move before the active class is left.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hysteresis {
    /// A class entered on `battery < T` is left once the battery reaches `T + battery_pct`.
    pub battery_pct: f64,
    /// A class entered on `mem_free < T` (MiB) is left once it reaches `T + mem_free_mib`.
    pub mem_free_mib: f64,
    /// A class entered on `latency_budget < T` (ms) is left once it reaches `T + this`.
    pub latency_budget_ms: f64,
    /// No switch sooner than this many seconds after the last one.
    pub min_dwell_s: f64,
}

/// One class: when it applies and the budget its gate is built for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextClass {
    /// The class's name, which is also the name of its gate in the model bundle.
    pub name: String,
    #[serde(default, skip_serializing_if = "Conditions::is_empty")]
    pub when: Conditions,
    #[serde(default)]
    pub budget: Budget,
}

/// Conditions that must all hold; one on a field the context does not know never holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub battery_pct_below: Option<f64>,
    /// Free memory ([`Context::mem_free_mib`]) below this many MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_free_mib_below: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_budget_ms_below: Option<f64>,
}

/// What the class's gate must stay within, each a fraction in (0, 1] of the figure of the model
/// with every layer at full precision; absent = unconstrained.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Energy per inference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub energy_fraction: Option<f64>,
    /// Latency per inference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_fraction: Option<f64>,
    /// Weight bytes resident in device memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resident_fraction: Option<f64>,
}

/// In words, for messages: `energy ≤ 35 % and resident bytes ≤ 45 % of the full-precision
/// model's`, or `unconstrained`.
impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = [
            ("energy", self.energy_fraction),
            ("latency", self.latency_fraction),
            ("resident bytes", self.resident_fraction),
        ]
        .into_iter()
        // Rounded so 0.57 reads as 57, not 56.99999999999999.
        .filter_map(|(what, v)| v.map(|v| format!("{what} ≤ {} %", (v * 1e8).round() / 1e6)))
        .collect();
        if parts.is_empty() {
            f.write_str("unconstrained")
        } else {
            write!(f, "{} of the full-precision model's", parts.join(" and "))
        }
    }
}

impl Conditions {
    /// True when there are no conditions: the class always applies.
    pub fn is_empty(&self) -> bool {
        self == &Conditions::default()
    }

    /// Whether every condition holds for `ctx`; with `relax`, each threshold is raised by its
    /// margin (the test for staying in the active class).
    pub fn holds(&self, ctx: &Context, relax: Option<&Hysteresis>) -> bool {
        let margin = |m: fn(&Hysteresis) -> f64| relax.map_or(0.0, m);
        below(
            ctx.battery_pct,
            self.battery_pct_below,
            margin(|h| h.battery_pct),
        ) && below(
            ctx.mem_free_mib(),
            self.mem_free_mib_below,
            margin(|h| h.mem_free_mib),
        ) && below(
            ctx.latency_budget_ms,
            self.latency_budget_ms_below,
            margin(|h| h.latency_budget_ms),
        )
    }
}

/// No threshold holds; a threshold on an unknown value does not.
fn below(value: Option<f64>, threshold: Option<f64>, margin: f64) -> bool {
    threshold.is_none_or(|t| value.is_some_and(|v| v < t + margin))
}

impl ContextPolicy {
    /// The shipped policy, `configs/contexts/default.toml` (compiled in).
    pub fn default_policy() -> ContextPolicy {
        ContextPolicy::from_toml_str(DEFAULT_POLICY, "configs/contexts/default.toml")
            .unwrap_or_else(|e| panic!("the shipped policy is valid (a test checks it): {e}"))
    }

    /// Reads, parses and validates a policy file.
    pub fn load(path: impl AsRef<Path>) -> Result<ContextPolicy, ContextError> {
        let path = path.as_ref();
        let text =
            caq_spec::fsio::read_regular_to_string(path).map_err(|source| ContextError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        ContextPolicy::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and validates a policy; `origin` names the text in errors (usually its path).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<ContextPolicy, ContextError> {
        // The version first, so that a policy of another schema is reported as such rather
        // than as a list of unknown fields.
        let table: toml::Table = text.parse().map_err(|e| toml_error(origin, text, &e))?;
        match table.get("schema_version") {
            Some(toml::Value::Integer(v)) if *v == i64::from(POLICY_SCHEMA_VERSION) => {}
            found => {
                return Err(ContextError::SchemaVersion {
                    origin: origin.to_string(),
                    found: found.map_or_else(|| "(missing)".to_string(), |v| v.to_string()),
                    supported: POLICY_SCHEMA_VERSION,
                });
            }
        }
        let policy: ContextPolicy =
            toml::from_str(text).map_err(|e| toml_error(origin, text, &e))?;
        policy.validate(origin)?;
        Ok(policy)
    }

    /// The policy as TOML, in the layout it is read in.
    pub fn to_toml_string(&self) -> String {
        // Plain numbers, strings and tables: serializing them cannot fail.
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks every rule; the error lists all problems, each naming its field.
    pub fn validate(&self, origin: &str) -> Result<(), ContextError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ContextError::InvalidPolicy {
                origin: origin.to_string(),
                problems,
            })
        }
    }

    /// Every rule this policy breaks, in field order; empty when it is valid.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut push = |field: String, value: String, expected: &str| {
            p.push(ConfigProblem {
                field,
                value,
                expected: expected.to_string(),
            });
        };
        if self.schema_version != POLICY_SCHEMA_VERSION {
            push(
                "schema_version".into(),
                self.schema_version.to_string(),
                "1",
            );
        }
        let h = &self.hysteresis;
        for (name, v) in [
            ("battery_pct", h.battery_pct),
            ("mem_free_mib", h.mem_free_mib),
            ("latency_budget_ms", h.latency_budget_ms),
            ("min_dwell_s", h.min_dwell_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                push(format!("hysteresis.{name}"), v.to_string(), "a number ≥ 0");
            }
        }
        if self.classes.is_empty() {
            push(
                "class".into(),
                "[]".into(),
                "at least one [[class]], the last without conditions",
            );
        }
        let last = self.classes.len().saturating_sub(1);
        for (i, c) in self.classes.iter().enumerate() {
            if !caq_spec::name_ok(&c.name) {
                push(
                    format!("class[{i}].name"),
                    format!("{:?}", c.name),
                    &format!("{} (it names the class's gate)", caq_spec::NAME_RULE),
                );
            } else if self.classes[..i].iter().any(|o| o.name == c.name) {
                push(
                    format!("class[{i}].name"),
                    format!("{:?}", c.name),
                    "a name no other class has",
                );
            }
            let w = &c.when;
            for (name, v, range_ok, expected) in [
                (
                    "battery_pct_below",
                    w.battery_pct_below,
                    (0.0..=100.0).contains(&w.battery_pct_below.unwrap_or(0.0)),
                    "a percentage in (0, 100]",
                ),
                (
                    "mem_free_mib_below",
                    w.mem_free_mib_below,
                    true,
                    "MiB, a finite number > 0",
                ),
                (
                    "latency_budget_ms_below",
                    w.latency_budget_ms_below,
                    true,
                    "milliseconds, a finite number > 0",
                ),
            ] {
                if let Some(v) = v
                    && !(v.is_finite() && v > 0.0 && range_ok)
                {
                    push(format!("class[{i}].when.{name}"), v.to_string(), expected);
                }
            }
            let b = &c.budget;
            for (name, v) in [
                ("energy_fraction", b.energy_fraction),
                ("latency_fraction", b.latency_fraction),
                ("resident_fraction", b.resident_fraction),
            ] {
                if let Some(v) = v
                    && !(v > 0.0 && v <= 1.0)
                {
                    push(
                        format!("class[{i}].budget.{name}"),
                        v.to_string(),
                        "a fraction in (0, 1]",
                    );
                }
            }
            if i == last && !c.when.is_empty() {
                push(
                    format!("class[{i}].when"),
                    conditions_text(&c.when),
                    "no conditions: the last class is the fallback, chosen when no other holds",
                );
            }
            if i < last && c.when.is_empty() {
                push(
                    format!("class[{i}].when"),
                    "{}".into(),
                    "conditions: only the last class may have none (the classes after it could never be chosen)",
                );
            }
        }
        p
    }

    /// The class called `name`.
    pub fn class(&self, name: &str) -> Option<&ContextClass> {
        self.classes.iter().find(|c| c.name == name)
    }

    /// The index of the first class whose conditions hold for `ctx`, without hysteresis; the
    /// last class when none holds.
    pub fn classify(&self, ctx: &Context) -> usize {
        self.classes
            .iter()
            .position(|c| c.when.holds(ctx, None))
            .unwrap_or(self.classes.len().saturating_sub(1))
    }
}

/// Conditions as an inline TOML table, for messages.
fn conditions_text(w: &Conditions) -> String {
    let parts: Vec<String> = [
        ("battery_pct_below", w.battery_pct_below),
        ("mem_free_mib_below", w.mem_free_mib_below),
        ("latency_budget_ms_below", w.latency_budget_ms_below),
    ]
    .into_iter()
    .filter_map(|(n, v)| v.map(|v| format!("{n} = {v}")))
    .collect();
    format!("{{ {} }}", parts.join(", "))
}

fn toml_error(origin: &str, text: &str, err: &toml::de::Error) -> ContextError {
    let location = match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{origin}:{line}:{column}")
        }
        None => origin.to_string(),
    };
    ContextError::Toml {
        location,
        message: err.message().trim_end().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(battery: Option<f64>, mem_mib: Option<u64>, budget_ms: Option<f64>) -> Context {
        Context {
            battery_pct: battery,
            mem_available_bytes: mem_mib.map(|m| m * super::super::MIB),
            latency_budget_ms: budget_ms,
            ..Context::default()
        }
    }

    #[test]
    fn a_budget_reads_as_words_not_a_debug_dump() {
        let b = Budget {
            energy_fraction: Some(0.35),
            resident_fraction: Some(0.57),
            ..Budget::default()
        };
        assert_eq!(
            b.to_string(),
            "energy ≤ 35 % and resident bytes ≤ 57 % of the full-precision model's"
        );
        assert_eq!(Budget::default().to_string(), "unconstrained");
    }

    #[test]
    fn the_shipped_policy_parses_and_round_trips() {
        let p = ContextPolicy::default_policy();
        let names: Vec<&str> = p.classes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "deadline",
                "memory",
                "battery-low",
                "battery-medium",
                "battery-high"
            ]
        );
        assert_eq!(p.hysteresis.battery_pct, 3.0);
        assert_eq!(p.hysteresis.mem_free_mib, 16.0);
        assert_eq!(p.classes[2].when.battery_pct_below, Some(20.0));
        assert_eq!(p.classes[2].budget.energy_fraction, Some(0.35));
        assert!(p.classes[4].when.is_empty());
        let again = ContextPolicy::from_toml_str(&p.to_toml_string(), "again").unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn classify_takes_the_first_class_that_holds_and_unknowns_never_hold() {
        let p = ContextPolicy::default_policy();
        let name = |c: Context| p.classes[p.classify(&c)].name.clone();
        assert_eq!(name(ctx(None, None, None)), "battery-high");
        assert_eq!(name(ctx(Some(10.0), Some(32), Some(0.05))), "deadline");
        assert_eq!(name(ctx(Some(10.0), Some(32), Some(10.0))), "memory");
        assert_eq!(name(ctx(Some(10.0), Some(512), None)), "battery-low");
        assert_eq!(name(ctx(Some(20.0), Some(512), None)), "battery-medium");
        assert_eq!(name(ctx(Some(50.0), None, None)), "battery-high");
        assert_eq!(name(ctx(None, Some(63), None)), "memory");
        assert_eq!(name(ctx(None, Some(64), None)), "battery-high");
    }

    #[test]
    fn relaxed_conditions_add_the_margins() {
        let h = Hysteresis {
            battery_pct: 3.0,
            mem_free_mib: 16.0,
            latency_budget_ms: 0.01,
            min_dwell_s: 0.0,
        };
        let low = Conditions {
            battery_pct_below: Some(20.0),
            ..Conditions::default()
        };
        assert!(!low.holds(&ctx(Some(22.9), None, None), None));
        assert!(low.holds(&ctx(Some(22.9), None, None), Some(&h)));
        assert!(!low.holds(&ctx(Some(23.0), None, None), Some(&h)));
        assert!(!low.holds(&ctx(None, None, None), Some(&h)));
        let both = Conditions {
            mem_free_mib_below: Some(64.0),
            latency_budget_ms_below: Some(0.1),
            ..Conditions::default()
        };
        assert!(both.holds(&ctx(None, Some(79), Some(0.105)), Some(&h)));
        assert!(!both.holds(&ctx(None, Some(80), Some(0.105)), Some(&h)));
        assert!(!both.holds(&ctx(None, Some(79), None), Some(&h)));
    }
}
