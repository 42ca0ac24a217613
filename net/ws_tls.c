/* Client SSL_CTXs that we make for lws (info.provided_client_ssl_ctx)
 * instead of letting it make them. lws 4.1 files its own client SSL_CTX
 * under an OpenSSL ex_data index that every lws_create_context replaces, so
 * a context destroyed after another one was created cannot find it and
 * leaks it (with every CA it loaded). OpenSSL is the copy lws already
 * loaded, reached with dlsym: hypha-api gets no new link dependency, and
 * the process's other TLS stack (wolfSSL, which also exports a few SSL_*
 * names) cannot be picked by mistake. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "log.h"
#include "ws_int.h"
#include "poison.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static struct {
    __typeof__(&TLS_client_method) client_method;
    __typeof__(&SSL_CTX_new) ctx_new;
    __typeof__(&SSL_CTX_free) ctx_free;
    __typeof__(&SSL_CTX_ctrl) ctx_ctrl;
    __typeof__(&SSL_CTX_load_verify_locations) load_verify;
    bool ok;
} ossl;

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void resolve(void)
{
    void *h = dlopen("libssl.so." STR(OPENSSL_SHLIB_VERSION), RTLD_NOW | RTLD_NOLOAD);
    if (!h) {
        hy_log(HY_LOG_DEBUG, "ws", "libssl is not loaded: lws makes its own SSL_CTXs");
        return;
    }
    *(void **)&ossl.client_method = dlsym(h, "TLS_client_method");
    *(void **)&ossl.ctx_new = dlsym(h, "SSL_CTX_new");
    *(void **)&ossl.ctx_free = dlsym(h, "SSL_CTX_free");
    *(void **)&ossl.ctx_ctrl = dlsym(h, "SSL_CTX_ctrl");
    *(void **)&ossl.load_verify = dlsym(h, "SSL_CTX_load_verify_locations");
    ossl.ok =
        ossl.client_method && ossl.ctx_new && ossl.ctx_free && ossl.ctx_ctrl && ossl.load_verify;
    dlclose(h); /* RTLD_NOLOAD took a reference; lws keeps the library loaded */
}

SSL_CTX *hy_ws_tls_client_ctx(const char *ca_file, bool *failed)
{
    *failed = false;
    pthread_once(&once, resolve);
    if (!ossl.ok)
        return NULL;
    SSL_CTX *ctx = ossl.ctx_new(ossl.client_method());
    if (!ctx) {
        *failed = true;
        return NULL;
    }
    ossl.ctx_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, NULL);
    ossl.ctx_ctrl(ctx, SSL_CTRL_MODE, SSL_MODE_RELEASE_BUFFERS, NULL);
    if (ca_file && ossl.load_verify(ctx, ca_file, NULL) != 1) {
        hy_log(HY_LOG_ERROR, "ws", "cannot load the CA file \"%s\" (not PEM certificates?)",
               ca_file);
        ossl.ctx_free(ctx);
        *failed = true;
        return NULL;
    }
    return ctx;
}

void hy_ws_tls_ctx_free(SSL_CTX *ctx)
{
    if (ctx && ossl.ok)
        ossl.ctx_free(ctx);
}
