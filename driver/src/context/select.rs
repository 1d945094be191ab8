//! Picks the context class for each new context, with hysteresis.
//!
//! The rule: classes are tried in priority order and the first whose conditions hold is chosen,
//! where the *active* class's conditions are tested with each threshold raised by its margin
//! ([`super::Hysteresis`]) and every other class's with its plain threshold. A battery hovering
//! between 19 % and 21 % around a 20 % threshold with a 3 % margin enters the class once and
//! stays until the battery reaches 23 %; a more urgent class (earlier in the list) still takes
//! over at its own plain threshold. On top of that, no switch comes sooner than `min_dwell_s`
//! after the last one.

use std::cmp::Ordering;

use super::{Context, ContextClass, ContextError, ContextPolicy};

/// The class chosen for one context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// The class's name (and its gate's).
    pub class: String,
    /// Its index in the policy.
    pub index: usize,
    /// True when the class differs from the previous selection's, and on the first selection:
    /// the caller applies the class's gate exactly when this is set.
    pub switched: bool,
}

/// Chooses classes over time; holds the active class and when it was entered.
#[derive(Clone, Debug)]
pub struct GateSelector {
    policy: ContextPolicy,
    active: Option<usize>,
    last_switch_s: f64,
    switches: usize,
}

impl GateSelector {
    /// A selector with no active class yet. The policy is validated (a policy from
    /// [`ContextPolicy::load`] always is), so that a class is found for every context.
    pub fn new(policy: ContextPolicy) -> Result<GateSelector, ContextError> {
        policy.validate("the selector's policy")?;
        Ok(GateSelector {
            policy,
            active: None,
            last_switch_s: f64::NEG_INFINITY,
            switches: 0,
        })
    }

    pub fn policy(&self) -> &ContextPolicy {
        &self.policy
    }

    /// The active class; `None` before the first selection.
    pub fn active(&self) -> Option<&ContextClass> {
        self.active.map(|i| &self.policy.classes[i])
    }

    /// How many times the class changed, not counting the first selection.
    pub fn switches(&self) -> usize {
        self.switches
    }

    /// The class for `ctx` at time `t_s` (seconds, non-decreasing from call to call).
    pub fn select(&mut self, t_s: f64, ctx: &Context) -> Selection {
        let h = &self.policy.hysteresis;
        let last = self.policy.classes.len() - 1;
        let candidate = self
            .policy
            .classes
            .iter()
            .enumerate()
            .position(|(i, c)| c.when.holds(ctx, (self.active == Some(i)).then_some(h)))
            .unwrap_or(last);
        // A time before the last switch (or NaN) counts as within the dwell.
        let since = (t_s - self.last_switch_s).partial_cmp(&h.min_dwell_s);
        let dwelling = h.min_dwell_s > 0.0 && matches!(since, Some(Ordering::Less) | None);
        let (index, switched) = match self.active {
            None => (candidate, true),
            Some(a) if a == candidate => (a, false),
            Some(a) if dwelling => (a, false),
            Some(_) => {
                self.switches += 1;
                (candidate, true)
            }
        };
        if switched {
            self.active = Some(index);
            self.last_switch_s = t_s;
        }
        Selection {
            class: self.policy.classes[index].name.clone(),
            index,
            switched,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Hysteresis;

    fn battery(pct: f64) -> Context {
        Context {
            battery_pct: Some(pct),
            ..Context::default()
        }
    }

    #[test]
    fn the_first_selection_is_a_switch_but_not_counted() {
        let mut s = GateSelector::new(ContextPolicy::default_policy()).unwrap();
        assert!(s.active().is_none());
        let first = s.select(0.0, &battery(80.0));
        assert_eq!(
            first,
            Selection {
                class: "battery-high".into(),
                index: 4,
                switched: true
            }
        );
        assert_eq!(s.switches(), 0);
        assert!(!s.select(1.0, &battery(79.0)).switched);
        assert_eq!(s.active().map(|c| c.name.as_str()), Some("battery-high"));
    }

    #[test]
    fn an_invalid_policy_is_refused() {
        let mut p = ContextPolicy::default_policy();
        p.classes.pop();
        let e = GateSelector::new(p).unwrap_err().to_string();
        assert!(e.contains("class[3].when"), "{e}");
        let mut p = ContextPolicy::default_policy();
        p.classes.clear();
        assert!(GateSelector::new(p).is_err());
    }

    #[test]
    fn dwell_holds_the_class_until_it_has_passed() {
        let mut p = ContextPolicy::default_policy();
        p.hysteresis = Hysteresis {
            min_dwell_s: 30.0,
            ..Hysteresis::default()
        };
        let mut s = GateSelector::new(p).unwrap();
        s.select(0.0, &battery(60.0));
        assert_eq!(s.select(10.0, &battery(40.0)).class, "battery-high");
        assert_eq!(s.select(29.9, &battery(40.0)).class, "battery-high");
        let sel = s.select(30.0, &battery(40.0));
        assert_eq!((sel.class.as_str(), sel.switched), ("battery-medium", true));
        assert_eq!(s.select(40.0, &battery(10.0)).class, "battery-medium");
        assert_eq!(s.select(f64::NAN, &battery(10.0)).class, "battery-medium");
        assert_eq!(s.select(60.0, &battery(10.0)).class, "battery-low");
        assert_eq!(s.switches(), 2);
    }
}
