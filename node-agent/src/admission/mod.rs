//! Admission: every field of the v1 PodSpec and Container, with the agent's decision for each.
//! A pod that asks for something the agent cannot honour is refused as the kubelet refuses at
//! admission (phase `Failed`, a reason, a message naming the field, an Event): it never runs
//! with less isolation or less correctness than it asked for. A field is only *ignored* where
//! ignoring it can make the pod neither less isolated nor less correct, and it is still
//! reported (the `UnsupportedFields` condition and Event).
//!
//! The structs are destructured without `..`, so a field added to `k8s-openapi` does not
//! compile until it has a decision here. Pure.

mod container;
mod pod;
mod volumes;

#[cfg(test)]
mod tests;

use k8s_openapi::api::core::v1::Pod;

/// What this node allows beyond the default (the agent's flags).
#[derive(Clone, Debug, Default)]
pub struct NodePolicy {
    /// `securityContext.privileged: true` (`--allow-privileged`).
    pub allow_privileged: bool,
    /// `hostNetwork`, `hostPID`, `hostIPC` (`--allow-host-namespaces`).
    pub allow_host_namespaces: bool,
    /// `hostPath` volumes (`--allow-host-path`).
    pub allow_host_path: bool,
    /// Sysctls outside the kubelet's safe set that pods may set (`--allowed-unsafe-sysctls`,
    /// names or `prefix.*`).
    pub allowed_unsafe_sysctls: Vec<String>,
}

/// Why a field is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The agent does not implement it (yet).
    Unsupported,
    /// The node's policy does not allow it.
    Forbidden,
    /// A sysctl outside the allowed set (the kubelet's `SysctlForbidden`).
    Sysctl,
}

/// One field and the reason for the decision about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The field, as a path: `spec.containers[app].securityContext.seLinuxOptions`.
    pub field: String,
    /// What is wrong, for a person.
    pub detail: String,
    /// Refusals only: the kind of refusal.
    pub why: Why,
}

/// The decisions about one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Review {
    /// Fields the agent cannot honour: the pod must not run.
    pub refused: Vec<Finding>,
    /// Fields the agent ignores harmlessly: reported, the pod runs.
    pub ignored: Vec<Finding>,
}

/// How a refused pod is reported: `status.reason` and `status.message`, and the Event's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// `Unsupported`, `Forbidden` or `SysctlForbidden`.
    pub reason: &'static str,
    /// `Pod was rejected: ...`, naming every refused field.
    pub message: String,
}

impl Review {
    pub(crate) fn refuse(&mut self, field: impl Into<String>, why: Why, detail: impl Into<String>) {
        self.refused.push(Finding {
            field: field.into(),
            detail: detail.into(),
            why,
        });
    }

    pub(crate) fn ignore(&mut self, field: impl Into<String>, detail: impl Into<String>) {
        self.ignored.push(Finding {
            field: field.into(),
            detail: detail.into(),
            why: Why::Unsupported,
        });
    }

    /// The rejection, if any field is refused.
    pub fn rejection(&self) -> Option<Rejection> {
        let first = self.refused.first()?;
        let reason = match first.why {
            Why::Unsupported => "Unsupported",
            Why::Forbidden => "Forbidden",
            Why::Sysctl => "SysctlForbidden",
        };
        let fields: Vec<String> = self
            .refused
            .iter()
            .map(|f| format!("{} ({})", f.field, f.detail))
            .collect();
        Some(Rejection {
            reason,
            message: format!(
                "Pod was rejected: berth-agent cannot honour {}",
                fields.join("; ")
            ),
        })
    }

    /// The ignored fields' paths, for the `UnsupportedFields` condition and Event.
    pub fn ignored_fields(&self) -> Vec<String> {
        self.ignored.iter().map(|f| f.field.clone()).collect()
    }
}

/// Reviews every field of `pod` against what the agent implements and `policy` allows.
pub fn review(pod: &Pod, policy: &NodePolicy) -> Review {
    let mut r = Review::default();
    if let Some(spec) = pod.spec.as_ref() {
        pod::review_spec(spec, policy, &mut r);
    }
    r
}
