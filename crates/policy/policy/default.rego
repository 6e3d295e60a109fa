# Cordon's default policy pack. It is on by default in every environment;
# a rule can be disabled only by name, in cordon.toml
# (`[env.NAME.policy] disable = ["rule-name"]`), and every run says so.
#
# Input: the resolved plan (docs/policy.md, input version 1). Each rule adds
# violations to `deny`: {rule, step, message, fix}, and `mount` (its guest
# path) or `secret` (its name) when the violation is about one, so reports
# can point at its line.
package cordon.default

# mount-purpose: every mount says why the step needs it, so a reviewer can
# judge the grant and an auditor can read the record.
deny contains v if {
	some step in input.steps
	some m in step.mounts
	trim_space(m.purpose) == ""
	v := {
		"rule": "mount-purpose",
		"step": step.name,
		"mount": m.guest,
		"message": sprintf("mount %s (%s) has no purpose", [m.guest, m.host]),
		"fix": sprintf("add `purpose = \"...\"` to the mount %s, saying why the step needs it", [m.guest]),
	}
}

reads_restricted(step) if {
	some m in step.mounts
	m.access != "write"
	m.classification == "restricted"
}

# restricted-isolation: a step that reads restricted data must not be able
# to move it anywhere but its declared outputs: no network, no writing in
# place.
deny contains v if {
	some step in input.steps
	reads_restricted(step)
	count(step.network) > 0
	v := {
		"rule": "restricted-isolation",
		"step": step.name,
		"message": "the step reads restricted data and may also reach the network",
		"fix": "split the step: one that reads the restricted data without network, one that publishes a reviewed output",
	}
}

deny contains v if {
	some step in input.steps
	reads_restricted(step)
	some m in step.mounts
	m.access == "read-write"
	v := {
		"rule": "restricted-isolation",
		"step": step.name,
		"mount": m.guest,
		"message": sprintf("the step reads restricted data and may also write in place to %s (read-write), outside its declared outputs", [m.guest]),
		"fix": sprintf("make %s a `read` mount and write results to a separate `write` mount", [m.guest]),
	}
}

# protected-read-write: in a protected environment, inputs are never
# changed in place; outputs are staged and published whole.
deny contains v if {
	input.environment.protected
	some step in input.steps
	some m in step.mounts
	m.access == "read-write"
	v := {
		"rule": "protected-read-write",
		"step": step.name,
		"mount": m.guest,
		"message": sprintf("mount %s is read-write in protected environment %s", [m.guest, input.environment.name]),
		"fix": sprintf("use a `read` mount for the input and a `write` mount for the output instead of `read-write` on %s", [m.guest]),
	}
}

# protected-reveal: in a protected environment no step sees a secret's
# bytes; it uses the handle (hmac, sign, http-header).
deny contains v if {
	input.environment.protected
	some step in input.steps
	some s in step.secrets
	"reveal" in s.uses
	v := {
		"rule": "protected-reveal",
		"step": step.name,
		"secret": s.name,
		"message": sprintf("secret %s may be revealed to the step in protected environment %s", [s.name, input.environment.name]),
		"fix": sprintf("remove `reveal` from the uses of %s; use the handle (hmac, sign, http-header) instead", [s.name]),
	}
}

# protected-reveal-egress: a step that sees a secret's bytes and can write
# outputs or reach the network can leak them in any encoding (XOR,
# reversal, splitting) that no redaction or output check recognises. Holds
# even where protected-reveal is disabled for a step that needs the bytes.
deny contains v if {
	input.environment.protected
	some step in input.steps
	some s in step.secrets
	"reveal" in s.uses
	egress(step)
	v := {
		"rule": "protected-reveal-egress",
		"step": step.name,
		"secret": s.name,
		"message": sprintf("secret %s may be revealed to a step that can also %s in protected environment %s: it can leak the value in any encoding", [s.name, egress_words(step), input.environment.name]),
		"fix": sprintf("remove `reveal` from the uses of %s, or split the step: one that uses the value with no write mount and no network, one that publishes", [s.name]),
	}
}

writes(step) if {
	some m in step.mounts
	m.access != "read"
}

egress(step) if writes(step)

egress(step) if count(step.network) > 0

egress_words(step) := "write outputs" if {
	writes(step)
	count(step.network) == 0
} else := "reach the network" if {
	not writes(step)
} else := "write outputs and reach the network"

# protected-env-provider: environment variables are the weakest secret
# source (any process of the runner's user can read them); protected
# environments use the local store or vault.
deny contains v if {
	input.environment.protected
	some step in input.steps
	some s in step.secrets
	s.provider == "env"
	v := {
		"rule": "protected-env-provider",
		"step": step.name,
		"secret": s.name,
		"message": sprintf("secret %s comes from the `env` provider in protected environment %s", [s.name, input.environment.name]),
		"fix": sprintf("set [env.%s.secrets] provider = \"vault\" (or \"local\") in cordon.toml", [input.environment.name]),
	}
}

# protected-approval: in a protected environment only components a trusted
# reviewer approved (this manifest, this component digest) run.
deny contains v if {
	input.environment.protected
	some step in input.steps
	not step.approval.approved
	v := {
		"rule": "protected-approval",
		"step": step.name,
		"message": sprintf("step %s has no valid approval by a trusted reviewer of protected environment %s%s", [step.name, input.environment.name, approval_detail(step)]),
		"fix": sprintf("a reviewer whose key is in [env.%s.policy] reviewers runs `cordon approve %s --key REVIEWER.key`", [input.environment.name, step.manifest.path]),
	}
}

approval_detail(step) := sprintf(" (%s)", [concat("; ", step.approval.problems)]) if {
	count(step.approval.problems) > 0
} else := ""

# protected-explicit-limits: in a protected environment every limit is a
# reviewed decision, not a default.
deny contains v if {
	input.environment.protected
	some step in input.steps
	some name in ["fuel", "memory", "timeout", "output"]
	not name in step.limits.explicit
	v := {
		"rule": "protected-explicit-limits",
		"step": step.name,
		"message": sprintf("limit `%s` is not set in the manifest (protected environment %s)", [name, input.environment.name]),
		"fix": sprintf("add `%s = ...` under [limits] in %s", [name, step.manifest.path]),
	}
}
