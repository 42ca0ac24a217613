# The sidecar's Prometheus endpoint: merging an app's page into its own
# (sidecar/dp_prom.c).
hy_unit_test(test_dp_prom LIBS hypha-sidecar-core hypha-dp-net)
