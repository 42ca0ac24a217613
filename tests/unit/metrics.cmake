hy_unit_test(test_metrics LIBS hypha-common)
# The rendered text must be valid exposition format and pass promtool's lint.
find_program(PROMTOOL promtool)
if(PROMTOOL)
  add_test(NAME test_metrics_promtool
           COMMAND sh -c "\"$1\" --render > \"$2\" && \"$3\" check metrics < \"$2\""
                   sh $<TARGET_FILE:test_metrics> ${CMAKE_CURRENT_BINARY_DIR}/metrics.prom
                   ${PROMTOOL})
  set_tests_properties(test_metrics_promtool PROPERTIES ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1")
endif()
