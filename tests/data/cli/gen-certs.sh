#!/bin/sh
# Regenerates the TLS fixtures of test_cli (the HTTP client's https tests):
# a CA, a server certificate for localhost / 127.0.0.1 / ::1 and one for
# another host name. Valid for 100 years; the CA key is thrown away.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
# shellcheck disable=SC2086
openssl req -x509 $ec -keyout "$tmp/ca.key" -out ca.pem -days 36500 \
    -subj "/CN=hyphactl test CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
leaf() { # name san
    # shellcheck disable=SC2086
    openssl req $ec -keyout "$1.key" -out "$tmp/$1.csr" -subj "/CN=$1"
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$2" >"$tmp/$1.ext"
    openssl x509 -req -in "$tmp/$1.csr" -CA ca.pem -CAkey "$tmp/ca.key" -CAcreateserial \
        -CAserial "$tmp/ca.srl" -days 36500 -extfile "$tmp/$1.ext" -out "$1.pem"
}
leaf server "DNS:localhost,IP:127.0.0.1,IP:::1"
leaf wrong-host "DNS:other.example"
