#!/bin/sh
# Installs paddock as a systemd service: binaries under $PREFIX (default /usr/local), the
# units in /etc/systemd/system, a configuration in /etc/paddock/paddockd.toml (kept if there
# is one), and enables the socket. Run as root from the repository, after
# `cargo build --release`.
set -eu
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
UNITS=${UNITS:-/etc/systemd/system}
TARGET=${TARGET:-target/release}

for bin in paddockd ctl paddock-sandbox paddock-gofer; do
    [ -x "$TARGET/$bin" ] || { echo "install.sh: $TARGET/$bin is missing: run cargo build --release" >&2; exit 1; }
done
install -D -m 0755 "$TARGET/paddockd" "$PREFIX/bin/paddockd"
install -D -m 0755 "$TARGET/ctl" "$PREFIX/bin/ctl"
install -D -m 0755 "$TARGET/paddock-sandbox" "$PREFIX/libexec/paddock/paddock-sandbox"
install -D -m 0755 "$TARGET/paddock-gofer" "$PREFIX/libexec/paddock/paddock-gofer"
install -d -m 0755 "$UNITS"
sed "s|@PREFIX@|$PREFIX|g" dist/systemd/paddockd.service > "$UNITS/paddockd.service"
install -m 0644 dist/systemd/paddockd.socket "$UNITS/paddockd.socket"
if [ ! -e /etc/paddock/paddockd.toml ]; then
    install -D -m 0644 dist/paddockd.toml /etc/paddock/paddockd.toml
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --now paddockd.socket
    echo "paddock installed; paddockd starts on the first connection to /run/paddock/paddockd.sock"
else
    echo "paddock installed; systemd is not running here, so nothing was enabled"
fi
