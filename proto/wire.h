/* What the two websocket protocols (KDS: global <-> zone; DP: zone <->
 * sidecar and ingress) share on the wire: their subprotocol names, the
 * limits a DP server holds a peer to, and the one way a message is sent:
 * packed by protobuf-c and handed whole to a transport. */
#ifndef HY_WIRE_H
#define HY_WIRE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#define HY_KDS_SUBPROTOCOL "hypha.kds.v1" /* KdsMessage frames (kds.proto) */
#define HY_DP_SUBPROTOCOL "hypha.dp.v2"   /* DpMessage frames (dp.proto); v2: configs in parts */

/* KDS features a peer lists in Hello/Welcome.features: the other side
 * uses one only when the peer listed it (an older peer gets v1 as it was). */
#define HY_KDS_FEATURE_SNAPSHOT_PARTS "snapshot-parts" /* takes Changes.more/part */

/* What a sidecar or an ingress may send its zone (every byte is hostile
 * until these checks pass). A real DpHello is 2-5 KiB: a Dataplane, a JWT
 * and a P-256 CSR; the websocket layer closes anything over
 * HY_DP_MAX_HELLO before the Hello is accepted. */
#define HY_DP_MAX_HELLO (64u << 10)  /* bytes of one message before the Hello is accepted */
#define HY_DP_MAX_UNAUTH 256         /* connections waiting for their Hello, per zone */
#define HY_DP_HELLO_TIMEOUT_MS 10000 /* to send an acceptable Hello once connected */
#define HY_DP_MAX_CSR 8192           /* bytes of a CSR, PEM (P-256: under 600) */
#define HY_DP_MAX_VERSION 31         /* printable bytes of a config version in Ack/Nack */
#define HY_DP_MAX_AGENT_VERSION 64   /* printable bytes of DpHello.version */
#define HY_DP_MAX_ADMIN_ADDRESS 270  /* printable bytes of DpHello.admin_address, HOST:PORT */
#define HY_DP_MAX_ERROR 4096         /* bytes of a Nack's error */
#define HY_DP_MAX_STATS (1u << 20)   /* bytes of a DpStats' text (a sidecar cuts its own) */
#define HY_DP_MAX_INBOUNDS 64        /* inbounds of one Dataplane */
#define HY_DP_MAX_SERVICES 16        /* distinct inbound services: SPIFFE IDs in one leaf */
#define HY_DP_MAX_OUTBOUNDS 1024     /* outbounds of one Dataplane */
/* Parts of one sidecar's config: identity, trust bundle, inbounds,
 * outbounds, and one Endpoints part per outbound service. */
#define HY_DP_MAX_PARTS (HY_DP_MAX_OUTBOUNDS + 4)
#define HY_DP_MAX_PART_KEY 253 /* bytes of an Endpoints part's key (a service) */
/* An endpoint's priority when its outbound leaves its zone out. */
#define HY_DP_PRIORITY_EXCLUDED UINT32_MAX
/* What the zone may send a sidecar or an ingress: a big mesh's outbounds,
 * or a zone's routes. */
#define HY_DP_MAX_CONFIG (16u << 20) /* bytes of one DpMessage */

/* Where packed bytes go: a websocket connection's send (net/ws.h's
 * hy_ws_sink), or a test's buffer. 0 when queued, or a negative code. */
typedef int (*hy_wire_sink_fn)(void *to, const void *data, size_t len);

/* m packed into a new buffer of *len bytes (never a NULL buffer for an
 * empty message); NULL when out of memory. The caller frees it. */
void *hy_wire_pack(const ProtobufCMessage *m, size_t *len);
/* Packs m and hands it to sink(to, ...) as one message. Returns what sink
 * returns, or -ENOMEM; *len (may be NULL) is the packed size. */
int hy_wire_send(const ProtobufCMessage *m, hy_wire_sink_fn sink, void *to, size_t *len);

#endif
