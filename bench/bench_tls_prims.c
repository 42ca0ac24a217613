/* The linked wolfSSL's primitives a sidecar's TLS spends its time in:
 * ECDHE key exchange (a key pair and a shared secret each side: what a
 * TLS 1.3 handshake, full or resumed, does) with X25519 and with P-256,
 * and the two AEADs' bulk speed (AES-128-GCM, ChaCha20-Poly1305). The
 * sidecar prefers the faster group and suite (sidecar/proxy_tls.c); this
 * says which that is on this machine and build. Prints one line per
 * figure, "name value unit", for bench/dp.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
#include <wolfssl/wolfcrypt/curve25519.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#include "bench_util.h"
#include "poison.h"

static double exchanges_p256(WC_RNG *rng, double secs)
{
    double start = bench_now();
    unsigned n = 0;
    while (bench_now() - start < secs) {
        ecc_key a, b;
        uint8_t out[32];
        word32 len = sizeof(out);
        if (wc_ecc_init(&a) || wc_ecc_init(&b) || wc_ecc_make_key_ex(rng, 32, &a, ECC_SECP256R1) ||
            wc_ecc_make_key_ex(rng, 32, &b, ECC_SECP256R1))
            bench_die("P-256", "cannot make a key");
        wc_ecc_set_rng(&a, rng);
        wc_ecc_set_rng(&b, rng);
        if (wc_ecc_shared_secret(&a, &b, out, &len))
            bench_die("P-256", "no shared secret");
        len = sizeof(out);
        if (wc_ecc_shared_secret(&b, &a, out, &len))
            bench_die("P-256", "no shared secret");
        wc_ecc_free(&a);
        wc_ecc_free(&b);
        n++;
    }
    return n / (bench_now() - start);
}

static double exchanges_x25519(WC_RNG *rng, double secs)
{
    double start = bench_now();
    unsigned n = 0;
    while (bench_now() - start < secs) {
        curve25519_key a, b;
        uint8_t out[32];
        word32 len = sizeof(out);
        if (wc_curve25519_init(&a) || wc_curve25519_init(&b) ||
            wc_curve25519_make_key(rng, 32, &a) || wc_curve25519_make_key(rng, 32, &b))
            bench_die("X25519", "cannot make a key");
        if (wc_curve25519_shared_secret(&a, &b, out, &len))
            bench_die("X25519", "no shared secret");
        len = sizeof(out);
        if (wc_curve25519_shared_secret(&b, &a, out, &len))
            bench_die("X25519", "no shared secret");
        wc_curve25519_free(&a);
        wc_curve25519_free(&b);
        n++;
    }
    return n / (bench_now() - start);
}

#define CHUNK 16384

static double mb_aes_gcm(double secs)
{
    static uint8_t buf[CHUNK];
    uint8_t key[16] = {1}, iv[12] = {2}, tag[16];
    Aes aes;
    if (wc_AesInit(&aes, NULL, INVALID_DEVID) || wc_AesGcmSetKey(&aes, key, sizeof(key)))
        bench_die("AES-GCM", "no key");
    double start = bench_now(), bytes = 0;
    while (bench_now() - start < secs) {
        if (wc_AesGcmEncrypt(&aes, buf, buf, CHUNK, iv, sizeof(iv), tag, sizeof(tag), NULL, 0))
            bench_die("AES-GCM", "encrypt failed");
        bytes += CHUNK;
    }
    wc_AesFree(&aes);
    return bytes / (bench_now() - start) / 1e6;
}

static double mb_chacha(double secs)
{
    static uint8_t buf[CHUNK];
    uint8_t key[32] = {1}, iv[12] = {2}, tag[16];
    double start = bench_now(), bytes = 0;
    while (bench_now() - start < secs) {
        if (wc_ChaCha20Poly1305_Encrypt(key, iv, NULL, 0, buf, CHUNK, buf, tag))
            bench_die("ChaCha20-Poly1305", "encrypt failed");
        bytes += CHUNK;
    }
    return bytes / (bench_now() - start) / 1e6;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    if (secs <= 0)
        bench_die("usage", "bench_tls_prims [SECONDS per figure, default 1]");
    WC_RNG rng;
    if (wc_InitRng(&rng))
        bench_die("wolfSSL", "no RNG");
    printf("kex_x25519 %.0f exchanges/s\n", exchanges_x25519(&rng, secs));
    printf("kex_p256 %.0f exchanges/s\n", exchanges_p256(&rng, secs));
    printf("aead_aes128gcm %.0f MB/s\n", mb_aes_gcm(secs));
    printf("aead_chacha20poly1305 %.0f MB/s\n", mb_chacha(secs));
#ifdef WOLFSSL_AESNI
    printf("build_aesni 1 flag\n");
#else
    printf("build_aesni 0 flag\n");
#endif
    wc_FreeRng(&rng);
    return 0;
}
