/* Crash safety of the store: a child writes in a loop and reports each
 * commit on a pipe; the parent SIGKILLs it at random points, then reopens
 * the store (no recovery step) and checks every reported write is there,
 * and that the list total agrees.
 * Replay a failing run with HY_CRASH_SEED=<seed printed at start>. */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <lmdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "policies.pb-c.h"
#include "store.h"
#include "poison.h"

#define ROUNDS 40
#define BUDGET_S 20    /* stop starting rounds after this long */
#define STALL_MS 10000 /* a child silent this long has hung */
#define MAX_COMMITS 30 /* kill after 1..MAX_COMMITS reported commits */
#define MESH "crash"
#define MTP "MeshTrafficPermission"

static char dir[64];

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("store_crash: FAIL: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (store left in %s)\n", dir);
    exit(1);
}

static uint64_t rng_state;

static uint64_t rnd(uint64_t n)
{
    rng_state ^= rng_state << 13; /* xorshift64 */
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state % n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The content of write number seq: name, target and a label all carry it. */
static struct hy_resource *make(uint64_t seq)
{
    char name[32], svc[32], label[32];
    snprintf(name, sizeof(name), "r-%" PRIu64, seq);
    snprintf(svc, sizeof(svc), "svc-%" PRIu64, seq);
    snprintf(label, sizeof(label), "%" PRIu64, seq);
    struct hy_resource *r = hy_resource_new(hy_rtype_by_name(MTP));
    Hypha__V1__TargetRef *t = malloc(sizeof(*t));
    Hypha__V1__Meta__LabelsEntry *e = malloc(sizeof(*e));
    Hypha__V1__Meta__LabelsEntry **v = malloc(sizeof(*v));
    if (!r || !t || !e || !v || hy_resource_set_name(r, MESH, name) < 0)
        abort();
    hypha__v1__target_ref__init(t);
    t->has_kind = 1;
    t->kind = HYPHA__V1__TARGET_REF__KIND__MeshService;
    t->name = strdup(svc);
    ((Hypha__V1__MeshTrafficPermission *)r->spec)->target_ref = t;
    hypha__v1__meta__labels_entry__init(e);
    e->key = strdup("seq");
    e->value = strdup(label);
    v[0] = e;
    r->meta->labels = v;
    r->meta->n_labels = 1;
    return r;
}

static void report(int fd, uint64_t seq)
{
    if (write(fd, &seq, sizeof(seq)) != sizeof(seq)) /* atomic: < PIPE_BUF */
        _exit(4);
}

/* The child: writes from seq `next` on until killed, reporting commits.
 * Every fifth step is a batch of three. */
static void __attribute__((noreturn)) child(uint64_t next, int fd)
{
    struct hy_store_config cfg = {.path = dir};
    struct hy_store *s;
    if (hy_store_open(&cfg, &s) < 0)
        _exit(2);
    for (;;) {
        size_t n = next % 5 == 0 ? 3 : 1;
        struct hy_store_write w[3];
        for (size_t i = 0; i < n; i++)
            w[i] = (struct hy_store_write){
                .op = HY_STORE_PUT, .r = make(next + i), .expect_version = HY_VERSION_ANY};
        int rc = hy_store_apply(s, w, n, NULL);
        if (rc < 0) {
            fprintf(stderr, "store_crash: child: write %" PRIu64 ": %s\n", next, hy_strerror(rc));
            _exit(3);
        }
        for (size_t i = 0; i < n; i++) {
            hy_resource_free((struct hy_resource *)w[i].r);
            report(fd, next + i);
        }
        next += n;
    }
}

/* Reads one report; false on EOF. Dies if the child stalls. */
static bool read_report(int fd, uint64_t *seq)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc = poll(&p, 1, STALL_MS);
    if (rc == 0)
        die("child reported no commit for %d ms: writer hung", STALL_MS);
    ssize_t n = read(fd, seq, sizeof(*seq));
    if (n < 0 && errno == EINTR)
        return read_report(fd, seq);
    if (n != 0 && n != sizeof(*seq))
        die("short read on the report pipe (%zd bytes)", n);
    return n == sizeof(*seq);
}

/* Read before the store reopens (which would rebuild stale counters): the
 * killed writer must have left the list counters stamped with the store's
 * revision, i.e. committed with the writes they count. */
