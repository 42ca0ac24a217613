# Transparent proxying in the zone (zone/dp_config.c) against a real store.
hy_unit_test(test_tp_config LIBS hypha-zone-core)
