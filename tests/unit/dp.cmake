hy_unit_test(test_dp LIBS hypha-sidecar-core hypha-cli)
