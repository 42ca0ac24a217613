hy_unit_test(test_dp SOURCES ${CMAKE_SOURCE_DIR}/sidecar/dp.c ${CMAKE_SOURCE_DIR}/sidecar/dp_client.c
             ${CMAKE_SOURCE_DIR}/sidecar/dp_admin.c ${CMAKE_SOURCE_DIR}/sidecar/dp_file.c
             ${CMAKE_SOURCE_DIR}/sidecar/dp_snapshot.c LIBS hypha-api hypha-crypto)
target_include_directories(test_dp PRIVATE ${CMAKE_SOURCE_DIR}/sidecar)
