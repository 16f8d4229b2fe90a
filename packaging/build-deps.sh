#!/bin/sh
# Installs the Debian 12 packages routerd needs to build and test (run as root).
set -e
PKGS="build-essential pkg-config node-llhttp libssl-dev libbsd-dev libyaml-dev \
libjansson-dev libcriterion-dev python3 curl mandoc"
# make fuzz: clang and its libFuzzer runtime.
PKGS="$PKGS clang libclang-rt-14-dev"
# Tools the integration tests and benchmarks drive.
PKGS="$PKGS nginx-light haproxy wrk varnish apache2-utils"
# A real etcd for the registry tests (etcd v3 JSON gateway).
PKGS="$PKGS etcd-server etcd-client"
# Two independent Prometheus text parsers for the /metrics test: promtool and prometheus_client.
PKGS="$PKGS prometheus python3-prometheus-client"
# make deb and its test (tests/integration/test_package.py): debhelper, lintian, logrotate.
PKGS="$PKGS debhelper lintian logrotate"
# Base tools the tests call (ss, pgrep, setpriv; adduser for the package): in the stock image, listed anyway.
PKGS="$PKGS iproute2 procps util-linux adduser"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "build-deps: as root, run: apt-get install -y$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# Debian's nginx and varnish packages start services on install; we only want the binaries.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
apt-get install -y -q --no-install-recommends $missing
rm -f /usr/sbin/policy-rc.d
