hy_unit_test(test_tproxy LIBS hypha-tproxy)
