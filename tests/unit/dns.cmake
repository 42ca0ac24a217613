hy_unit_test(test_dns LIBS hypha-sidecar-core PkgConfig::LDNS)
