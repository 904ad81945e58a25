#!/usr/bin/env bash
# ccswitch set-up on Debian 12 (run as root from the repository):
#   ./setup.sh run      install everything, then start the server with config.yaml
#   ./setup.sh test     install everything the tests need, then run ruff, mypy and pytest
#   ./setup.sh install  install only (used by the Dockerfile)
# Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-run}
shift || true

# Debian packages: runtime (Python, speech synthesis, audio conversion; ffmpeg lets pydub
# read prompts that are not WAV: mp3, ogg, flac) and, for tests,
# the third-party SIP peers the end-to-end tests drive.
APT_RUNTIME="python3 python3-venv python3-dev gcc espeak-ng sox libsox-fmt-all ffmpeg"
APT_TEST="sip-tester baresip baresip-core sipsak tcpdump flite chromium"

apt_install() {
  local need=""
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
  if [ -n "$need" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need
  fi
}

pkgs="$APT_RUNTIME"
[ "$mode" = test ] && pkgs="$pkgs $APT_TEST"
# shellcheck disable=SC2086
apt_install $pkgs

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
extras=""
[ "$mode" = test ] && extras="[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"

case "$mode" in
  install) ;;
  run)
    exec .venv/bin/ccswitch --config config.yaml run "$@"
    ;;
  test)
    .venv/bin/ruff check ccswitch tests bench
    .venv/bin/mypy ccswitch
    # pytest exits 5 when it collected nothing: that is a failure too
    .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
    ;;
  *)
    echo "usage: $0 run|test|install" >&2
    exit 2
    ;;
esac
