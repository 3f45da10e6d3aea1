"""Server CPU per request: the figure that holds on a shared machine, where req/s does not.

    .venv/bin/python bench/server_cpu.py                      # modelrouter, batched, c=32
    .venv/bin/python bench/server_cpu.py --servers modelrouter,modelrouter-unbatched,bare -c 1,32

Serves bench/serving.py's model with each server (the same generated configs), warms it up,
then reads the server process's user + system CPU time from ``/proc/PID/stat`` before and after
one ``hey -n N -c C`` run of single-row v2 JSON requests: CPU time / requests is what one
request costs the server, whatever else runs on the machine (throughput is noise there). With
``--profile OUT.svg`` (or ``.txt``: collapsed stacks), py-spy records the server during one more
run.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import VENV_BIN, BenchError, ensure_hey, free_ports, log, run_hey, serve
from serving import bare_server, build_model, infer_url, modelrouter_server

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="modelrouter")
    parser.add_argument("-c", "--concurrency", default="32")
    parser.add_argument("-n", "--requests", type=int, default=20000)
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy: flame graph .svg, collapsed .txt"
    )
    args = parser.parse_args()
    hey = ensure_hey()
    with tempfile.TemporaryDirectory(prefix="server-cpu-") as tmp:
        work = Path(tmp)
        model = build_model(work / "model")
        body = work / "body.json"
        body.write_bytes(model.timed_body)
        for key in args.servers.split(","):
            port = free_ports(1)[0]
            if key == "bare":
                server = bare_server(work, model, port)
            elif key == "modelrouter":
                server = modelrouter_server(work, model, port)
            elif key == "modelrouter-unbatched":
                server = modelrouter_server(
                    work, model, port, key, "    batcher: {enabled: false}\n"
                )
            else:
                raise BenchError(f"unknown server {key!r}")
            with serve(server) as running:
                assert running.proc is not None
                pid = running.proc.pid
                url = infer_url(port)
                run_hey(url, body, 2000, 32, hey=hey)  # warm-up
                for c in (int(x) for x in args.concurrency.split(",")):
                    before = cpu_seconds(pid)
                    result = run_hey(url, body, args.requests, c, hey=hey)
                    used = cpu_seconds(pid) - before
                    us = used / args.requests * 1e6
                    print(
                        f"{key:24s} c={c:<3d} {us:7.1f} us CPU/request "
                        f"({result.rps:,.0f} req/s, load {os.getloadavg()[0]:.2f})",
                        flush=True,
                    )
                if args.profile is not None:
                    out = args.profile.with_name(f"{args.profile.stem}-{key}{args.profile.suffix}")
                    spy = subprocess.Popen(
                        [
                            str(VENV_BIN / "py-spy"),
                            "record",
                            # no --native: unwinding C frames stalled the server here for
                            # minutes (py-spy 0.4, this VM); Python frames are what we cut
                            "-r",
                            "500",
                            "-o",
                            str(out),
                            "--pid",
                            str(pid),
                            # a .txt file: collapsed stacks (one per line), to grep and sum
                            *(["--format", "raw"] if out.suffix == ".txt" else []),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    run_hey(url, body, args.requests, 32, hey=hey)
                    spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                    spy.wait(timeout=60)
                    log(f"profile written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
