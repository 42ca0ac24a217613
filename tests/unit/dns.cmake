hy_unit_test(test_dns LIBS hypha-sidecar-core hypha-dp-net PkgConfig::LDNS)
