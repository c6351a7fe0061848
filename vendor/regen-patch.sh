#!/bin/sh
# Regenerates vendor/zeromq.patch: the diff of vendor/zeromq against the published
# crate. Usage: vendor/regen-patch.sh [PRISTINE_DIR]
# PRISTINE_DIR defaults to the copy cargo unpacked under ~/.cargo/registry/src; else
# unpack https://static.crates.io/crates/zeromq/zeromq-0.7.0.crate (tar xzf) and pass it.
set -eu
cd "$(dirname "$0")"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' zeromq/Cargo.toml | head -n 1)
pristine=${1:-$(ls -d "$HOME"/.cargo/registry/src/*/zeromq-"$version" 2>/dev/null | head -n 1)}
[ -d "$pristine/src" ] || { echo "no pristine zeromq-$version found; pass its directory" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/a" "$tmp/b"
for f in Cargo.toml LICENSE.md README.md CHANGELOG.md src; do
    cp -R "$pristine/$f" "$tmp/a/"
    cp -R "zeromq/$f" "$tmp/b/"
done
(cd "$tmp" && diff -ruN a b || true) | sed -e 's/\t.*$//' -e '/^diff -ruN /d' > zeromq.patch
echo "vendor/zeromq.patch: $(grep -c '^[+-][^+-]' zeromq.patch) changed lines against zeromq-$version"
