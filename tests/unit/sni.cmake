hy_unit_test(test_sni LIBS hypha-net)
