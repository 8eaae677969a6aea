//! Setting a condition the Kubernetes way: the transition time moves only when status or reason does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition without its times, as a decision produces it.
pub fn new(type_: &str, status: &str, reason: &str, message: impl Into<String>) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        // Set by `set`.
        last_transition_time: Time(Default::default()),
        observed_generation: None,
    }
}

/// Whether `next` is a transition from `previous`: a change of status or reason. A new message alone is not.
pub fn is_transition(previous: Option<&Condition>, next: &Condition) -> bool {
    previous.is_none_or(|p| p.status != next.status || p.reason != next.reason)
}

/// Puts `next` into `conditions`, keeping the old transition time unless status or reason changed.
pub fn set(conditions: &mut Vec<Condition>, mut next: Condition, generation: Option<i64>, now: &Time) {
    next.observed_generation = generation;
    match conditions.iter_mut().find(|c| c.type_ == next.type_) {
        Some(existing) => {
            next.last_transition_time = if is_transition(Some(existing), &next) {
                now.clone()
            } else {
                existing.last_transition_time.clone()
            };
            *existing = next;
        }
        None => {
            next.last_transition_time = now.clone();
            conditions.push(next);
        }
    }
}

/// The condition of `type_`, if set.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
