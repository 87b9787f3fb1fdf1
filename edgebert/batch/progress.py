"""Progress on stderr: a tqdm bar on a terminal, a plain line every few seconds otherwise."""
from __future__ import annotations

import sys
import time

PLAIN_EVERY_S = 10.0


class Progress:
    def __init__(self, records: int, rejects: int, quiet: bool):
        self.records, self.rejects, self.quiet, self.resumed_at = records, rejects, quiet, records
        self.start, self.last = time.perf_counter(), time.perf_counter()
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(initial=records, unit=" records", file=sys.stderr, dynamic_ncols=True)
            self.bar.set_postfix(rejects=rejects)

    def update(self, records: int, rejects: int) -> None:
        self.records += records
        self.rejects += rejects
        if self.bar is not None:
            self.bar.update(records)
            self.bar.set_postfix(rejects=self.rejects)
        elif not self.quiet and time.perf_counter() - self.last >= PLAIN_EVERY_S:
            self.last = time.perf_counter()
            rate = (self.records - self.resumed_at) / max(self.last - self.start, 1e-9)
            print(f"edgebert: {self.records:,} records ({rate:,.0f}/s), {self.rejects:,} rejected",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
