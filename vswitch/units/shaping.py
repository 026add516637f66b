"""Traffic shaping, outbound from the VM, in vSphere's terms: average, peak, burst.

Two token buckets on the switch's clock (the lab clock in a lab, so shaping is deterministic):
the average bucket refills at the average bandwidth and holds the burst size, so a port may
exceed its average by up to a burst; the peak bucket refills at the peak bandwidth and holds
one largest frame, so even a burst never goes faster than the peak. A frame leaves only if
both buckets hold its bits; otherwise it is dropped `shaped`.
"""

from __future__ import annotations

from vswitch.frame import Frame
from vswitch.policy import ShapingPolicy
from vswitch.unit import Unit

_NS_PER_S = 1_000_000_000


class TokenBucket:
    """Bits that may be sent now, refilled at `rate_bps` up to `depth_bits`."""

    def __init__(self, rate_bps: int, depth_bits: int, now_ns: int) -> None:
        self.rate_bps = rate_bps
        self.depth_bits = depth_bits
        self._tokens = depth_bits * _NS_PER_S  # in bit-nanoseconds, so refills stay exact
        self._stamp = now_ns

    def refill(self, now_ns: int) -> None:
        elapsed = max(0, now_ns - self._stamp)
        self._stamp = max(self._stamp, now_ns)
        self._tokens = min(self.depth_bits * _NS_PER_S, self._tokens + elapsed * self.rate_bps)

    def holds(self, bits: int) -> bool:
        return self._tokens >= bits * _NS_PER_S

    def take(self, bits: int) -> None:
        self._tokens -= bits * _NS_PER_S


class Shaper(Unit):
    """Drops what a VM sends above its shaping policy (vSphere's units: kbit/s, KB)."""

    name = "shaping"
    cacheable = False  # every frame changes the buckets

    def __init__(self, policy: ShapingPolicy, clock, max_frame: int) -> None:
        super().__init__()
        self.policy = policy
        self._clock = clock
        now = clock()
        self.average = TokenBucket(policy.average_kbps * 1000, policy.burst_kb * 1024 * 8, now)
        self.peak = TokenBucket(policy.peak_kbps * 1000, max_frame * 8, now)

    @classmethod
    def for_port(cls, port) -> Shaper | None:
        if port.is_uplink or port.shaping is None:
            return None
        return cls(port.shaping, port.switch.clock, port.switch.mtu + 18)

    def __call__(self, frame: Frame) -> str | None:
        now = self._clock()
        bits = (len(frame.data) + (4 if frame.tag is not None else 0)) * 8
        self.average.refill(now)
        self.peak.refill(now)
        if not (self.average.holds(bits) and self.peak.holds(bits)):
            return "shaped"
        self.average.take(bits)
        self.peak.take(bits)
        return None

    def describe(self) -> str:
        p = self.policy
        return f"{self.name}(average={p.average_kbps}kbps peak={p.peak_kbps}kbps burst={p.burst_kb}KB)"
