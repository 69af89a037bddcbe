"""A real WordPress for the writeback tests, set up from the Debian packages by the test itself (no manual steps):
MariaDB with its own data directory and socket, a site directory that links the packaged WordPress
(/usr/share/wordpress) with its own wp-config.php and wp-content, served by `php -S` on loopback through a small
router, installed with wp_install(), with an application password (for the administrator, and for a user whose role
lacks unfiltered_html), the assetstream suggestions must-use plugin
(deploy/wordpress/) and a few uploaded media items. Everything lives in one temporary directory and stops with it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

WP_CORE = Path("/usr/share/wordpress")
PLUGIN = Path(__file__).resolve().parent.parent / "deploy" / "wordpress" / "assetstream-suggestions.php"
ADMIN, WRITER, DB_PASS = "admin", "writer", "wp-test-db-pass"


def available() -> str | None:
    """None when the packages are there, else what is missing."""
    missing = [name for name, ok in [("wordpress", (WP_CORE / "wp-settings.php").is_file()),
                                     ("php-cli", shutil.which("php") is not None),
                                     ("mariadb-server", shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists()),
                                     ("mariadb-install-db", shutil.which("mariadb-install-db") is not None)] if not ok]
    return ", ".join(missing) or None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout_s}s")


ROUTER = """<?php
// php -S router: the linked core resolves __DIR__ to /usr/share/wordpress, so ABSPATH (this site) is set here
define('ABSPATH', %(abspath)s);
$path = rawurldecode(parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH));
$file = realpath(ABSPATH . ltrim($path, '/'));
if ($file !== false && is_dir($file)) { $file = is_file($file . '/index.php') ? $file . '/index.php' : false; }
if ($file !== false && is_file($file)) {
    if (substr($file, -4) !== '.php') { return false; }
    $_SERVER['SCRIPT_FILENAME'] = $file;
    $_SERVER['SCRIPT_NAME'] = $_SERVER['PHP_SELF'] = $path;
    chdir(dirname($file));
    require $file;
    return true;
}
$_SERVER['SCRIPT_FILENAME'] = ABSPATH . 'index.php';
$_SERVER['SCRIPT_NAME'] = $_SERVER['PHP_SELF'] = '/index.php';
require ABSPATH . 'index.php';
"""

CONFIG = """<?php
define('DB_NAME', 'wordpress');
define('DB_USER', 'wordpress');
define('DB_PASSWORD', %(db_pass)s);
define('DB_HOST', %(db_host)s);
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
define('WP_HOME', %(home)s);
define('WP_SITEURL', %(home)s);
define('WP_CONTENT_DIR', %(content)s);
define('WP_CONTENT_URL', %(home)s . '/wp-content');
define('WP_ENVIRONMENT_TYPE', 'local');  // application passwords over plain http on loopback
define('DISABLE_WP_CRON', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('WP_DEBUG', false);
%(keys)s
$table_prefix = 'wp_';
if (!defined('ABSPATH')) { define('ABSPATH', __DIR__ . '/'); }
require_once ABSPATH . 'wp-settings.php';
"""

SETUP = """<?php
define('ABSPATH', %(abspath)s);
define('WP_INSTALLING', true);
$_SERVER['HTTP_HOST'] = %(host)s;
$_SERVER['REQUEST_URI'] = '/';
require ABSPATH . 'wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
require_once ABSPATH . 'wp-admin/includes/image.php';
$r = wp_install('assetstream test site', %(admin)s, 'admin@example.com', false, '', wp_generate_password(24));
update_option('permalink_structure', '/%%postname%%/');
flush_rewrite_rules(true);
list($password, $item) = WP_Application_Passwords::create_new_application_password($r['user_id'], array('name' => 'assetstream'));
// the role docs/writeback.md recommends for the application password: an editor without unfiltered_html (kses runs)
add_role('assetstream-writer', 'assetstream writer', get_role('editor')->capabilities);
get_role('assetstream-writer')->remove_cap('unfiltered_html');
$writer = wp_insert_user(array('user_login' => %(writer)s, 'user_pass' => wp_generate_password(24),
    'user_email' => 'writer@example.com', 'role' => 'assetstream-writer'));
list($writer_password, $item) = WP_Application_Passwords::create_new_application_password($writer, array('name' => 'assetstream'));
$media = array();
foreach (json_decode(%(files)s, true) as $src) {
    $upload = wp_upload_bits(basename($src), null, file_get_contents($src));
    $id = wp_insert_attachment(array('post_mime_type' => wp_check_filetype($upload['file'])['type'],
        'post_title' => pathinfo($src, PATHINFO_FILENAME), 'post_status' => 'inherit', 'post_content' => ''),
        $upload['file']);
    $media[] = array('id' => $id, 'source_url' => wp_get_attachment_url($id), 'file' => $upload['file']);
}
// media items only a search finds too (a common file stem): newer than the uploads, so they come first
list($decoy, $count) = json_decode(%(decoys)s, true);
for ($i = 0; $i < $count; $i++) {
    wp_insert_attachment(array('post_mime_type' => 'image/jpeg', 'post_title' => "$decoy $i", 'post_status' => 'inherit',
        'post_content' => '', 'post_date' => '2031-01-01 00:00:00'), "2031/01/$decoy-$i.jpg");
}
echo json_encode(array('password' => $password, 'writer_password' => $writer_password, 'media' => $media));
"""


def _leads_group(proc: subprocess.Popen) -> bool:
    try:
        return os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return False


def _php(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


class LocalWordPress:
    def __init__(self, images: list[Path], decoys: tuple[str, int] = ("", 0)):
        """`images`: the files uploaded as media items (any type: a `.mp4` is a video); `decoys`: (title, n) n
        more media items titled `<title> <i>`, without a file, newer than the uploads (a search's first results)."""
        self.images, self.decoys = images, decoys
        self.dir = Path(tempfile.mkdtemp(prefix="wp-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.site = self.dir / "site"
        self.sock = self.dir / "mysql.sock"
        self.procs: list[subprocess.Popen] = []
        self.app_password = self.writer_password = ""
        self.media: list[dict[str, Any]] = []

    # --- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> LocalWordPress:
        try:
            self._database()
            self._site()
            self._serve()
        except BaseException:
            self.stop()
            raise
        return self

    def _database(self) -> None:
        data = self.dir / "db"
        root = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--skip-test-db",
                        "--auth-root-authentication-method=socket", *root],
                       check=True, capture_output=True, timeout=120)
        log = open(self.dir / "mariadb.log", "wb")
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        self.procs.append(subprocess.Popen(
            [mariadbd, "--no-defaults", f"--datadir={data}", f"--socket={self.sock}", "--skip-networking",
             f"--pid-file={self.dir / 'mariadb.pid'}", "--innodb-buffer-pool-size=32M", "--skip-log-bin",
             "--performance-schema=OFF", *root], stdout=log, stderr=subprocess.STDOUT))
        _wait(self.sock.exists, 60, "mariadb")
        sql = (f"CREATE DATABASE wordpress CHARACTER SET utf8mb4; CREATE USER 'wordpress'@'localhost' IDENTIFIED BY "
               f"'{DB_PASS}'; GRANT ALL ON wordpress.* TO 'wordpress'@'localhost';")
        subprocess.run(["mariadb", "--no-defaults", f"--socket={self.sock}", "-u", "root", "-e", sql], check=True,
                       capture_output=True, timeout=60)

    def _site(self) -> None:
        self.site.mkdir()
        for entry in WP_CORE.iterdir():
            if entry.name not in ("wp-config.php", "wp-content"):
                (self.site / entry.name).symlink_to(entry)
        content = self.site / "wp-content"
        (content / "uploads").mkdir(parents=True)
        (content / "mu-plugins").mkdir()
        shutil.copy(PLUGIN, content / "mu-plugins" / PLUGIN.name)
        for sub in ("themes", "plugins"):
            (content / sub).symlink_to(WP_CORE / "wp-content" / sub)
        keys = "\n".join(f"define('{k}', '{os.urandom(16).hex()}');" for k in (
            "AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY", "AUTH_SALT", "SECURE_AUTH_SALT",
            "LOGGED_IN_SALT", "NONCE_SALT"))
        (self.site / "wp-config.php").write_text(CONFIG % {
            "db_pass": _php(DB_PASS), "db_host": _php(f"localhost:{self.sock}"), "home": _php(self.url),
            "content": _php(str(content)), "keys": keys})
        abspath = _php(str(self.site) + "/")
        (self.dir / "router.php").write_text(ROUTER % {"abspath": abspath})
        setup = self.dir / "setup.php"
        setup.write_text(SETUP % {"abspath": abspath, "host": _php(f"127.0.0.1:{self.port}"), "admin": _php(ADMIN), "writer": _php(WRITER),
                                  "files": _php(json.dumps([str(p) for p in self.images])),
                                  "decoys": _php(json.dumps(list(self.decoys)))})
        out = subprocess.run(["php", str(setup)], check=True, capture_output=True, timeout=180, cwd=self.site)
        result = json.loads(out.stdout.decode().strip().splitlines()[-1])
        self.app_password, self.media = result["password"], result["media"]
        self.writer_password = result["writer_password"]  # WRITER: an editor without unfiltered_html

    def _serve(self) -> None:
        log = open(self.dir / "php.log", "wb")
        env = {**os.environ, "PHP_CLI_SERVER_WORKERS": "2"}
        self.procs.append(subprocess.Popen(
            ["php", "-d", "variables_order=EGPCS", "-S", f"127.0.0.1:{self.port}", "-t", str(self.site),
             str(self.dir / "router.php")], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.site,
            start_new_session=True))  # its own process group: the forked workers stop with it

        def up() -> bool:
            try:
                return httpx.get(f"{self.url}/wp-json/", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        _wait(up, 60, "WordPress")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM) if _leads_group(proc) else proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- a person (or the test) using the site ------------------------------------------------------------------
    def api(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.url}/wp-json/wp/v2", auth=(ADMIN, self.app_password), timeout=10)

    def media_item(self, media_id: int) -> dict[str, Any]:
        with self.api() as c:
            r = c.get(f"/media/{media_id}", params={"context": "edit"})
            r.raise_for_status()
            return r.json()
