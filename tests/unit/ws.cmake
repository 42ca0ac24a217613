hy_unit_test(test_ws LIBS hypha-net hypha-crypto)
