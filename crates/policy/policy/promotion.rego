# Cordon's default promotion pack: what an artifact's provenance must show
# before `cordon promote` lets it into a higher environment. It is always
# evaluated; the target environment adds its own files with
# `[env.NAME.promotion] policy = [...]` and loosens the two rules that have
# a setting (`break-glass`, `native-floats`) only in its own cordon.toml.
#
# Input: the verified provenance (docs/promotion.md, input version 1). Each
# rule adds violations to `deny`: {rule, step, message, fix}.
package cordon.promotion

# promotion-required-steps: the steps the target requires are in the
# artifact's provenance (a model must have been evaluated, say).
deny contains v if {
	some name in input.promotion.required_steps
	not step_named(name)
	v := {
		"rule": "promotion-required-steps",
		"message": sprintf("step `%s` is required by environment `%s` but is not in the artifact's provenance", [name, input.target.name]),
		"fix": sprintf("promote an artifact produced through step `%s`", [name]),
	}
}

step_named(name) if {
	some s in input.steps
	s.name == name
}

# promotion-step-succeeded: every step of the provenance succeeded.
deny contains v if {
	some s in input.steps
	not s.success
	v := {
		"rule": "promotion-step-succeeded",
		"step": s.name,
		"message": sprintf("step `%s` (run %s) did not succeed", [s.name, s.run_id]),
		"fix": "run the pipeline again and promote a run that succeeded",
	}
}

# promotion-reproducible: every step ran with the fixed clock and seeded
# randomness (or was re-executed and gave the same outputs), so the target
# can rebuild the artifact from its records.
deny contains v if {
	some s in input.steps
	not s.reproducible
	not s.reexecuted
	v := {
		"rule": "promotion-reproducible",
		"step": s.name,
		"message": sprintf("step `%s` is not reproducible (it saw the real clock or real randomness) and was not re-executed", [s.name]),
		"fix": "remove `clock = \"real\"` / `random = \"real\"` from its manifest, or promote with --reexecute",
	}
}

# promotion-approval: in a protected target, every component was approved
# by one of the target's own reviewers, for exactly the manifest and
# component that ran.
deny contains v if {
	input.target.protected
	some s in input.steps
	not s.approval.approved
	v := {
		"rule": "promotion-approval",
		"step": s.name,
		"message": sprintf("step `%s` (component %s) is not approved by a reviewer of environment `%s`: %s", [s.name, s.component.digest, input.target.name, concat("; ", s.approval.problems)]),
		"fix": sprintf("have a reviewer of `%s` run `cordon approve %s --key REVIEWER.key`, then run the pipeline again", [input.target.name, s.manifest.path]),
	}
}

# promotion-native-floats: native-float results (the default float mode)
# are bit for bit only on the CPU architecture they ran on; a target that
# needs more sets `native-floats = false` and takes only steps with
# `floats = "canonical"`.
deny contains v if {
	not input.promotion.native_floats
	some s in input.steps
	s.floats == "native"
	v := {
		"rule": "promotion-native-floats",
		"step": s.name,
		"message": sprintf("step `%s` ran with native floats (NaN bits of its CPU architecture)", [s.name]),
		"fix": sprintf("set `floats = \"canonical\"` in its manifest and run it again, or set `native-floats = true` in [env.%s.promotion]", [input.target.name]),
	}
}

# promotion-policy-decision: every step ran under a recorded policy decision.
deny contains v if {
	some s in input.steps
	s.policy.decision == null
	v := {
		"rule": "promotion-policy-decision",
		"step": s.name,
		"message": sprintf("the record of step `%s` holds no policy decision", [s.name]),
		"fix": "run the pipeline with a runner that records its policy decision",
	}
}

deny contains v if {
	some s in input.steps
	not s.policy.decision in {null, "allow", "break-glass"}
	v := {
		"rule": "promotion-policy-decision",
		"step": s.name,
		"message": sprintf("step `%s` ran under the policy decision `%s`", [s.name, s.policy.decision]),
		"fix": "run the pipeline again under a clean policy decision",
	}
}

# promotion-break-glass: no step overrode policy with break-glass, unless
# the target accepts it.
deny contains v if {
	not input.promotion.break_glass
	some s in input.steps
	s.policy.decision == "break-glass"
	v := {
		"rule": "promotion-break-glass",
		"step": s.name,
		"message": sprintf("step `%s` ran with break-glass (%d violations overridden: %s)", [s.name, s.policy.overridden, s.policy.justification]),
		"fix": sprintf("fix the violations and run the pipeline again, or set `break-glass = true` in [env.%s.promotion]", [input.target.name]),
	}
}

# promotion-classification: the source datasets are of classifications the
# target accepts (an empty list accepts all).
deny contains v if {
	count(input.promotion.classifications) > 0
	some d in input.datasets
	not d.classification in input.promotion.classifications
	v := {
		"rule": "promotion-classification",
		"step": d.step,
		"message": sprintf("dataset %s (%s, read by `%s` at %s) is classified %v, which environment `%s` does not accept (it accepts %s)", [d.host, d.sha256, d.step, d.guest, d.classification, input.target.name, concat(", ", input.promotion.classifications)]),
		"fix": sprintf("train on data of an accepted classification, or add it to `classifications` in [env.%s.promotion]", [input.target.name]),
	}
}
