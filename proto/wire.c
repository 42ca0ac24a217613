/* Packing a message for a websocket (wire.h). */
#include <errno.h>
#include <stdlib.h>

#include "wire.h"
#include "poison.h"

void *hy_wire_pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        protobuf_c_message_pack(m, buf);
    return buf;
}

int hy_wire_send(const ProtobufCMessage *m, hy_wire_sink_fn sink, void *to, size_t *len)
{
    size_t n;
    void *buf = hy_wire_pack(m, &n);
    if (!buf)
        return -ENOMEM;
    int rc = sink(to, buf, n);
    free(buf);
    if (len)
        *len = n;
    return rc;
}
