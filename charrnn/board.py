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
- It follows links to directories, so runs/latest (a link to the newest run) is listed as a run, and the
  newest run shows twice in every chart. Here a link to a directory inside LOGDIR is not followed.
- It reads the event files in a server process of its own (--load_fast=auto) which, as it does not read
  the links alone, is turned off (--load_fast=false): the board is one process.

Every other flag is TensorBoard's own (--port, --bind_all, ...; `tensorboard --helpfull` lists them),
passed on as given, after these. A mistake in them, a port in use or a stop (Ctrl-C, SIGTERM, a closed
terminal) ends in one line.

The page it serves itself sends the headers TensorBoard 3.0 will require of every response
(X-Content-Type-Options: nosniff, and a Content-Security-Policy with default-src), so TensorBoard warns
of nothing.
"""

import base64
import contextlib
import hashlib
import io
import os
import signal
import sys
import time
from pathlib import Path

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
_SCRIPT = START_PAGE.split("<script>", 1)[1].split("</script>", 1)[0]
# Nothing but START_PAGE's own script may run: it is allowed by its hash, not by 'unsafe-inline'.
START_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; script-src 'sha256-"
                               + base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode() + "'",
}
FLAGS = ["--samples_per_plugin", SAMPLES_PER_PLUGIN, "--load_fast=false"]


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
            return wrappers.Response(START_PAGE, content_type="text/html; charset=utf-8", headers=START_HEADERS)

    loaders = [loader for loader in default.get_plugins() if loader is not CustomScalarsPlugin]
    # After the core plugin, which must stay first; TensorBoard opens on the first plugin that has data.
    return [loaders[0], CustomScalarsPlugin, *loaders[1:], StartPage]


def start_address(url: str) -> str:
    """The address of START_PAGE on the TensorBoard at url (which ends with '/')."""
    return f"{url}data/plugin/{PLUGIN}{START_ROUTE}"


def walk_without_links_inside(top):
    """TensorBoard's walk of a local LOGDIR (io_wrapper.ListRecursivelyViaWalking's contract: each directory
    and its files' paths), not entering a link to a directory that lies inside `top`: that directory is
    walked under its own name (runs/latest and the run it names would be two runs)."""
    root = os.path.realpath(top)
    for dir_path, dir_names, file_names in os.walk(top, followlinks=True):
        dir_names[:] = [name for name in dir_names if not _link_inside(os.path.join(dir_path, name), root)]
        yield dir_path, (os.path.join(dir_path, name) for name in file_names)


def _link_inside(path: str, root: str) -> bool:
    if not os.path.islink(path):
        return False
    target = os.path.realpath(path)
    return target == root or target.startswith(root + os.sep)


def main(argv: list[str]) -> None:
    from charrnn.cli import fail

    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return
    named = bool(argv) and not argv[0].startswith("-")
    logdir, flags = (argv[0], argv[1:]) if named else ("runs", argv)
    if not Path(logdir).is_dir():
        fail(f"{logdir} is not a directory of runs; train one first (python train.py), "
             f"or name the directory: python -m charrnn.board PATH")
    from tensorboard import program
    from tensorboard.backend.event_processing import io_wrapper

    io_wrapper.ListRecursivelyViaWalking = walk_without_links_inside
    board = program.TensorBoard(plugins=plugins())
    stop_if_received()
    configure(board, [sys.argv[0], "--logdir", logdir, *FLAGS, *flags])
    if board.flags.version_tb or board.flags.inspect:  # TensorBoard's modes that serve nothing: its own way
        sys.exit(board.main())
    try:
        url = board.launch()
    except program.TensorBoardServerException as e:
        fail(f"{e.msg}; pass another with --port=N")
    try:
        print(f"TensorBoard on {logdir}: {start_address(url)}\n(CUSTOM SCALARS, no smoothing, no outliers "
              f"dropped; Ctrl-C to stop)", flush=True)
    except OSError as e:
        silence(sys.stdout)
        fail(f"cannot write the board's address to standard output: {e.strerror}; "
             f"run it with its output on a terminal, a pipe or a file")
    while True:
        time.sleep(3600)


def configure(board, argv: list[str]) -> None:
    """board.configure(argv), whose mistakes (an unknown flag, a bad value) argparse reports in TensorBoard's
    usage of 17 lines: here in the one line of its error."""
    from charrnn.cli import fail

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            board.configure(argv=argv)
    except SystemExit as e:
        if not e.code:  # --helpfull: the help asked for
            sys.stderr.write(said.getvalue())
            raise
        error = said.getvalue().strip().splitlines()[-1:] or ["TensorBoard refused its flags"]
        fail(f"{error[0].removeprefix('tensorboard: error: ').replace('<lambda> ', '')}; python -m charrnn.board --help says what it "
             f"takes, tensorboard --helpfull lists TensorBoard's flags")
    except ValueError as e:  # TensorBoard's FlagsError: flags that exclude each other
        fail(f"{' '.join(str(e).split())}; tensorboard --helpfull lists TensorBoard's flags")


def silence(stream) -> None:
    from charrnn.terminal import silence as to_devnull

    with contextlib.suppress(OSError, ValueError):
        to_devnull(stream)


class SignalStop(BaseException):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_received: list[int] = []


def _stop(signum, frame) -> None:
    _received.append(signum)
    raise SignalStop(signum)


def _unraisable(report):
    """Python drops an exception raised inside a weakref callback (each import runs one, on its module lock)
    or a __del__, and prints it as ignored: a stop raised there is not printed, and is raised again after
    the imports (stop_if_received)."""

    def hook(unraisable):
        if not isinstance(unraisable.exc_value, (SignalStop, KeyboardInterrupt)):
            report(unraisable)

    return hook


def stop_if_received() -> None:
    if _received:
        raise SignalStop(_received[0])


def run(argv: list[str]) -> None:
    """main(argv), and any stop (Ctrl-C, SIGTERM, a closed terminal), while importing too, in one line with
    the exit code of the signal. Nothing is left running: the server's threads end with the process."""
    try:
        main(argv)
    except KeyboardInterrupt:
        stopped(signal.SIGINT)
    except SignalStop as e:
        stopped(e.signum)


def stopped(signum: int) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"{signal.Signals(signum).name}: TensorBoard stopped", file=sys.stderr, flush=True)
    # At once: the server's threads, one of them perhaps inside a request, have nothing to finish.
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    os._exit(128 + signum)


if __name__ == "__main__":
    sys.unraisablehook = _unraisable(sys.unraisablehook)
    # From here, the imports main does (TensorBoard's take seconds) included. A signal ignored when the board
    # started (nohup's SIGHUP, a script's background job's SIGINT) stays ignored, as for training.
    for _signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(_signum) is not signal.SIG_IGN:
            signal.signal(_signum, _stop)
    run(sys.argv[1:])
