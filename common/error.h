/* Error codes every Hypha module returns, and their names.
 * Functions that act return 0 or a negative code: -errno, or one of HY_E*. */
#ifndef HY_ERROR_H
#define HY_ERROR_H

enum hy_err {
    HY_EFIRST = -10000,
    HY_EINVAL = HY_EFIRST, /* input is malformed or fails validation */
    HY_ENOTFOUND,          /* no such resource */
    HY_ECONFLICT,          /* compare-and-swap on the version failed */
    HY_EEXIST,             /* create-only write of a key that exists */
    HY_ETOOOLD,            /* change log no longer reaches back: take a snapshot */
    HY_EFULL,              /* store map is full */
    HY_ETOOBIG,            /* input over a size limit */
    HY_EDEPTH,             /* input nested deeper than allowed */
    HY_ESTORE,             /* store backend failed in another way */
    HY_ENOMEM,             /* allocation failed */
    HY_ECRYPTO,            /* the crypto library failed (wolfSSL) */
    HY_EVERIFY,            /* a signature, certificate or token did not verify */
    HY_EUNAVAIL,           /* the store's database cannot be reached now: retry later */
    HY_EBUSY,              /* the store's database did not grant a lock in time: retry later */
    HY_ELAST
};

/* Name of any code this project returns (HY_E* or -errno). Never NULL; the
 * string is static. */
const char *hy_strerror(int err);

#endif
