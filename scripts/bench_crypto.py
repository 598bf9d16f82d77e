"""Benchmark: what encryption at rest costs per value, on the paths that matter.

Prints microseconds per seal (encrypt) and unseal (decrypt) of an outbox payload as the
campaign and alert paths write and read them, and what that adds to a 100,000-recipient
campaign. Not a test: run it by hand, e.g.

    python scripts/bench_crypto.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.core.messages import Outbound
from storage import crypto
from storage.crypto import EncryptedJSON


def per_call_us(work, n: int) -> float:
    """Microseconds per call of work, over n calls."""
    start = time.perf_counter()
    for _ in range(n):
        work()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    """Measure and print."""
    crypto.configure([crypto.generate_key()])
    kind = EncryptedJSON()
    campaign = Outbound("Ghi nhớ các số điện thoại: 111 — Tổng đài quốc gia bảo vệ trẻ em "
                        "(miễn phí, 24/7); 113 — Công an; 115 — Cấp cứu. " * 2).to_payload()
    alert = Outbound("🚨 KHẨN CẤP — vụ việc HX-2611-0042\n" + "Mô tả chi tiết của vụ việc. " * 40,
                     choices=[]).to_payload()
    for name, payload in (("campaign payload", campaign), ("alert payload", alert)):
        stored = kind.process_bind_param(payload, None)
        seal = per_call_us(lambda p=payload: kind.process_bind_param(p, None), 20_000)
        unseal = per_call_us(lambda s=stored: kind.process_result_value(s, None), 20_000)
        print(f"{name:18} {len(str(payload)):5} chars: seal {seal:6.1f} µs, "
              f"unseal {unseal:6.1f} µs, stored {len(stored)} chars")
    seal = per_call_us(lambda: kind.process_bind_param(campaign, None), 20_000)
    unseal = per_call_us(lambda: kind.process_result_value(
        kind.process_bind_param(campaign, None), None), 5_000) - seal
    total = (seal + unseal) * 100_000 / 1e6
    print(f"100,000-recipient campaign: {total:.1f} s of CPU for encryption in all "
          f"({(seal + unseal) / 1000:.3f} s per 1,000 messages)")
    print(f"SUMMARY seal_us={seal:.1f} unseal_us={unseal:.1f} per_1000_s="
          f"{(seal + unseal) / 1000:.3f}")


if __name__ == "__main__":
    main()
