hy_unit_test(test_net LIBS hypha-net)
