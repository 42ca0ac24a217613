/* The zone's DP server: sidecars (hypha-dp) connect over wss, present a
 * dataplane token and a CSR, register their Dataplane and get their
 * certificate and config, pushed again whenever it changes. */
#ifndef HY_DP_SERVER_H
#define HY_DP_SERVER_H

#include "dataplane.pb-c.h"
#include "dp.pb-c.h"
#include "zone.h"

#define HY_DP_SUBPROTOCOL "hypha.dp.v1"

/* Starts listening on cfg->dp_address (dp_server.c). */
int hy_dp_server_start(struct hy_zone *z);
void hy_dp_server_stop(struct hy_zone *z);
void hy_dp_server_free(struct hy_zone *z);

/* The hypha.io/service tag of an inbound, or NULL. */
const char *hy_dp_service_of(const Hypha__V1__Dataplane__Networking__Inbound *in);

/* Computes dp's config from the store (dp_config.c): inbounds with the
 * principals MeshTrafficPermission allows and denies, outbounds with their
 * endpoints and policies, and the certificate material given. *out is owned
 * by the caller (hypha__v1__dp_config__free_unpacked). */
int hy_dp_config_build(struct hy_store *s, const struct hy_resource *dp, const char *cert,
                       const char *chain, const char *bundle, Hypha__V1__DpConfig **out);

/* A version that names m's content: 16 hex digits of a hash of m packed
 * (m's own version field unset). *out is the caller's; 0 or HY_ENOMEM. */
int hy_dp_version(const ProtobufCMessage *m, char **out);

/* The routes of this zone's ingresses (ingress_config.c): every service a
 * local Dataplane serves, per mesh, with its SNI and endpoints. *out is
 * owned by the caller (hypha__v1__dp_ingress_config__free_unpacked). */
int hy_ingress_config_build(struct hy_store *s, const char *zone, Hypha__V1__DpIngressConfig **out);
/* Sets zi's availableServices to c's routes (mesh, service tag, instances). */
int hy_ingress_available(const Hypha__V1__DpIngressConfig *c, Hypha__V1__ZoneIngress *zi);

#endif
