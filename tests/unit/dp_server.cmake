# The DP server's checks of what sidecars and ingresses send
# (zone/dp_server.c), from the zone's library.
hy_unit_test(test_dp_server LIBS hypha-zone-core)
