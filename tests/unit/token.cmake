hy_unit_test(test_token LIBS hypha-crypto)
