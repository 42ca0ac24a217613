# Runs the store's unit suite ($1, the test_store binary) on PostgreSQL: a
# throwaway server started here (tests/integration/lib_pg.sh) and stopped at
# the end. Exit 77 (skipped) only when the PostgreSQL binaries are missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../integration/lib_pg.sh
. "$here/../integration/lib_pg.sh"
hy_pg_find || exit 77
trap hy_pg_destroy EXIT
HY_PG_FSYNC=off hy_pg_init
HYPHA_TEST_PG_URL=$HY_PG_URL "$1" postgres
