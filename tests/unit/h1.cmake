hy_unit_test(test_h1 LIBS hypha-net)
