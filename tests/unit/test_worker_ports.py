"""The training workers' ports (#32 item 9): free, distinct, and from below the kernel's ephemeral
range, which bind(0) and every outgoing connection draw from while the workers import TensorFlow."""

from __future__ import annotations

import socket
from pathlib import Path

from flowops.segmentation.training.workers import PORTS_FROM, free_ports


def test_item_9_worker_ports_are_free_distinct_and_never_the_kernels_numbers():
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert low - PORTS_FROM >= 1000  # this machine's range leaves room below it (Linux's default: 32768)
    for _ in range(20):
        ports = free_ports(4)
        assert len(set(ports)) == 4
        assert all(PORTS_FROM <= port < low for port in ports), ports
        for port in ports:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))  # still free once returned


def test_a_taken_port_is_never_returned(monkeypatch):
    """With every port of a small range taken but three, no taken one is ever answered."""
    import flowops.segmentation.training.workers as workers

    monkeypatch.setattr(workers, "_ephemeral_low", lambda: PORTS_FROM + 400)
    held = []
    try:
        for port in range(PORTS_FROM, PORTS_FROM + 400):
            if port in (PORTS_FROM + 7, PORTS_FROM + 99, PORTS_FROM + 350):
                continue
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue  # someone else's: taken all the same
            held.append(s)
        taken = {s.getsockname()[1] for s in held}
        assert len(taken) > 300
        for _ in range(10):
            ports = free_ports(3)
            assert len(set(ports)) == 3 and not set(ports) & taken, ports
    finally:
        for s in held:
            s.close()
