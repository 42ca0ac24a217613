/* ldns loaded on demand (dns_ldns.h): dlopen, one dlsym per function of
 * the table, once per process under a lock. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "dns_ldns.h"
#include "poison.h"

static struct hy_dns_ldns table;
const struct hy_dns_ldns *const hy_dns_ldns = &table;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bool loaded; /* written under lock, once */

int hy_dns_ldns_open(const char *lib, struct hy_dns_ldns *t, void **handle, char *why, size_t size)
{
    *handle = NULL;
    memset(t, 0, sizeof(*t));
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, size,
                 "cannot load %s, the DNS library of transparent mode: %s; install it "
                 "(Debian: libldns3)",
                 lib, e ? e : "dlopen failed");
        return -ELIBACC;
    }
    const char *missing = NULL;
#define HY_DNS_LDNS_SYM(name)                                                                      \
    if (!missing && !(t->name = (__typeof__(t->name))dlsym(h, "ldns_" #name)))                     \
        missing = "ldns_" #name;
    HY_DNS_LDNS_FUNCS(HY_DNS_LDNS_SYM)
#undef HY_DNS_LDNS_SYM
    if (missing) {
        snprintf(why, size,
                 "%s has no function %s: not the ldns this sidecar was built with (" LDNS_VERSION
                 ", Debian's libldns3)",
                 lib, missing);
        memset(t, 0, sizeof(*t));
        dlclose(h);
        return -ELIBACC;
    }
    *handle = h;
    return 0;
}

void hy_dns_ldns_close(void *handle)
{
    if (handle)
        dlclose(handle);
}

int hy_dns_ldns_load(char *why, size_t size)
{
    int rc = 0;
    pthread_mutex_lock(&lock);
    if (!loaded) {
        void *handle; /* kept open for the process's life */
        rc = hy_dns_ldns_open(HY_DNS_LDNS_LIB, &table, &handle, why, size);
        loaded = rc == 0;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

bool hy_dns_ldns_loaded(void)
{
    pthread_mutex_lock(&lock);
    bool l = loaded;
    pthread_mutex_unlock(&lock);
    return l;
}
