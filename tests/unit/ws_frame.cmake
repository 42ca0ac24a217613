# RFC 6455 framing and the handshake check of the data plane's websocket
# client (net/ws_frame.c, no I/O).
hy_unit_test(test_ws_frame LIBS hypha-net-lite)
