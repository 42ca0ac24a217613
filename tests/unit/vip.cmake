hy_unit_test(test_vip LIBS hypha-common)
