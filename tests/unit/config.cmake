hy_unit_test(test_config LIBS hypha-common)
