hy_unit_test(test_permit LIBS hypha-common)
