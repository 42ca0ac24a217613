# The store's unit suite again, on a PostgreSQL the wrapper starts.
add_test(NAME test_store_pg COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/unit/store_pg.sh
                                    $<TARGET_FILE:test_store>)
set_tests_properties(test_store_pg PROPERTIES ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1"
                                              SKIP_RETURN_CODE 77 TIMEOUT 300)
