"""The speed history's page in a real browser: tools/bench_page.py publishes it offline, Debian's Chromium
(headless) opens each subset benchmark's graph, and a probe script in the page reads the plot Flot drew:
its points, and for each point whether the canvas has paint where the point lies. The same positions are
read again after the series are taken away, so a probe that reads paint everywhere would fail."""
import json
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import bench_page  # noqa: E402

from tests.test_bench_history import machines, measured  # noqa: E402

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(BROWSER is None, reason="needs Debian's Chromium (apt-get install chromium)")

# Counts, in the page itself, the plot's points and the points under which the canvas is painted (any pixel
# of the 3 x 3 around the point's centre); then the same with the series emptied and the plot redrawn.
PROBE = """<script>
(function poll() {
  var plot = window.jQuery && $('#main-graph').data('plot');
  if (!plot || !plot.getData().length) { setTimeout(poll, 100); return; }
  var canvas = plot.getCanvas(), ctx = canvas.getContext('2d'), ratio = canvas.width / $(canvas).width();
  var spots = [];
  plot.getData().forEach(function (s) { s.data.forEach(function (d) {
    if (d[1] !== null) spots.push(plot.pointOffset({x: d[0], y: d[1]}));
  }); });
  function painted() {
    return spots.filter(function (o) {
      var px = ctx.getImageData(Math.round(o.left * ratio) - 1, Math.round(o.top * ratio) - 1, 3, 3).data;
      for (var i = 3; i < px.length; i += 4) if (px[i] > 0) return true;
      return false;
    }).length;
  }
  var result = {series: plot.getData().length, points: spots.length, drawn: painted()};
  plot.setData(plot.getData().map(function (s) { return $.extend({}, s, {data: []}); }));
  plot.draw();
  result.blank = painted();
  var out = document.createElement('pre'); out.id = 'probe'; out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
})();
</script></body>"""

# One graph per benchmark of the fast subset (tests/test_bench_tools.py's patterns), at parameters it measured.
GRAPHS = {
    "bench_training.FamilyStep.time_step": {"posterior": "'extgrid'", "objective": "'elbo'", "latent": "16"},
    "bench_band.BandKernel.time_kernel": {"kernel": "'band_solve_t'", "d": "256", "batch": "100",
                                          "stencil": "'chain'"},
    "bench_evaluate.ImportanceSampling.time_importance_sampling": {"posterior": "'diagonal'"},
    "bench_kernels.Adam.time_update": {"size": "1310816"},
}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """(address of the served folder, index.json) of the history published offline, with probe.html beside it."""
    pytest.importorskip("asv")
    try:
        html = bench_page.localise(bench_page.publish(tmp_path_factory.mktemp("page") / "html"))
    except bench_page.Unreachable as err:  # no network and no cached archive; a wrong hash still fails
        pytest.skip(str(err))
    (html / "probe.html").write_text((html / "index.html").read_text().replace("</body>", PROBE))
    httpd = bench_page.server(html)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/", json.loads((html / "index.json").read_text())
    httpd.shutdown()


def probe(address):
    """The probe's result for the page at ``address`` in headless Chromium (AssertionError with the page's
    end when the probe wrote nothing: no plot was drawn)."""
    out = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,800",
                          "--virtual-time-budget=30000", "--dump-dom", address],
                         capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="probe">(.*?)</pre>', out.stdout)
    assert found, f"no plot drawn at {address}:\n{out.stdout[-1500:]}\n{out.stderr[-1500:]}"
    return json.loads(found.group(1))


def test_the_offline_page_loads_no_script_or_style_from_the_web(page):
    address, _ = page
    with urllib.request.urlopen(address + "index.html", timeout=60) as response:
        served = response.read().decode()
    scripts = re.findall(r'<script[^>]*\ssrc="([^"]+)"', served)
    assert "vendor/jquery-3.3.1.min.js" in scripts and "vendor/jquery.flot-0.8.3.min.js" in scripts
    loads = scripts + re.findall(r'<link[^>]*\shref="([^"]+)"', served)
    assert not [a for a in loads if re.match(r"https?://", a)], "the page still loads something from the web"


@pytest.mark.parametrize("benchmark", sorted(GRAPHS))
def test_each_subset_benchmark_s_graph_draws_a_point_per_commit(page, benchmark):
    """On each machine's graph (asv draws one series per machine selected: the page is asked for one)."""
    address, index = page
    assert benchmark in index["benchmarks"]
    params = "&".join(f"p-{name}={quote(value)}" for name, value in GRAPHS[benchmark].items())
    for folder in machines():
        assert folder.name in index["params"]["machine"]
        result = probe(f"{address}probe.html#{benchmark}?machine={quote(folder.name)}&{params}")
        # a point per commit measured on it with the benchmark's current code (tests/test_bench_history.py)
        assert result["series"] == 1 and result["points"] >= measured(benchmark, [folder], GRAPHS[benchmark])[0] >= 1, (
            folder, result)
        assert result["drawn"] == result["points"], (folder, result)
        assert result["blank"] < result["drawn"] / 2, (folder, result)  # grid lines may cross a few spots
