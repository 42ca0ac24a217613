# The websocket session layer of the KDS and DP servers (cp/cp_session.c).
hy_unit_test(test_cp_session LIBS hypha-cp)
