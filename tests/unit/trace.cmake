# MeshTrace: the policy's validation, warnings and merge
# (common/validate_trace.c, cp/policy_trace.c); the sidecar's trace
# headers, sampling and span encodings (sidecar/trace*.c).
hy_unit_test(test_meshtrace LIBS hypha-cp)
hy_unit_test(test_trace LIBS hypha-sidecar-core)
