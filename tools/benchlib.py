"""Shared by tools/bench_dit.py and tools/bench_gemma.py: run one benchmark case in its own process and measure it
from outside (wall time, the child's own peak RSS via wait4's ru_maxrss, load average), and describe the machine."""
import json
import os
import platform
import subprocess
import tempfile
import time


def run_child(cmd, cwd=None, env=None):
    """Runs cmd in its own process; returns (the last JSON line of its stdout as a dict, wall seconds, the child's
    peak RSS in MiB from wait4's ru_maxrss, 1-minute load average before and after). Exits on failure."""
    load_before = os.getloadavg()[0]
    t0 = time.time()
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        out = proc.stdout.read()  # stderr goes to a file, so this cannot deadlock
        _, status, usage = os.wait4(proc.pid, 0)  # reaps the child: its own rusage, not the sum of all children
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.time() - t0
        err.seek(0)
        tail = err.read()[-3000:]
    lines = [l for l in out.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-2000:]}\n{tail}")
    return json.loads(lines[-1]), wall, usage.ru_maxrss / 1024, load_before, os.getloadavg()[0]


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(next(l for l in f if l.startswith("MemTotal")).split()[1]) >> 10
    except (OSError, StopIteration):
        pass
    return f"{model or platform.processor()}, {os.cpu_count()} cpus, {mem} MiB RAM, {platform.system()} {platform.release()}"


def status_kib(field):
    """A /proc/self/status field in KiB (VmHWM, VmRSS), 0 when unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
