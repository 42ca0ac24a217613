/* TLS 1.3 session resumption between sidecars: the inbound's ticket keys
 * and callers' identities, the outbound's sessions (proxy_resume.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>

#include "agent_eps.h"
#include "error.h"
#include "log.h"
#include "metrics.h"
#include "proxy_resume.h"
#include "poison.h"

uint64_t hy_px_resume_hash(uint64_t h, const char *s)
{
    for (; s && *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static bool fill_random(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t r = getrandom(p, n, 0);
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

/* ----- the inbound's tickets ----- */

#define KEYS 4 /* lifetime <= 2 * rotate: the current key, and those still accepted */
#define NONCE 12

struct ticket_key {
    bool used;
    uint8_t name[WOLFSSL_TICKET_NAME_SZ];
    uint8_t key[CHACHA20_POLY1305_AEAD_KEYSIZE];
    uint64_t born; /* now_ms when it became the current key */
};

struct slot {
    uint8_t tag[NONCE]; /* the nonce of the ticket that names it */
    uint64_t until;
    char *ids; /* NULL: free */
};

struct hy_px_tickets {
    struct hy_px_tickets_cfg cfg;
    pthread_mutex_t lock;
    struct ticket_key keys[KEYS]; /* keys[cur] seals */
    size_t cur;
    uint64_t trust;
    bool have_trust;
    struct slot *slots;
    size_t next_slot;
    atomic_uint_fast64_t refused[HY_PX_TICKET_REFUSALS];
};

const char *hy_px_ticket_refusal_name(enum hy_px_ticket_refusal why)
{
    static const char *const names[] = {"unknown_key", "expired", "bad_seal", "no_identity",
                                        "denied"};
    return why < HY_PX_TICKET_REFUSALS ? names[why] : "?";
}

uint64_t hy_px_tickets_refused(struct hy_px_tickets *t, enum hy_px_ticket_refusal why)
{
    return why < HY_PX_TICKET_REFUSALS ? atomic_load(&t->refused[why]) : 0;
}

int hy_px_tickets_new(const struct hy_px_tickets_cfg *cfg, struct hy_px_tickets **out)
{
    *out = NULL;
    struct hy_px_tickets *t = calloc(1, sizeof(*t));
    if (!t)
        return HY_ENOMEM;
    t->cfg = *cfg;
    if (!t->cfg.rotate_ms)
        t->cfg.rotate_ms = HY_PX_TICKET_ROTATE_MS;
    if (!t->cfg.lifetime_ms)
        t->cfg.lifetime_ms = HY_PX_TICKET_LIFETIME_MS;
    if (t->cfg.lifetime_ms > 2 * t->cfg.rotate_ms) /* KEYS keys cover it */
        t->cfg.lifetime_ms = 2 * t->cfg.rotate_ms;
    if (!t->cfg.slots)
        t->cfg.slots = HY_PX_TICKET_SLOTS;
    if (!t->cfg.now_ms)
        t->cfg.now_ms = hy_agent_now_ms;
    if (!(t->slots = calloc(t->cfg.slots, sizeof(*t->slots)))) {
        free(t);
        return HY_ENOMEM;
    }
    pthread_mutex_init(&t->lock, NULL);
    for (int i = 0; i < HY_PX_TICKET_REFUSALS; i++)
        atomic_init(&t->refused[i], 0);
    *out = t;
    return 0;
}

static void forget(struct hy_px_tickets *t)
{
    for (size_t i = 0; i < KEYS; i++) /* the keys never leave this memory */
        explicit_bzero(&t->keys[i], sizeof(t->keys[i]));
    for (size_t i = 0; i < t->cfg.slots; i++) {
        free(t->slots[i].ids);
        memset(&t->slots[i], 0, sizeof(t->slots[i]));
    }
}

