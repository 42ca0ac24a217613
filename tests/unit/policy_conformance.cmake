# Conformance with Kuma's docs: the policy engine (cp/policy*.c) and the
# sidecar's permission decision (common/permit.c) run on every documented
# example under tests/policy/ (see its README.md). Links the zone's library
# for the tags and SPIFFE ID the zone signs into a caller's certificate.
hy_unit_test(test_policy_conformance LIBS hypha-zone-core)
target_compile_definitions(test_policy_conformance
  PRIVATE HY_POLICY_CASES="${CMAKE_CURRENT_SOURCE_DIR}/policy")
