# MeshAccessLog: the format language (common/alog_fmt.c); the policy's
# validation, warnings and merge (common/validate_obs.c, cp/policy_obs.c).
hy_unit_test(test_alog_fmt LIBS hypha-common)
hy_unit_test(test_policy_obs LIBS hypha-cp)
