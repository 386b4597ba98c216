"""``retrain demo`` end to end: chain wall time, peak RSS of the whole stack, idle RSS, clean Ctrl-C.

How it is measured
------------------
``retrain demo`` (what ``make demo`` runs after the install) starts in a temporary RETRAIN_HOME on free ports,
as a subprocess. Every second a sampler sums the RSS of every process whose environment names that
RETRAIN_HOME (the five stack components, their children and task processes), leaving out the ``retrain demo``
client itself. The chain time is the demo's own (``chain_seconds`` in ``demo-summary.json``: from the stack
being healthy to the last decision, sample-data generation included). After the summary the stack is left
idle for ``IDLE_SECONDS``; idle RSS is the median over that window. Then the demo gets SIGINT (Ctrl-C) and
must stop the stack, leaving no process behind.

Targets (issue #6): the chain under 5 minutes on 2 cores; the stack idles under 3 GB RSS.

Run from the repo root: ``.venv/bin/python bench/bench_demo.py`` (about 5-7 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from stackbench import RETRAIN, RssSampler, stack_env, stack_rss

IDLE_SECONDS = int(os.environ.get("BENCH_IDLE_SECONDS", "60"))


def main() -> int:
    env = stack_env("bench-demo-")
    home = env["RETRAIN_HOME"]
    summary_file = Path(home) / "demo-summary.json"
    log = Path(home).with_suffix(".log")
    started = time.monotonic()
    with open(log, "w") as out:
        demo = subprocess.Popen(RETRAIN + ["demo"], env=env, stdout=out, stderr=subprocess.STDOUT)
    with RssSampler(home, exclude=frozenset({demo.pid})) as rss:
        while not summary_file.exists():
            if demo.poll() is not None:
                print(log.read_text())
                raise SystemExit(f"retrain demo exited early with {demo.returncode}")
            if time.monotonic() - started > 1500:
                demo.send_signal(signal.SIGINT)
                raise SystemExit(f"no summary after 1500 s; log in {log}")
            time.sleep(1)
        demo_done = time.monotonic()
        time.sleep(IDLE_SECONDS)
    report = json.loads(summary_file.read_text())
    chain_peak = rss.peak()
    idle = [v for t, v in rss.samples if t >= demo_done + 5]
    demo.send_signal(signal.SIGINT)
    code = demo.wait(timeout=120)
    time.sleep(2)
    leftover = stack_rss(home)

    print(f"retrain demo (python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}); output in {log}")
    for m in report["models"]:
        value = f"{m['value']:.4f}" if m["value"] is not None else "—"
        print(f"  {m['model']:<22} candidates {m['candidates']}  versions {m['versions']}  champion "
              f"{m['champion'] or '—'}  {m['metric']} {value}  last decision {m['decision']}")
    print(f"  failures: {report['failures'] or 'none'}")
    print(f"  chain wall time (stack healthy -> last decision): {report['chain_seconds']:.1f} s")
    print(f"  start to summary, `up` included: {demo_done - started:.1f} s")
    print(f"  peak RSS of the whole stack: {chain_peak / 2**20:.0f} MB")
    print(f"  idle RSS of the stack (median over {IDLE_SECONDS} s): {statistics.median(idle) / 2**20:.0f} MB")
    print(f"  Ctrl-C: demo exit {code}, stack RSS left afterwards {leftover / 2**20:.0f} MB")
    ok = (not report["failures"] and report["chain_seconds"] < 300 and statistics.median(idle) < 3 * 2**30
          and leftover == 0)
    print(f"target: chain < 300 s, idle < 3 GB, nothing left after Ctrl-C -> {'MEETS TARGET' if ok else 'MISSES TARGET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