static void check_counters_stamped(int round)
{
    static const char *const keys[] = {"revision", "counted"};
    uint64_t v[2] = {0, 0};
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 3) ||
        mdb_env_open(env, dir, MDB_RDONLY, 0600) || mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) ||
        mdb_dbi_open(txn, "meta", 0, &dbi))
        die("round %d: cannot read the store's meta database", round);
    for (int i = 0; i < 2; i++) {
        MDB_val k = {strlen(keys[i]), (void *)keys[i]}, d;
        if (mdb_get(txn, dbi, &k, &d) == 0 && d.mv_size == 8)
            for (int j = 0; j < 8; j++)
                v[i] = v[i] << 8 | ((const uint8_t *)d.mv_data)[j];
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
    if (v[0] != v[1])
        die("round %d: list counters stamped at revision %" PRIu64 ", the store is at %" PRIu64,
            round, v[1], v[0]);
}

/* Every write 1..committed must be present with its content. */
static void verify(int round, uint64_t committed)
{
    struct hy_store_config cfg = {.path = dir};
    struct hy_store *s;
    struct hy_store_stats st;
    check_counters_stamped(round);
    int rc = hy_store_open(&cfg, &s);
    if (rc < 0)
        die("round %d: reopening after SIGKILL: %s", round, hy_strerror(rc));
    for (uint64_t seq = 1; seq <= committed; seq++) {
        struct hy_resource *want = make(seq), *got = NULL;
        rc = hy_store_get(s, MTP, MESH, want->meta->name, &got);
        if (rc < 0)
            die("round %d: write %" PRIu64 " was reported committed but get says: %s", round, seq,
                hy_strerror(rc));
        if (!hy_resource_same_content(got, want))
            die("round %d: write %" PRIu64 " (%s) has other content than written", round, seq,
                want->meta->name);
        hy_resource_free(got);
        hy_resource_free(want);
    }
    if ((rc = hy_store_stats(s, &st)) < 0)
        die("round %d: stats: %s", round, hy_strerror(rc));
    if (st.revision < committed || st.resources < committed)
        die("round %d: revision %" PRIu64 " / %" PRIu64 " resources, but %" PRIu64
            " writes were committed",
            round, st.revision, st.resources, committed);
    if (st.log_records != st.revision - st.horizon)
        die("round %d: change log holds %" PRIu64 " records, expected revision %" PRIu64
            " - horizon %" PRIu64,
            round, st.log_records, st.revision, st.horizon);
    /* every resource is an MTP in MESH: the list total (a counter kept in
     * the same transactions) must count them all */
    struct hy_store_page p;
    if ((rc = hy_store_list(s, MTP, MESH, NULL, 1, &p)) < 0)
        die("round %d: list: %s", round, hy_strerror(rc));
    if (p.total != st.resources)
        die("round %d: list total %zu, but the store holds %" PRIu64 " resources", round, p.total,
            st.resources);
    hy_store_page_fini(&p);
    hy_store_close(s);
}

/* One round: start a child, kill it, collect what it reported. */
static uint64_t run_round(int round, uint64_t committed)
{
    int fds[2];
    if (pipe(fds) < 0)
        die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        child(committed + 1, fds[1]);
    }
    close(fds[1]);
    uint64_t seq, got = 0;
    if (rnd(2) == 0) {
        usleep((useconds_t)rnd(20001)); /* 0-20 ms after start */
    } else {
        uint64_t target = 1 + rnd(MAX_COMMITS);
        while (got < target && read_report(fds[0], &seq))
            committed = seq > committed ? seq : committed, got++;
        usleep((useconds_t)rnd(3000)); /* land anywhere in the next commit */
    }
    kill(pid, SIGKILL);
    while (read_report(fds[0], &seq))
        committed = seq > committed ? seq : committed;
    close(fds[0]);
    int status;
    if (waitpid(pid, &status, 0) < 0)
        die("waitpid: %s", strerror(errno));
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        die("round %d: the writer died by itself (status 0x%x) before being killed", round, status);
    return committed;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int main(void)
{
    const char *env = getenv("HY_CRASH_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    rng_state = seed ? seed : 1;
    snprintf(dir, sizeof(dir), "/tmp/hy-crash-store-XXXXXX");
    if (!mkdtemp(dir))
        die("mkdtemp: %s", strerror(errno));
    fprintf(stderr, "store_crash: seed %" PRIu64 ", store in %s\n", seed, dir);

    /* Create the store first: what is tested is commits, not creation. */
    struct hy_store_config cfg = {.path = dir};
    struct hy_store *s;
    if (hy_store_open(&cfg, &s) < 0)
        die("creating the store failed");
    hy_store_close(s);

    uint64_t committed = 0;
    double start = now_s();
    int round;
    for (round = 0; round < ROUNDS && now_s() - start < BUDGET_S; round++) {
        committed = run_round(round, committed);
        verify(round, committed);
    }
    fprintf(stderr, "store_crash: %d rounds, %" PRIu64 " writes committed and found, %.1f s\n",
            round, committed, now_s() - start);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}
