hy_unit_test(test_cli LIBS hypha-cli)
