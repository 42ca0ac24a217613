hy_unit_test(test_kds LIBS hypha-cp)
