hy_unit_test(test_policy LIBS hypha-cp)
