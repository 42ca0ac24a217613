hy_unit_test(test_ws LIBS hypha-api hypha-crypto)
