# Validation of the L7 policies (common/validate_l7.c) and their warnings
# (cp/policy_warn.c).
hy_unit_test(test_policy_l7 LIBS hypha-cp)
