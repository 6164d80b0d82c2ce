#!/usr/bin/env bash
# Camera photographs for the image benchmarks, as a seller uploads them: six freely licensed
# photos of 4.5 to 16 megapixels, at their cameras' own sizes (nothing upscaled), from
# Debian's lomiri-wallpapers-16.04 package (CC0-1.0 and CC-BY-4.0; authors and licences in
# tests/fixtures/photos.md). Downloaded once per machine (16 MB) with apt-get, checked
# against the digests below, and kept beside the build directory. Prints that directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
dir="$(dirname "$CARGO_TARGET_DIR")/photos"
digests='a5634d1ab5e41a3568e92d4a894a500c92b891f9ff734e50bd224d6e185a605f  seeding_by_Clements_Engelhardt.jpg
474dab6a4b9f94dc76c29dfe30e9f5db4af0fd2e33fe5d695f8152b371efca18  sunset_by_Aitzol_Berasategi.jpg
414d0072b2f6f2c555deafeaef6e45c4fed6fa9ad26eba6560ca8803959cf97a  picosdeeuropa_by_Aitzol_Berasategi.jpg
4c119350ead80201fe256850c3d316309ddfb4bdf10b235ce982dcde0c667c05  life_by_Aitzol_Berasategi.jpg
cc40e313c74e421edffe3403def413c16878ce14661cce7ec5915baeab35538d  friends_by_Aitzol_Berasategi.jpg
c8c0ab18e48d9e0419fe42881112137f3afafc27dfddc29ec3a6d54c56d225ad  Picture_0B_by_freespace.jpg'
if ! (cd "$dir" 2>/dev/null && sha256sum --quiet -c <<<"$digests" 2>/dev/null); then
  printf '[setup] downloading the benchmark photos (Debian package lomiri-wallpapers-16.04)\n' >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  chmod 755 "$work" # apt downloads as its own user
  mkdir -p "$root/.local"
  if [ ! -f "$root/.local/.apt-updated" ]; then apt-get update -qq && touch "$root/.local/.apt-updated"; fi
  (cd "$work" && apt-get download -qq lomiri-wallpapers-16.04 >/dev/null)
  dpkg-deb -x "$work"/lomiri-wallpapers-16.04_*.deb "$work/x"
  mkdir -p "$dir"
  while read -r _ name; do
    cp "$work/x/usr/share/backgrounds/$name" "$dir/"
  done <<<"$digests"
  (cd "$dir" && sha256sum --quiet -c <<<"$digests") ||
    { echo "the downloaded photos are not the ones the benchmarks were measured on" >&2; exit 1; }
fi
echo "$dir"
