"""Explore a generator in the browser: ``python -m gp3d.view CKPT_OR_GENERATOR_OR_RUN [--port N]``.

Opens a viser page (http://localhost:PORT; over SSH: ``ssh -L PORT:localhost:PORT host``) that
renders the generator at the page's camera, live. A run folder is followed: a newer
``checkpoints/last.ckpt`` is loaded as soon as training writes it. See README "Browser viewer".
"""

import argparse
import signal
import sys
import threading


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m gp3d.view", description=__doc__.splitlines()[0])
    p.add_argument("source", help="a .ckpt, a `gp3d.export` file, or a training run folder")
    p.add_argument("--port", type=int, default=8080, help="0 = any free port (default 8080)")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 serves other machines too")
    p.add_argument("--resolution", type=int, default=128, help="render size once the view settles")
    p.add_argument("--preview-resolution", type=int, default=None, help="while moving (res / 4)")
    p.add_argument("--settle", type=float, default=0.3, help="seconds without change to refine")
    p.add_argument("--mesh-resolution", type=int, default=64, help="marching-cubes grid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--class", dest="class_", default=None, help="class index or recorded name")
    p.add_argument("--truncation", type=float, default=0.7)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, ...")
    p.add_argument("--follow", action=argparse.BooleanOptionalAction, default=None,
                   help="reload when the file changes (default: on for a run folder)")  # fmt: skip
    p.add_argument("--poll", type=float, default=2.0, help="seconds between checkpoint checks")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    from gp3d.inference.portable import CheckpointError
    from gp3d.utils.env import pick_device
    from gp3d.viewer.app import PortInUseError, ViewerApp, check_port_free
    from gp3d.viewer.follow import resolve_source

    device = str(pick_device(args.device))
    try:
        if args.resolution < 8:
            raise ValueError(f"--resolution {args.resolution} is too small (use 32 or more)")
        check_port_free(args.host, args.port)  # before the (slow) load
        source = resolve_source(args.source, args.follow)
        app = ViewerApp(
            source,
            host=args.host,
            port=args.port,
            resolution=args.resolution,
            preview_resolution=args.preview_resolution,
            settle_s=args.settle,
            mesh_resolution=args.mesh_resolution,
            device=device,
            seed=args.seed,
            class_=args.class_,
            truncation_psi=args.truncation,
            poll_s=args.poll,
        )
        app.load()
        app.start()
    except (FileNotFoundError, CheckpointError, PortInUseError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"gp3d viewer: {app.url}  (Ctrl-C to stop)", flush=True)
    stop = threading.Event()
    # SIGTERM (kill, a job scheduler) stops as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        app.stop()
    print("gp3d viewer: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
