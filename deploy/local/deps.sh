# Sourced by tests/run.sh and deploy/local/demo.sh: installs the Debian
# packages Hypha needs that are not installed yet (apt-get, as root).

# Build and runtime libraries (README "Dependencies" says why each is here).
HY_BUILD_PACKAGES="build-essential cmake pkg-config protobuf-c-compiler libprotobuf-c-dev
  libyaml-dev liblmdb-dev libuv1-dev libwebsockets-dev libwebsockets-evlib-uv libwolfssl-dev
  libnghttp2-dev node-llhttp libldns-dev libpq-dev"
# What only the test run needs.
HY_TEST_PACKAGES="libcmocka-dev clang clang-format lmdb-utils curl openssl jq iproute2 prometheus tcpdump yamllint python3-yaml systemd
  nginx-light nghttp2-client python3-h2 ldnsutils iptables containernetworking-plugins postgresql"

# hy_install_packages PKG...: installs those of PKG that are missing.
hy_install_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing Debian packages: ${missing[*]}" >&2
        echo "run as root, or: sudo apt-get install -y ${missing[*]}" >&2
        return 1
    fi
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
}
