# not linked with ldns: it sees the library appear only when loaded
hy_unit_test(test_dns_ldns LIBS hypha-sidecar-core)
