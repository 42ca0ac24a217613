# its fake control plane is the lws websocket server: the lws client with it
hy_unit_test(test_dp LIBS hypha-sidecar-core hypha-cli hypha-net)
