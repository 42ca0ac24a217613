hy_unit_test(test_agent LIBS hypha-agent hypha-cli hypha-dp-net)
