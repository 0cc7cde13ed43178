"""Is the simulator package as fast as the single module it replaced?

    python bench/simulator_speed.py [--rounds 7] [--before c13ce53^] [--quick]

Why: issue 15 split `stream_app/tools/simulator.py` into the package
`stream_app/tools/simulator/` with byte-identical output, and the split made
generating events 17-23 % slower. `churnmon simulate`, the demo and every bench
that replays a population wait on it, so "behaviour unchanged" includes its speed.

How: the old module is taken from git (`git show REV:stream_app/tools/simulator.py`,
self-contained, it imports nothing of the project) into a temporary directory and
imported from there; both generate the same populations in this one process.
A run consumes `events(cfg)` to the end (the truth is built at its end) and
nothing else: writing JSONL would add the same cost to both and hide the
difference. First the two are checked to produce the same bytes (events and
truth). Then, in each of the interleaved rounds:

  whole     one whole run of each, the first to go alternating by round;
  lockstep  both runs side by side, 2,000 events of one then the same 2,000
            of the other, the first to go alternating: each chunk of either
            is timed within milliseconds of the same chunk of the other.

Both on CPU time (time.process_time; wall time also counts waiting for a
core). On this shared 2-core VM one whole run of the same work took from
2.2 to 3.7 s in one sitting, so a whole-run ratio swings by +-10 % from round
to round; the lockstep ratio is the one to read. Printed per population: each
round's ratios, their medians, and the load average before and after.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stream_app.tools import simulator as new_sim  # noqa: E402

OLD_PATH = "stream_app/tools/simulator.py"

#: (label, scenario, overrides): the demo's population (`churnmon demo`'s
#: defaults), and the purchase-only business (another hot path: PurchaseCustomer)
POPULATIONS = [
    ("default 600x365 (the demo's)", "default", {"customers": 600, "days": 365, "seed": 42}),
    ("purchase-only 5000x365", "purchase-only", {"customers": 5000, "days": 365, "seed": 42}),
]
QUICK = [
    ("default 300x60", "default", {"customers": 300, "days": 60, "seed": 7}),
    ("purchase-only 500x120", "purchase-only", {"customers": 500, "days": 120, "seed": 7}),
]


def load_old(rev: str, into: Path):
    """The single-module simulator as it was at `rev`, imported under its own name."""
    src = subprocess.run(["git", "show", f"{rev}:{OLD_PATH}"], cwd=REPO, check=True,
                         capture_output=True).stdout
    path = into / "simulator_before.py"
    path.write_bytes(src)
    spec = importlib.util.spec_from_file_location("simulator_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["simulator_before"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def timed(mod, name: str, overrides: dict) -> tuple[float, int]:
    """CPU seconds to consume every event of the population, and how many there were."""
    cfg = mod.scenario(name, **overrides)
    t0 = time.process_time()
    n = sum(1 for _ in mod.events(cfg))
    return time.process_time() - t0, n


def lockstep(old, new, name: str, overrides: dict, chunk: int = 2000) -> tuple[float, float, int]:
    """CPU seconds of the old and the new run generated side by side, `chunk`
    events of one, then the same events of the other, the first alternating;
    and how many events there were."""
    gens = {m: m.events(m.scenario(name, **overrides)) for m in (old, new)}
    spent = {old: 0.0, new: 0.0}
    n, flip, got = 0, False, chunk
    while got == chunk:
        for m in ((new, old) if flip else (old, new)):
            t0 = time.process_time()
            got = sum(1 for _ in itertools.islice(gens[m], chunk))
            spent[m] += time.process_time() - t0
        n += got
        flip = not flip
    return spent[old], spent[new], n


def digest(mod, name: str, overrides: dict) -> str:
    sim = mod.Simulation(mod.scenario(name, **overrides))
    h = hashlib.sha256()
    for e in sim.events():
        h.update(orjson.dumps(e) + b"\n")
    for t in sim.truth:
        h.update(orjson.dumps(asdict(t)) + b"\n")
    return h.hexdigest()


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds per population")
    p.add_argument("--before", default="c13ce53^", help="git revision of the single-module simulator")
    p.add_argument("--quick", action="store_true", help="small populations (a smoke run)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="sim-before-") as tmp:
        old_sim = load_old(args.before, Path(tmp))
        print(f"old: {args.before}:{OLD_PATH}   new: {new_sim.__file__}   python {sys.version.split()[0]}")
        worst = 0.0
        for label, name, overrides in QUICK if args.quick else POPULATIONS:
            same = digest(old_sim, name, overrides) == digest(new_sim, name, overrides)
            print(f"\n{label} (scenario {name}, {overrides}): output identical: {same}")
            if not same:
                print("  the two differ: the timing compares different work")
                return 1
            l0 = load()
            whole, steps = [], []
            for i in range(args.rounds):
                order = (old_sim, new_sim) if i % 2 == 0 else (new_sim, old_sim)
                cpu = {}
                for mod in order:
                    cpu[mod], n = timed(mod, name, overrides)
                whole.append(cpu[new_sim] / cpu[old_sim])
                o, w, n2 = lockstep(old_sim, new_sim, name, overrides)
                steps.append(w / o)
                assert n == n2, (n, n2)
                first = "old" if order[0] is old_sim else "new"
                print(f"  round {i + 1}: whole ({first} first) old {cpu[old_sim]:.3f} s new {cpu[new_sim]:.3f} s"
                      f" new/old {whole[-1]:.3f};  lockstep old {o:.3f} s new {w:.3f} s new/old {steps[-1]:.3f}"
                      f"  ({n:,} events)")
            med = statistics.median(steps)
            worst = max(worst, med)
            print(f"  median new/old: lockstep {med:.3f} (min {min(steps):.3f}, max {max(steps):.3f}),"
                  f" whole {statistics.median(whole):.3f} (min {min(whole):.3f}, max {max(whole):.3f});"
                  f" load avg 1/5/15 min before {l0}, after {load()}")
    print(f"\nworst median new/old (lockstep, CPU): {worst:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
