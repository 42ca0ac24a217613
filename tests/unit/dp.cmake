hy_unit_test(test_dp SOURCES ${CMAKE_SOURCE_DIR}/sidecar/dp.c ${CMAKE_SOURCE_DIR}/sidecar/dp_client.c
             ${CMAKE_SOURCE_DIR}/sidecar/dp_admin.c
             ${CMAKE_SOURCE_DIR}/sidecar/dp_snapshot.c
             ${CMAKE_SOURCE_DIR}/sidecar/proxy.c ${CMAKE_SOURCE_DIR}/sidecar/proxy_conn.c
             ${CMAKE_SOURCE_DIR}/sidecar/proxy_inbound.c ${CMAKE_SOURCE_DIR}/sidecar/proxy_outbound.c
             ${CMAKE_SOURCE_DIR}/sidecar/proxy_health.c ${CMAKE_SOURCE_DIR}/sidecar/proxy_route.c
             ${CMAKE_SOURCE_DIR}/sidecar/proxy_tls.c LIBS hypha-api hypha-crypto)
target_include_directories(test_dp PRIVATE ${CMAKE_SOURCE_DIR}/sidecar)
