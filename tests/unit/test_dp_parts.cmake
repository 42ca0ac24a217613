hy_unit_test(test_dp_parts LIBS hypha-common)
