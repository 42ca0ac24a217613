# The zone's questions to sidecars for their metrics (zone/dp_stats.c).
hy_unit_test(test_dp_stats LIBS hypha-zone-core)
