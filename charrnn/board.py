"""TensorBoard on charrnn's runs, opened at the curated page with the settings its curves need:

    python -m charrnn.board [LOGDIR] [TENSORBOARD FLAGS ...]     (LOGDIR: runs by default)

What plain `tensorboard --logdir runs` does to these runs, and what this launcher changes:

- It opens on TIME SERIES. Here the CUSTOM SCALARS page (charrnn.monitor.dashboard.LAYOUT) comes first:
  the first tab, and the page TensorBoard opens on.
- It smooths every curve by 0.6 and scales each chart's axis to the values between their 5th and 95th
  percentiles. An evaluation curve has one point per evaluation, often two or three: the smoothing
  drags its last point towards the first (a val loss of 3.24 read 3.80), and the percentile rule drops
  both points of a two-point curve (empty axes). The address printed opens a small page, START_PAGE,
  that turns both off and goes on to CUSTOM SCALARS: smoothing is read from the address, but the outlier
  rule is a setting TensorBoard keeps in the browser's local storage, which only a page served by
  TensorBoard itself can write (the plugin below serves it). TIME SERIES gets the same two settings.
  The browser keeps them for later visits to this address.
- It keeps at most 10 images of a tag, and 100 texts, drawn at random (and the last): 10 of a default
  run's 21 gradient-flow pictures. --samples_per_plugin=images=1000,text=1000 keeps every picture and
  sample of a run of up to 1000 evaluations. (images=0 keeps none, not all.)

Every other flag is TensorBoard's own (--port, --bind_all, ...; `tensorboard --helpfull` lists them),
passed on as given, after these.
"""

import sys
import time
from pathlib import Path

from charrnn.cli import fail

SAMPLES_PER_PLUGIN = "images=1000,text=1000"
PLUGIN = "charrnn"
START_ROUTE = "/start"

# Local storage is per address, so this must be served by the TensorBoard it sets up. The relative
# address works under --path_prefix too.
START_PAGE = """<!doctype html>
<meta charset="utf-8">
<title>charrnn: opening TensorBoard</title>
<script>
localStorage.setItem("_ignoreYOutliers", "false");  // CUSTOM SCALARS and SCALARS
const settings = JSON.parse(localStorage.getItem("_tb_global_settings") || "{}");  // TIME SERIES
localStorage.setItem("_tb_global_settings",
                     JSON.stringify({...settings, scalarSmoothing: 0, ignoreOutliers: false}));
location.replace("../../../#custom_scalars&_smoothingWeight=0");
</script>
"""


def plugins() -> list:
    """TensorBoard's own plugins with CUSTOM SCALARS first, and the one that serves START_PAGE."""
    from tensorboard import default
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.custom_scalar.custom_scalars_plugin import CustomScalarsPlugin
    from werkzeug import wrappers

    class StartPage(base_plugin.TBPlugin):
        """No tab of its own (never active): it only serves START_PAGE at data/plugin/charrnn/start."""

        plugin_name = PLUGIN

        def get_plugin_apps(self):
            return {START_ROUTE: self._start}

        def is_active(self):
            return False

        @wrappers.Request.application
        def _start(self, request):
            return wrappers.Response(START_PAGE, content_type="text/html; charset=utf-8")

    loaders = [loader for loader in default.get_plugins() if loader is not CustomScalarsPlugin]
    # After the core plugin, which must stay first; TensorBoard opens on the first plugin that has data.
    return [loaders[0], CustomScalarsPlugin, *loaders[1:], StartPage]


def start_address(url: str) -> str:
    """The address of START_PAGE on the TensorBoard at url (which ends with '/')."""
    return f"{url}data/plugin/{PLUGIN}{START_ROUTE}"


def main(argv: list[str]) -> None:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return
    named = bool(argv) and not argv[0].startswith("-")
    logdir, flags = (argv[0], argv[1:]) if named else ("runs", argv)
    if not Path(logdir).is_dir():
        fail(f"{logdir} is not a directory of runs; train one first (python train.py), "
             f"or name the directory: python -m charrnn.board PATH")
    from tensorboard import program

    board = program.TensorBoard(plugins=plugins())
    board.configure(argv=[sys.argv[0], "--logdir", logdir, "--samples_per_plugin", SAMPLES_PER_PLUGIN, *flags])
    try:
        url = board.launch()
    except program.TensorBoardServerException as e:
        fail(f"{e.msg}; pass another with --port=N")
    print(f"TensorBoard on {logdir}: {start_address(url)}\n(CUSTOM SCALARS, no smoothing, no outliers dropped; "
          f"Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