void hy_px_tickets_free(struct hy_px_tickets *t)
{
    if (!t)
        return;
    forget(t);
    free(t->slots);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

void hy_px_tickets_reset(struct hy_px_tickets *t)
{
    pthread_mutex_lock(&t->lock);
    forget(t);
    pthread_mutex_unlock(&t->lock);
}

bool hy_px_tickets_trust(struct hy_px_tickets *t, uint64_t trust)
{
    pthread_mutex_lock(&t->lock);
    bool changed = t->have_trust && t->trust != trust;
    if (changed)
        forget(t);
    t->trust = trust;
    t->have_trust = true;
    pthread_mutex_unlock(&t->lock);
    if (changed)
        hy_log(HY_LOG_INFO, "dp",
               "trust bundle changed: ticket keys replaced, tickets issued "
               "so far are refused (callers do a full handshake)");
    return changed;
}

/* The key that seals now, a new one when it is time. Under t->lock. */
static struct ticket_key *sealing_key(struct hy_px_tickets *t, uint64_t now)
{
    struct ticket_key *k = &t->keys[t->cur];
    if (k->used && now - k->born < t->cfg.rotate_ms)
        return k;
    size_t next = k->used ? (t->cur + 1) % KEYS : t->cur;
    struct ticket_key nk = {.used = true, .born = now};
    if (!fill_random(nk.name, sizeof(nk.name)) || !fill_random(nk.key, sizeof(nk.key)))
        return NULL;
    t->keys[next] = nk;
    explicit_bzero(&nk, sizeof(nk));
    t->cur = next;
    hy_log(HY_LOG_DEBUG, "dp", "new session ticket key (every %llu s)",
           (unsigned long long)(t->cfg.rotate_ms / 1000));
    return &t->keys[next];
}

/* iv: the slot's index (4 bytes, big-endian), then the nonce */
static void aad_of(const uint8_t *name, const uint8_t *iv, uint8_t *aad)
{
    memcpy(aad, name, WOLFSSL_TICKET_NAME_SZ);
    memcpy(aad + WOLFSSL_TICKET_NAME_SZ, iv, WOLFSSL_TICKET_IV_SZ);
}

static int seal(struct hy_px_tickets *t, WOLFSSL *ssl, uint8_t *name, uint8_t *iv, uint8_t *mac,
                uint8_t *ticket, int in_len, int *out_len)
{
    char ids[HY_PX_RESUME_IDS_MAX];
    if (!t->cfg.hooks.identity || !t->cfg.hooks.identity(ssl, ids, sizeof(ids)))
        ids[0] = '\0';
    uint8_t nonce[NONCE], key[CHACHA20_POLY1305_AEAD_KEYSIZE];
    if (!fill_random(nonce, sizeof(nonce)))
        return WOLFSSL_TICKET_RET_FATAL;
    char *copy = ids[0] ? strdup(ids) : NULL;
    uint64_t now = t->cfg.now_ms();
    pthread_mutex_lock(&t->lock);
    struct ticket_key *k = sealing_key(t, now);
    if (!k) {
        pthread_mutex_unlock(&t->lock);
        free(copy);
        return WOLFSSL_TICKET_RET_FATAL;
    }
    uint32_t si = (uint32_t)t->next_slot;
    t->next_slot = (t->next_slot + 1) % t->cfg.slots;
    struct slot *s = &t->slots[si];
    free(s->ids);
    s->ids = copy; /* NULL: the ticket will be refused */
    memcpy(s->tag, nonce, sizeof(nonce));
    s->until = now + t->cfg.lifetime_ms;
    memcpy(name, k->name, WOLFSSL_TICKET_NAME_SZ);
    memcpy(key, k->key, sizeof(key));
    pthread_mutex_unlock(&t->lock);
    iv[0] = (uint8_t)(si >> 24);
    iv[1] = (uint8_t)(si >> 16);
    iv[2] = (uint8_t)(si >> 8);
    iv[3] = (uint8_t)si;
    memcpy(iv + 4, nonce, NONCE);
    uint8_t aad[WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ];
    aad_of(name, iv, aad);
    memset(mac, 0, WOLFSSL_TICKET_MAC_SZ);
    int rc = wc_ChaCha20Poly1305_Encrypt(key, nonce, aad, sizeof(aad), ticket, (word32)in_len,
                                         ticket, mac);
    explicit_bzero(key, sizeof(key));
    if (rc != 0)
        return WOLFSSL_TICKET_RET_FATAL;
    *out_len = in_len;
    return WOLFSSL_TICKET_RET_OK;
}

/* wolfSSL asks again about a ticket it was refused, once per cipher suite
 * it tries: the refusal is counted, logged and decided once per session,
 * marked in its ex_data (our client offers one ticket a handshake). */
static int refused_idx = -1;
static pthread_once_t refused_once = PTHREAD_ONCE_INIT;
static char refused_mark;

static void refused_init(void)
{
    refused_idx = wolfSSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static bool refused_already(WOLFSSL *ssl)
{
    pthread_once(&refused_once, refused_init);
    return refused_idx >= 0 && wolfSSL_get_ex_data(ssl, refused_idx) == &refused_mark;
}

static int refuse(struct hy_px_tickets *t, WOLFSSL *ssl, enum hy_px_ticket_refusal why)
{
    if (refused_idx >= 0)
        wolfSSL_set_ex_data(ssl, refused_idx, &refused_mark);
    atomic_fetch_add(&t->refused[why], 1);
    hy_series_inc(t->cfg.refused[why]);
    hy_log(HY_LOG_DEBUG, "dp", "session ticket refused (%s): full handshake",
           hy_px_ticket_refusal_name(why));
    return WOLFSSL_TICKET_RET_REJECT;
}

static int open_ticket(struct hy_px_tickets *t, WOLFSSL *ssl, const uint8_t *name,
                       const uint8_t *iv, const uint8_t *mac, uint8_t *ticket, int in_len,
                       int *out_len)
{
    if (refused_already(ssl))
        return WOLFSSL_TICKET_RET_REJECT;
    uint8_t key[CHACHA20_POLY1305_AEAD_KEYSIZE];
    uint64_t now = t->cfg.now_ms();
    bool current = false, found = false, expired = false;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < KEYS && !found; i++) {
        const struct ticket_key *k = &t->keys[i];
        if (!k->used || memcmp(k->name, name, WOLFSSL_TICKET_NAME_SZ) != 0)
            continue;
        found = true;
        current = i == t->cur;
        /* a key seals for rotate_ms, then its tickets live lifetime_ms more */
        expired = now - k->born >= t->cfg.rotate_ms + t->cfg.lifetime_ms;
        memcpy(key, k->key, sizeof(key));
    }
    pthread_mutex_unlock(&t->lock);
    if (!found)
        return refuse(t, ssl, HY_PX_TICKET_UNKNOWN_KEY);
    if (expired) {
        explicit_bzero(key, sizeof(key));
        return refuse(t, ssl, HY_PX_TICKET_EXPIRED);
    }
    uint8_t aad[WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ];
    aad_of(name, iv, aad);
    uint8_t plain[512];
    int rc = in_len > 0 && (size_t)in_len <= sizeof(plain)
                 ? wc_ChaCha20Poly1305_Decrypt(key, iv + 4, aad, sizeof(aad), ticket,
                                               (word32)in_len, mac, plain)
                 : -1;
    explicit_bzero(key, sizeof(key));
    for (size_t i = CHACHA20_POLY1305_AEAD_AUTHTAG_SIZE; rc == 0 && i < WOLFSSL_TICKET_MAC_SZ; i++)
        if (mac[i])
            rc = -1;
    if (rc != 0)
        return refuse(t, ssl, HY_PX_TICKET_BAD_SEAL);
    uint32_t si = (uint32_t)iv[0] << 24 | (uint32_t)iv[1] << 16 | (uint32_t)iv[2] << 8 | iv[3];
    char ids[HY_PX_RESUME_IDS_MAX];
    ids[0] = '\0';
    pthread_mutex_lock(&t->lock);
    if (si < t->cfg.slots) {
        struct slot *s = &t->slots[si];
        if (s->ids && memcmp(s->tag, iv + 4, NONCE) == 0 && now < s->until)
            snprintf(ids, sizeof(ids), "%s", s->ids);
    }
    pthread_mutex_unlock(&t->lock);
    if (!ids[0]) {
        explicit_bzero(plain, sizeof(plain));
        return refuse(t, ssl, HY_PX_TICKET_NO_IDENTITY);
    }
    if (t->cfg.hooks.resume && !t->cfg.hooks.resume(ssl, ids)) {
        explicit_bzero(plain, sizeof(plain));
        return refuse(t, ssl, HY_PX_TICKET_DENIED);
    }
    memcpy(ticket, plain, (size_t)in_len);
    explicit_bzero(plain, sizeof(plain));
    *out_len = in_len;
    /* sealed with an older key: good, and the caller gets a new ticket */
    return current ? WOLFSSL_TICKET_RET_OK : WOLFSSL_TICKET_RET_CREATE;
}

static int on_ticket(WOLFSSL *ssl, unsigned char name[WOLFSSL_TICKET_NAME_SZ],
                     unsigned char iv[WOLFSSL_TICKET_IV_SZ],
                     unsigned char mac[WOLFSSL_TICKET_MAC_SZ], int enc, unsigned char *ticket,
                     int in_len, int *out_len, void *ctx)
{
    struct hy_px_tickets *t = ctx;
    if (!t)
        return WOLFSSL_TICKET_RET_FATAL;
    return enc ? seal(t, ssl, name, iv, mac, ticket, in_len, out_len)
               : open_ticket(t, ssl, name, iv, mac, ticket, in_len, out_len);
}

int hy_px_tickets_use(struct hy_px_tickets *t, WOLFSSL_CTX *ctx)
{
    if (wolfSSL_CTX_set_TicketEncCb(ctx, on_ticket) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_TicketEncCtx(ctx, t) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_TicketHint(ctx, (int)(t->cfg.lifetime_ms / 1000)) != WOLFSSL_SUCCESS)
        return HY_ECRYPTO;
    /* OpenSSL's manner: it answers the previous timeout */
    (void)wolfSSL_CTX_set_timeout(ctx, (unsigned)(t->cfg.lifetime_ms / 1000));
    return 0;
}

/* ----- the outbound's sessions ----- */

struct entry {
    char *key; /* NULL: free */
    WOLFSSL_SESSION *sess;
    char *peer_id;
    uint64_t gen, until, used;
};

struct hy_px_sessions {
    pthread_mutex_t lock;
    size_t max;
    uint64_t lifetime_ms, tick;
    uint64_t (*now_ms)(void);
    struct entry *e;
};

int hy_px_sessions_new(size_t max, uint64_t lifetime_ms, uint64_t (*now_ms)(void),
                       struct hy_px_sessions **out)
{
    *out = NULL;
    struct hy_px_sessions *s = calloc(1, sizeof(*s));
    if (!s)
        return HY_ENOMEM;
    s->max = max ? max : HY_PX_SESSIONS_MAX;
    s->lifetime_ms = lifetime_ms ? lifetime_ms : HY_PX_TICKET_LIFETIME_MS;
    s->now_ms = now_ms ? now_ms : hy_agent_now_ms;
    if (!(s->e = calloc(s->max, sizeof(*s->e)))) {
        free(s);
        return HY_ENOMEM;
    }
    pthread_mutex_init(&s->lock, NULL);
    *out = s;
    return 0;
}

static void entry_free(struct entry *e)
{
    free(e->key);
    free(e->peer_id);
    wolfSSL_SESSION_free(e->sess);
    memset(e, 0, sizeof(*e));
}

void hy_px_sessions_free(struct hy_px_sessions *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->max; i++)
        entry_free(&s->e[i]);
    free(s->e);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static struct entry *find(struct hy_px_sessions *s, const char *key)
{
    for (size_t i = 0; i < s->max; i++)
        if (s->e[i].key && strcmp(s->e[i].key, key) == 0)
            return &s->e[i];
    return NULL;
}

void hy_px_sessions_put(struct hy_px_sessions *s, const char *key, WOLFSSL_SESSION *sess,
                        const char *peer_id, uint64_t gen)
{
    if (!sess || !wolfSSL_SESSION_has_ticket(sess) || !peer_id || !peer_id[0])
        return;
    uint64_t now = s->now_ms(), life = s->lifetime_ms;
    unsigned long hint = wolfSSL_SESSION_get_ticket_lifetime_hint(sess);
    if (hint && hint * 1000 < life)
        life = hint * 1000;
    struct entry n = {.key = strdup(key),
                      .peer_id = strdup(peer_id),
                      .sess = wolfSSL_SESSION_dup(sess),
                      .gen = gen,
                      .until = now + life};
    if (!n.key || !n.peer_id || !n.sess) {
        entry_free(&n);
        return;
    }
    pthread_mutex_lock(&s->lock);
    n.used = ++s->tick;
    struct entry *e = find(s, key);
    for (size_t i = 0; !e && i < s->max; i++) /* a free one, else the least recently used */
        if (!s->e[i].key || s->e[i].until <= now)
            e = &s->e[i];
    if (!e) {
        e = &s->e[0];
        for (size_t i = 1; i < s->max; i++)
            if (s->e[i].used < e->used)
                e = &s->e[i];
    }
    struct entry old = *e;
    *e = n;
    pthread_mutex_unlock(&s->lock);
    entry_free(&old);
}

bool hy_px_sessions_resume(struct hy_px_sessions *s, const char *key, uint64_t gen, WOLFSSL *ssl,
                           char *peer_id, size_t size)
{
    uint64_t now = s->now_ms();
    struct entry old = {0};
    bool ok = false;
    pthread_mutex_lock(&s->lock);
    struct entry *e = find(s, key);
    if (e && (e->gen != gen || e->until <= now)) {
        old = *e; /* another certificate or trust made it, or it is stale */
        memset(e, 0, sizeof(*e));
    } else if (e && wolfSSL_set_session(ssl, e->sess) == WOLFSSL_SUCCESS) {
        e->used = ++s->tick;
        snprintf(peer_id, size, "%s", e->peer_id);
        ok = true;
    }
    pthread_mutex_unlock(&s->lock);
    entry_free(&old);
    return ok;
}

void hy_px_sessions_drop(struct hy_px_sessions *s, const char *key)
{
    struct entry old = {0};
    pthread_mutex_lock(&s->lock);
    struct entry *e = find(s, key);
    if (e) {
        old = *e;
        memset(e, 0, sizeof(*e));
    }
    pthread_mutex_unlock(&s->lock);
    entry_free(&old);
}

size_t hy_px_sessions_count(struct hy_px_sessions *s)
{
    uint64_t now = s->now_ms();
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->max; i++)
        n += s->e[i].key && s->e[i].until > now;
    pthread_mutex_unlock(&s->lock);
    return n;
}
