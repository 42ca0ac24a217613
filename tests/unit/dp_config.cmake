# The sidecar config generator (zone/dp_config.c, zone/ingress_config.c) run
# against a real store in a temporary directory.
hy_unit_test(test_dp_config LIBS hypha-zone-core)
