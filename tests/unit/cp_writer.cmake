# The API writer: group commit off the loop thread (cp/cp_writer.c).
hy_unit_test(test_cp_writer LIBS hypha-cp)
