# MeshMetric (common/validate_metric.c, cp/policy_metric.c, cp/policy_warn.c)
# and the zone's Prometheus discovery (zone/prom_sd.c).
hy_unit_test(test_meshmetric LIBS hypha-zone-core)
