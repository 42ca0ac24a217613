hy_unit_test(test_ca LIBS hypha-crypto)
