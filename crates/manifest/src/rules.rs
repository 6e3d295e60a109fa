//! The catalogue of the default policy pack's rules: each name and why it
//! exists. It lives here, beside the configuration that names rules in
//! `disable = [...]`, so that `cordon.toml` is validated (with the file and
//! line of a wrong name) without evaluating any policy; the policy crate
//! owns the Rego that implements them and checks, in its tests, that the
//! two agree.

/// A rule of the default pack: its name and why it exists.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The name violations carry and `disable` uses.
    pub name: &'static str,
    /// Why the rule exists.
    pub reason: &'static str,
}

/// Every rule of the default pack.
pub const DEFAULT_RULES: &[Rule] = &[
    Rule {
        name: "mount-purpose",
        reason: "Every mount says why the step needs it, so reviewers can judge the grant and auditors can read the record.",
    },
    Rule {
        name: "restricted-isolation",
        reason: "A step that reads restricted data may not reach the network or write in place (read-write): the data leaves only through its declared outputs.",
    },
    Rule {
        name: "protected-read-write",
        reason: "In protected environments inputs are never changed in place; outputs are staged and published whole.",
    },
    Rule {
        name: "protected-reveal",
        reason: "In protected environments no step sees a secret's bytes; it uses the handle.",
    },
    Rule {
        name: "protected-reveal-egress",
        reason: "In protected environments a step that sees a secret's bytes may not also write outputs or reach the network: it could leak them in an encoding no check recognises.",
    },
    Rule {
        name: "protected-env-provider",
        reason: "Environment variables are the weakest secret source; protected environments use the local store or vault.",
    },
    Rule {
        name: "protected-approval",
        reason: "In protected environments only manifests and components approved by a trusted reviewer run (separation of duties).",
    },
    Rule {
        name: "protected-explicit-limits",
        reason: "In protected environments every limit (fuel, memory, timeout, output) is a reviewed decision, not a default.",
    },
];
