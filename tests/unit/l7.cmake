# The sidecar's L7 decisions (sidecar/l7*.c): pure, no sockets.
hy_unit_test(test_l7_route LIBS hypha-sidecar-core hypha-dp-net)
hy_unit_test(test_l7_retry LIBS hypha-sidecar-core hypha-dp-net)
hy_unit_test(test_l7_limit LIBS hypha-sidecar-core hypha-dp-net)
hy_unit_test(test_l7_fault LIBS hypha-sidecar-core hypha-dp-net)
hy_unit_test(test_l7_outlier LIBS hypha-sidecar-core hypha-dp-net)
hy_unit_test(test_l7_hash LIBS hypha-sidecar-core hypha-dp-net)
hy_unit_test(test_l7_grpc LIBS hypha-sidecar-core hypha-dp-net)
