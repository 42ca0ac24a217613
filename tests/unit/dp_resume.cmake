hy_unit_test(test_dp_resume LIBS hypha-sidecar-core hypha-dp-net)
